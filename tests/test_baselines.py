"""VBMF baseline: EVBMF recovers the rank of signal + noise; vbmf_plan's choices."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from lrf_optuna.baselines import evbmf_rank


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
    plan = lo.vbmf_plan(analysis)
    assert {name: method for name, (method, _) in plan.items()} == {
        name: ("tucker2" if name == "conv" else "svd") for name in plan
    }
    assert {"conv", "pointwise", "dense"} <= set(plan)
    for name, (method, rank) in plan.items():
        assert 1 <= rank <= analysis.specs[name].useful_ranks[method]
    assert lo.plan_cost(model, plan).params < lo.model_cost(model).params
