"""Hull seeds: every seed is Pareto-optimal, checked against every plan of a small space."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.core._plan import NONE
from lrf_optuna.search._hull import hull_params
from lrf_optuna.search._study import anchor_params
from search_support import calibration, seeded_weights, settings

L = keras.layers


@pytest.fixture(scope="module")
def mlp():
    """Three dense layers: a few hundred plans with every dense method, so all are scored."""
    inputs = keras.Input((12,), name="x")
    x = L.Dense(10, activation="relu", name="a")(inputs)
    x = L.Dense(8, activation="relu", name="b")(x)
    return seeded_weights(keras.Model(inputs, L.Dense(6, name="c")(x), name="mlp"), seed=3)


@pytest.fixture(scope="module")
def mlp_profile(mlp, tmp_path_factory):
    cache = tmp_path_factory.mktemp("seeds-cache")
    data = calibration(64, (12,))
    return data, lo.profile_model(mlp, data, settings=settings(), cache_dir=cache, show_progress=False)


def every_plan(space: lo.search.SearchSpace):
    options = [
        [None] + [(m, r) for m, top in layer.useful_ranks.items() for r in range(1, top + 1)]
        for layer in space.layers
    ]
    for choice in itertools.product(*options):
        yield {layer.name: c for layer, c in zip(space.layers, choice) if c is not None}


def seed_plan(space: lo.search.SearchSpace, params: dict) -> dict:
    return space.plan_of(optuna.trial.FixedTrial(params))


@pytest.mark.parametrize("aggregator", ["mean", "product", "weighted"])
def test_every_seed_is_pareto_optimal(mlp, mlp_profile, aggregator):
    data, profile = mlp_profile
    objective = lo.search.make_objective(mlp, data, profile=profile, methods=None, aggregator=aggregator)
    scored = np.array([objective.evaluate(plan) for plan in every_plan(objective.space)], dtype=float)
    assert len(scored) > 200  # the space is really enumerated
    seeds = hull_params(objective, count=16)
    assert len(seeds) >= 4
    for params in seeds:
        p, m, s = objective.evaluate(seed_plan(objective.space, params))
        dominated = (
            (scored[:, 0] <= p) & (scored[:, 1] <= m) & (scored[:, 2] >= s)
            & ((scored[:, 0] < p) | (scored[:, 1] < m) | (scored[:, 2] > s + 1e-12))
        )  # fmt: skip
        assert not dominated.any(), (params, scored[dominated][:3])


def test_seeds_span_the_front(mlp, mlp_profile):
    data, profile = mlp_profile
    objective = lo.search.make_objective(mlp, data, profile=profile, methods=None)
    plans = [seed_plan(objective.space, p) for p in hull_params(objective, count=16)]
    removed = [1 - objective.cost(plan).params / objective.analysis.cost.params for plan in plans]
    assert max(removed) - min(removed) > 0.3
    assert {m for plan in plans for m, _ in plan.values()} - {"svd"}  # not only one method


def test_no_seeds_without_additive_layer_scores(mlp, mlp_profile):
    data, profile = mlp_profile
    assert hull_params(lo.search.make_objective(mlp, data, profile=profile, aggregator="min")) == []
    model_proxy = lo.search.make_objective(mlp, data, proxy="model", show_progress=False)
    assert hull_params(model_proxy) == []


def test_study_runs_the_seeds_after_the_anchors(mlp, mlp_profile):
    data, profile = mlp_profile
    study = lo.run_study(
        mlp, data, storage=optuna.storages.InMemoryStorage(), n_trials=40, population_size=12,
        show_progress=False, profile=profile,
    )  # fmt: skip
    objective = lo.search.make_objective(mlp, data, profile=profile)
    seeds = hull_params(objective, count=12 // 3)
    anchors = anchor_params(objective.space)
    fixed = [t.params for t in study.trials if "fixed_params" in t.system_attrs]
    assert fixed[: len(anchors)] == anchors and len(fixed) > len(anchors)
    assert seeds and all(seed in fixed for seed in seeds)  # (one equal to an anchor is run once)
    assert all(p[f"{c.name}.method"] in (*c.methods, NONE) for p in seeds for c in objective.space.layers)
