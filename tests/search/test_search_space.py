"""The static search space and the objective, checked on a short real NSGA-II run."""

from __future__ import annotations

import json
from collections import Counter

import keras
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.search._study import ANCHORS_ATTR, anchor_params
from search_support import LAYERS, calibration, settings

COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("profile-cache")


@pytest.fixture(scope="module")
def constraints(model):
    return lo.Constraints(max_params=int(0.6 * lo.model_cost(model).params), min_similarity=0.75)


@pytest.fixture(scope="module")
def study(model, data, cache_dir, constraints):
    # In memory: SQLite works the same (tests/search/test_study.py) but costs ~0.3 s per trial here.
    return lo.run_study(
        model,
        data,
        storage=optuna.storages.InMemoryStorage(),
        study_name="space",
        n_trials=30,
        population_size=10,
        seed=1,
        show_progress=False,
        profile_settings=settings(),
        cache_dir=cache_dir,
        constraints=constraints,
    )


@pytest.fixture(scope="module")
def objective(model, data, cache_dir, constraints):
    """Built anew from the cached profile, as a later process would."""
    return lo.search.make_objective(
        model, data, profile_settings=settings(), cache_dir=cache_dir, constraints=constraints
    )


@pytest.fixture(scope="module")
def trials(study):
    return study.get_trials(states=(COMPLETE,))


def plan_attr(trial) -> dict[str, tuple[str, int]]:
    decoded = json.loads(trial.user_attrs["plan"])
    return {layer: (value.split(":")[0], int(value.split(":")[1])) for layer, value in decoded.items()}


# --------------------------------------------------------------------------- space


def check_space(model, space, methods) -> None:
    analysis = lo.analyze(model)
    distributions = space.distributions()
    assert set(distributions) == {f"{n}.{p}" for n in LAYERS for p in ("method", "rank")}
    for name, spec in analysis.specs.items():
        allowed = spec.useful_ranks if methods is None else methods[spec.kind]
        useful = {m: r for m, r in spec.useful_ranks.items() if r > 0 and m in allowed}
        method = distributions[f"{name}.method"]
        assert isinstance(method, optuna.distributions.CategoricalDistribution)
        assert method.choices == (*useful, "none")
        rank = distributions[f"{name}.rank"]
        assert isinstance(rank, optuna.distributions.IntDistribution)
        assert (rank.low, rank.high, rank.step) == (1, max(useful.values()), 1)


def test_space_parameters(model, objective):
    check_space(model, objective.space, lo.search.DEFAULT_METHODS)
    dense = [c for c in objective.space.layers if lo.analyze(model).specs[c.name].kind == "dense"]
    assert dense and all(c.methods == ("svd", "none") for c in dense)  # the measured default


def test_every_method_is_searched_with_methods_none(model, data, cache_dir):
    objective = lo.search.make_objective(
        model, data, methods=None, profile_settings=settings(), cache_dir=cache_dir
    )
    check_space(model, objective.space, None)
    assert {"tt", "tucker"} <= {m for c in objective.space.layers for m in c.methods}


def test_rank_above_the_method_range_is_clamped(objective):
    params = {f"{n}.method": "none" for n in LAYERS} | {f"{n}.rank": 1 for n in LAYERS}
    layer = next(c for c in objective.space.layers if c.name == "c2")
    small = min(layer.useful_ranks, key=layer.useful_ranks.get)
    params |= {"c2.method": small, "c2.rank": layer.max_rank, "d1.method": "svd", "d1.rank": 7}
    plan = objective.space.plan_of(optuna.trial.FixedTrial(params))
    assert plan == {"c2": (small, layer.useful_ranks[small]), "d1": ("svd", 7)}
    assert layer.useful_ranks[small] < layer.max_rank


def test_methods_restriction(model, data, cache_dir):
    restricted = lo.search.make_objective(
        model, data, methods=("svd",), profile_settings=settings(), cache_dir=cache_dir
    )
    for layer in restricted.space.layers:
        assert layer.methods == ("svd", "none")


def test_profile_must_cover_the_space(model, data, cache_dir):
    profile = lo.profile_model(model, data, settings=settings(), cache_dir=cache_dir)
    svd_only = profile[profile.method == "svd"]
    # without this check the search failed at the first trial picking another method
    with pytest.raises(ValueError, match=r"Invalid `profile`.*received none for c1:tucker2, c1:cp"):
        lo.search.make_objective(model, data, profile=svd_only)
    objective = lo.search.make_objective(model, data, profile=svd_only, methods=("svd",))
    assert objective.evaluate({"c1": ("svd", 2)})[2] < 1.0


def test_plan_of_a_trial_from_another_space(objective):
    trial = optuna.trial.create_trial(
        params={"x.method": "svd"},
        distributions={"x.method": optuna.distributions.CategoricalDistribution(["svd"])},
        values=[1.0, 1.0, 1.0],
    )
    with pytest.raises(ValueError, match=r"Invalid trial .*missing \['c1.method'"):
        objective.space.plan_of(trial)


def test_model_without_compressible_layer_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))  # no rank is cheaper
    with pytest.raises(ValueError, match="Invalid model for search"):
        lo.search.make_objective(model, calibration(4, (4,)), show_progress=False)


# --------------------------------------------------------------------------- study


def test_study_ran_to_n_trials(study, trials):
    assert len(trials) == 30
    assert study.metric_names == list(lo.search.DEFAULT_OBJECTIVES) == ["params", "flops", "similarity"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE", "MAXIMIZE"]
    assert study.user_attrs[ANCHORS_ATTR] is True
    assert study.user_attrs["lrf_optuna:proxy"] == "layerwise"


def test_intersection_search_space_holds_every_parameter(study, objective):
    space = optuna.search_space.intersection_search_space(study.get_trials())
    assert set(space) == {f"{n}.{p}" for n in LAYERS for p in ("method", "rank")}
    assert space == objective.space.distributions()


def test_nsga2_went_past_the_first_generation(study, trials):
    # enqueued anchors are never sampled, so NSGA-II gives them no generation
    generations = Counter(t.system_attrs.get("NSGAIISampler:generation") for t in trials)
    assert generations[0] == 10 and generations[1] >= 1


def test_anchors_come_first(objective, trials, model):
    anchors = anchor_params(objective.space)
    assert [t.params for t in trials[: len(anchors)]] == anchors
    base = lo.model_cost(model)
    assert trials[0].values == [base.params, 2 * base.macs, 1.0]  # FLOPs = 2 x MACs
    assert plan_attr(trials[0]) == {}


def test_replay_gives_the_same_plan_and_values(model, objective, trials):
    for trial in trials:
        plan = lo.plan_from_trial(objective.space, trial)
        assert plan == plan_attr(trial)
        # exactly: same profile (reloaded from the cache), same arithmetic
        assert list(objective.evaluate(plan)) == trial.values
    # also through the model (it re-analyzes it)
    for trial in trials[-3:]:
        assert lo.plan_from_trial(model, trial) == plan_attr(trial)


def test_objective_costs_equal_plan_cost(model, objective, trials):
    analysis = lo.analyze(model)
    for trial in trials:
        plan = plan_attr(trial)
        cost = analysis.plan_cost(plan)
        assert trial.values[:2] == [cost.params, cost.flops]
    plan = plan_attr(trials[-1])
    assert lo.plan_cost(model, plan) == objective.cost(plan)


def test_user_attrs(model, trials):
    base = lo.model_cost(model)
    for trial in trials:
        params, flops, _ = trial.values
        macs = flops / 2
        attrs = trial.user_attrs
        assert attrs["params_ratio"] == pytest.approx(base.params / params)
        assert attrs["macs_ratio"] == pytest.approx(base.macs / macs)
        assert attrs["params_removed"] == pytest.approx(1.0 - params / base.params)
        plan = plan_attr(trial)
        assert attrs["methods"] == dict(Counter(m for m, _ in plan.values()))


def test_constraints_are_recorded(trials, constraints):
    infeasible = 0
    for trial in trials:
        params, _, similarity = trial.values
        expected = {
            "max_params": params - constraints.max_params,
            "min_similarity": constraints.min_similarity - similarity,
        }
        assert trial.constraints["max_params"] == pytest.approx(expected["max_params"])
        assert trial.constraints["min_similarity"] == pytest.approx(expected["min_similarity"])
        legacy = trial.system_attrs["constraints"]
        assert isinstance(legacy, list)
        assert legacy == pytest.approx(list(expected.values()))
        if any(v > 0 for v in expected.values()):
            infeasible += 1
            assert any(v > 0 for v in legacy)
            assert any(v > 0 for v in trial.constraints.values())
        else:
            assert all(v <= 0 for v in trial.constraints.values())
    assert 0 < infeasible < len(trials)
    assert any(v > 0 for v in trials[0].system_attrs["constraints"])  # the uncompressed anchor


def test_no_constraints_records_none(model, data, cache_dir):
    objective = lo.search.make_objective(model, data, profile_settings=settings(), cache_dir=cache_dir)
    study = optuna.create_study(directions=["minimize", "minimize", "maximize"])
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        assert trial.constraints == {}
        assert "constraints" not in trial.system_attrs
