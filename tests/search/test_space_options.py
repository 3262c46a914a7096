"""What a user restricts the search to: method names (typos refused), excluded and fixed
layers, a minimum rank fraction; checked on the space, the objective, anchors and seeds."""

from __future__ import annotations

import json
import math

import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.search._hull import hull_params
from lrf_optuna.search._study import anchor_params
from search_support import LAYERS

COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.fixture(scope="module")
def analysis(model):
    return lo.analyze(model)


def space(analysis, **options) -> lo.search.SearchSpace:
    return lo.search.SearchSpace.from_analysis(analysis, **options)


def plan_attr(trial) -> dict[str, tuple[str, int]]:
    decoded = json.loads(trial.user_attrs["plan"])
    return {layer: (value.split(":")[0], int(value.split(":")[1])) for layer, value in decoded.items()}


def within(distributions: dict, params: dict) -> bool:
    for name, distribution in distributions.items():
        value = params[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value not in distribution.choices:
                return False
        elif not distribution.low <= value <= distribution.high:
            return False
    return set(params) == set(distributions)


# --------------------------------------------------------------------------- item 3: methods


@pytest.mark.parametrize(
    ("methods", "error", "match"),
    [
        (
            {"conv": ["tucker2", "svdd"]},
            ValueError,
            r"for conv layers: expected names among \['tucker2', 'cp', 'svd', 'spatial_svd'\], received 'svdd'",
        ),
        ({"convv": ["cp"]}, ValueError, r"key 'convv': expected a layer kind among \['conv', 'dense'\]"),
        ({"dense": ["cp"]}, ValueError, r"for dense layers: expected names among \['svd', 'tt', 'tucker'\]"),
        (["svd", "tuker"], ValueError, r"expected names among \[.*'tucker'\], received 'tuker'"),
        ("svd", TypeError, r"expected a list of method names, received str 'svd'"),
        ({"conv": "cp"}, TypeError, r"for conv layers: expected a list of method names, received str 'cp'"),
        ([1], TypeError, r"expected method names \(str\), received 1"),
    ],
)
def test_unknown_methods_and_kinds_are_refused(analysis, methods, error, match):
    with pytest.raises(error, match=match):
        space(analysis, methods=methods)


def test_unknown_method_is_refused_before_the_study_is_written(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(ValueError, match="received 'svdd'"):
        lo.run_study(model, data, storage=url, n_trials=2, profile=profile, methods={"conv": ["svdd"]})
    assert not (tmp_path / "typo.db").exists()


def test_spellings_of_one_choice_compare_equal(analysis):
    flat = space(analysis, methods=["svd"])
    per_kind = space(analysis, methods={"dense": ["svd"], "conv": ["svd", "svd"]})
    assert flat == per_kind
    assert (
        lo.SearchSettings(methods=["cp", "tucker2"]).methods
        == lo.SearchSettings(methods=("tucker2", "cp")).methods
    )


# --------------------------------------------------------------------------- item 7: exclude


def test_exclude_names_and_patterns(analysis):
    kept = space(analysis, exclude=["c1", "d*"])
    assert [layer.name for layer in kept.layers] == ["c2"]
    assert set(kept.distributions()) == {"c2.method", "c2.rank"}
    assert space(analysis, exclude="c2").distributions().keys() == {
        f"{n}.{p}" for n in LAYERS if n != "c2" for p in ("method", "rank")
    }


def test_exclude_pattern_matching_no_layer_lists_the_layers(analysis):
    with pytest.raises(ValueError, match=r"pattern 'conv\*'.*matches none of \['c1', 'c2', 'd1', 'd2'\]"):
        space(analysis, exclude=["c1", "conv*"])
    with pytest.raises(TypeError, match="Invalid `exclude`"):
        space(analysis, exclude=[3])


def test_excluding_every_layer_is_refused(analysis):
    with pytest.raises(
        ValueError, match=r"at least one layer .* once \['c1', 'c2', 'd1', 'd2'\] are excluded"
    ):
        space(analysis, exclude=["*"])


# --------------------------------------------------------------------------- item 7: fixed


def test_fixed_layer_is_not_searched_but_in_every_plan(analysis):
    fixed = space(analysis, fixed={"c1": ("cp", 2)})
    assert "c1.method" not in fixed.distributions() and "c1.rank" not in fixed.distributions()
    params = {f"{n}.method": "none" for n in LAYERS[1:]} | {f"{n}.rank": 1 for n in LAYERS[1:]}
    assert fixed.plan_of(optuna.trial.FixedTrial(params)) == {"c1": ("cp", 2)}
    params["d1.method"] = "svd"
    assert fixed.plan_of(optuna.trial.FixedTrial(params)) == {"c1": ("cp", 2), "d1": ("svd", 1)}


@pytest.mark.parametrize(
    ("fixed", "error", "match"),
    [
        ({"c9": ("cp", 2)}, ValueError, r"layer 'c9': expected a compressible layer among \['c1', 'c2'"),
        (
            {"c1": ("tt", 2)},
            ValueError,
            r"method for layer 'c1': expected one of \['tucker2', 'cp'.*received 'tt'",
        ),
        ({"c1": ("cp", 0)}, ValueError, r"rank for layer 'c1' \(cp\): expected 1\.\.\d+ .*received 0"),
        (
            {"c1": ("cp", 10_000)},
            ValueError,
            r"rank for layer 'c1' \(cp\): expected 1\.\.\d+ .*received 10000",
        ),
        ({"c1": "cp:2"}, TypeError, r"entry 'c1': expected layer name -> \(method, rank\)"),
        ({"c1": ("cp", 2.0)}, TypeError, r"entry 'c1'"),
        ([("c1", ("cp", 2))], TypeError, r"Invalid `fixed`: expected \{layer: \(method, rank\)\}"),
    ],
)
def test_invalid_fixed_choices(analysis, fixed, error, match):
    with pytest.raises(error, match=match):
        space(analysis, fixed=fixed)


def test_fixed_and_excluded_layer_is_refused(analysis):
    with pytest.raises(ValueError, match="layer 'c1': it is also excluded"):
        space(analysis, exclude=["c*"], fixed={"c1": ("cp", 2)})


# --------------------------------------------------------------------------- item 7: min rank


def test_min_rank_fraction_floors_each_method(analysis):
    floored = space(analysis, min_rank_fraction=0.5)
    for layer in floored.layers:
        for method, top in layer.useful_ranks.items():
            assert layer.lowest(method) == max(1, math.ceil(0.5 * top))
            assert list(layer.ranks(method)) == list(range(math.ceil(0.5 * top), top + 1))
        rank = floored.distributions()[layer.rank_param]
        assert (rank.low, rank.high) == (min(layer.lowest_ranks.values()), layer.max_rank)
    # a rank below the chosen method's floor is raised to it
    c2 = next(layer for layer in floored.layers if layer.name == "c2")
    params = {f"{c.name}.method": "none" for c in floored.layers}
    params |= {f"{c.name}.rank": c.min_rank for c in floored.layers}
    method = max(c2.useful_ranks, key=c2.useful_ranks.get)
    params |= {"c2.method": method, "c2.rank": c2.min_rank}
    assert floored.plan_of(optuna.trial.FixedTrial(params)) == {"c2": (method, c2.lowest(method))}
    assert c2.lowest(method) > c2.min_rank
    # 0 offers every rank (the space of a study without the option), 1 only the largest
    assert space(analysis, min_rank_fraction=0) == space(analysis)
    assert all(
        len(layer.ranks(m)) == 1
        for layer in space(analysis, min_rank_fraction=1).layers
        for m in layer.useful_ranks
    )


@pytest.mark.parametrize("fraction", [-0.1, 1.5, True, "0.5", float("nan")])
def test_invalid_min_rank_fraction(analysis, fraction):
    with pytest.raises(ValueError, match=r"Invalid `min_rank_fraction`: expected a number in 0\.\.1"):
        space(analysis, min_rank_fraction=fraction)


# --------------------------------------------------------------------------- a search with all three


@pytest.fixture(scope="module")
def controlled(model, data, profile):
    options = {"exclude": ["d2"], "fixed": {"c1": ("svd", 3)}, "min_rank_fraction": 0.5}
    objective = lo.search.make_objective(model, data, profile=profile, **options)
    study = lo.run_study(
        model,
        data,
        storage=optuna.storages.InMemoryStorage(),
        n_trials=24,
        population_size=6,
        show_progress=False,
        profile=profile,
        **options,
    )
    return objective, study


def test_search_respects_exclude_fixed_and_floors(model, controlled):
    objective, study = controlled
    analysis = lo.analyze(model)
    distributions = objective.space.distributions()
    assert set(distributions) == {"c2.method", "c2.rank", "d1.method", "d1.rank"}
    trials = study.get_trials(states=(COMPLETE,))
    assert len(trials) == 24
    for trial in trials:
        assert within(distributions, trial.params)
        plan = plan_attr(trial)
        assert plan["c1"] == ("svd", 3) and "d2" not in plan
        for name, (method, rank) in plan.items():
            if name != "c1":
                layer = next(c for c in objective.space.layers if c.name == name)
                assert rank in layer.ranks(method)
        # the fixed layer counts in the costs and the similarity the objective reports
        cost = analysis.plan_cost(plan)
        assert trial.values == [cost.params, cost.flops, objective.proxy(plan)]
        assert lo.plan_from_trial(model, trial, study=study) == plan
    assert objective.proxy({"c1": ("svd", 3)}) < objective.proxy({})


def test_anchors_and_hull_seeds_respect_the_space(controlled):
    objective, _ = controlled
    distributions = objective.space.distributions()
    seeds = hull_params(objective, count=8)
    assert seeds
    for params in [*anchor_params(objective.space), *seeds]:
        assert within(distributions, params), params
        plan = objective.space.plan_of(optuna.trial.FixedTrial(params))
        for name, (method, rank) in plan.items():
            if name != "c1":
                layer = next(c for c in objective.space.layers if c.name == name)
                assert rank in layer.ranks(method), (name, method, rank)


def test_per_layer_settings_are_recorded(controlled):
    _, study = controlled
    attrs = study.user_attrs
    assert attrs["lrf_optuna:exclude"] == ["d2"]
    assert attrs["lrf_optuna:fixed"] == {"c1": ["svd", 3]}
    assert attrs["lrf_optuna:min_rank_fraction"] == 0.5
    recorded = lo.SearchSettings.from_study(study)
    assert (recorded.exclude, dict(recorded.fixed), recorded.min_rank_fraction) == (
        ("d2",),
        {"c1": ("svd", 3)},
        0.5,
    )
