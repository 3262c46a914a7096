"""VBMF baseline: EVBMF recovers the rank of signal + noise; vbmf_plan's choices."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from lrf_optuna.search._baselines import evbmf_rank, weakened_rank


@pytest.mark.parametrize(("rows", "cols", "rank"), [(60, 200, 5), (200, 60, 8), (100, 100, 3)])
def test_evbmf_finds_the_signal_rank_under_noise(rows, cols, rank):
    rng = np.random.default_rng(rank)
    signal = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols)) * 3.0
    noisy = signal + 0.1 * rng.standard_normal((rows, cols))
    assert evbmf_rank(noisy) == rank


def test_evbmf_keeps_nothing_of_pure_noise_and_of_zeros():
    rng = np.random.default_rng(0)
    assert evbmf_rank(rng.standard_normal((50, 120))) == 0
    assert evbmf_rank(np.zeros((10, 20))) == 0


def test_vbmf_plan_uses_tucker2_on_convs_svd_on_dense_within_useful_ranks():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 8))
    x = keras.layers.Conv2D(32, 3, name="conv")(inputs)
    x = keras.layers.Conv2D(32, 1, name="pointwise")(x)
    x = keras.layers.Dense(40, name="dense")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    analysis = lo.analyze(model)
    plan = lo.search.vbmf_plan(analysis)
    assert {name: method for name, (method, _) in plan.items()} == {
        name: ("tucker2" if name == "conv" else "svd") for name in plan
    }
    assert {"conv", "pointwise", "dense"} <= set(plan)
    for name, (method, rank) in plan.items():
        assert 1 <= rank <= analysis.specs[name].useful_ranks[method]
    assert lo.plan_cost(model, plan).params < lo.model_cost(model).params


def test_weakened_rank_moves_the_evbmf_rank_towards_the_full_one():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 50)) * 3.0
    noisy = signal + 0.1 * rng.standard_normal((20, 50))
    assert evbmf_rank(noisy) == 3
    # full - w * (full - evbmf), floored, with full = min(20, 50) = 20
    assert [weakened_rank(noisy, w) for w in (1.0, 0.5, 0.25, 0.0)] == [3, 11, 15, 20]


def test_vbmf_plan_weakening_keeps_larger_ranks_and_refuses_values_outside_0_1():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 16))
    x = keras.layers.Conv2D(48, 3, name="conv")(inputs)
    x = keras.layers.Dense(64, name="dense")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    analysis = lo.analyze(model)
    plans = [lo.search.vbmf_plan(analysis, weakening=w) for w in (1.0, 0.6, 0.3, 0.0)]
    assert plans[0] == lo.search.vbmf_plan(analysis)
    params = [lo.plan_cost(model, plan).params for plan in plans]
    assert params == sorted(params) and params[0] < params[-1]
    for stronger, weaker in itertools.pairwise(plans):  # a larger rank, or the layer left whole
        assert all(weaker.get(name, (None, np.inf))[1] >= rank for name, (_, rank) in stronger.items())
    assert plans[-1] == {}  # full ranks: no factorized layer would be cheaper
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"Invalid `weakening`: expected a number in \[0, 1\]"):
            lo.search.vbmf_plan(analysis, weakening=bad)
