"""Trial selection: Pareto front, knee, thresholds, feasibility, spread along the front."""

from __future__ import annotations

import warnings

import optuna
import pytest

from lrf_optuna.results._selection import (
    FINETUNED_FROM,
    feasible_trials,
    pareto_trials,
    select_trial,
    spread_trials,
)

DIRECTIONS = ["minimize", "minimize", "maximize"]


def make_study(points, *, constraints=None, attrs=None, names=None) -> optuna.Study:
    """A study holding COMPLETE trials with the given (params, MACs, similarity) values
    (or the objectives ``names``, all minimized but the last)."""
    study = optuna.create_study(directions=DIRECTIONS)
    if names is not None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(names))
    distribution = optuna.distributions.FloatDistribution(0, 1)
    for index, values in enumerate(points):
        system = {}
        if constraints is not None:
            system["constraints"] = constraints[index]
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5}, distributions={"x": distribution}, values=list(values),
                system_attrs=system, user_attrs=(attrs or {}).get(index, {}),
            )
        )  # fmt: skip
    return study


# A convex front (params, macs, similarity): the knee is at 40 params; (50, 500, 0.5) is dominated.
FRONT = [(10, 100, 0.20), (20, 200, 0.60), (40, 400, 0.90), (70, 700, 0.95), (100, 1000, 1.0)]


def test_pareto_trials_drop_dominated_ones_and_sort_by_params():
    study = make_study([*FRONT, (50, 500, 0.5)])
    assert [t.values[0] for t in pareto_trials(study)] == [10, 20, 40, 70, 100]


def test_knee_is_the_point_farthest_above_the_chord():
    # normalized: x = (p - 10) / 90, y = (s - 0.2) / 0.8; y - chord is largest at 40 params
    assert select_trial(make_study(FRONT)).values[0] == 40


# (params, latency ms, similarity), all on the front: by params the knee is 40 params (as FRONT);
# by latency (normalized x = (ms - 1) / 9, y = (s - 0.2) / 0.8) it is the 2 ms trial, 70 params.
LATENCY_FRONT = [(10, 1.0, 0.20), (20, 5.0, 0.60), (40, 9.0, 0.90), (70, 2.0, 0.95), (100, 10.0, 1.0)]


def test_knee_cost_is_latency_when_latency_is_an_objective():
    flops = {i: {"flops": 20 * p} for i, (p, _, _) in enumerate(LATENCY_FRONT)}  # recorded, as searches do
    study = make_study(LATENCY_FRONT, attrs=flops, names=("params", "latency", "similarity"))
    assert select_trial(study).values[:2] == [70, 2.0]


def test_knee_ignores_front_trials_both_slower_and_less_similar_than_another():
    """(30 params, 12 ms, 0.95) is on the 3-objective front for its params, but the original
    (100, 4 ms, 1.0) is faster and more similar. As the chord's costly end it made the original
    the knee; without it the chord joins 1 ms and 4 ms, and the knee is the 3 ms plan."""
    points = [(10, 1.0, 0.20), (40, 3.0, 0.90), (100, 4.0, 1.0), (30, 12.0, 0.95)]
    flops = {i: {"flops": 20 * p} for i, (p, _, _) in enumerate(points)}
    study = make_study(points, attrs=flops, names=("params", "latency", "similarity"))
    assert len(pareto_trials(study)) == 4
    assert select_trial(study).values[:2] == [40, 3.0]


def test_knee_cost_stays_params_when_latency_is_only_recorded():
    """Default objectives pick the same trial as before, latency user attrs or not."""
    points = [(p, 20 * p, s) for p, _, s in LATENCY_FRONT]
    attrs = {i: {"latency_ms": ms} for i, (_, ms, _) in enumerate(LATENCY_FRONT)}
    assert (
        select_trial(make_study(points, attrs=attrs, names=("params", "flops", "similarity"))).values[0] == 40
    )
    assert select_trial(make_study(FRONT, names=("params", "flops", "similarity"))).values[0] == 40


def test_knee_of_two_points_is_the_more_similar():
    assert select_trial(make_study(FRONT[:2])).values[0] == 20


def test_min_similarity_gives_the_fewest_params_above_it():
    study = make_study(FRONT)
    assert select_trial(study, min_similarity=0.9).values[0] == 40
    assert select_trial(study, min_similarity=0.91).values[0] == 70
    with pytest.raises(ValueError, match=r"Invalid `min_similarity`: expected <= 1.0000"):
        select_trial(study, min_similarity=1.5)


def test_min_similarity_gives_the_fastest_above_it_when_latency_is_an_objective():
    flops = {i: {"flops": 20 * p} for i, (p, _, _) in enumerate(LATENCY_FRONT)}
    study = make_study(LATENCY_FRONT, attrs=flops, names=("params", "latency", "similarity"))
    assert select_trial(study, min_similarity=0.9).values[:2] == [70, 2.0]  # by params: 40 at 9 ms
    assert select_trial(make_study(FRONT), min_similarity=0.9).values[0] == 40


def test_max_params_gives_the_most_similar_below_it():
    study = make_study(FRONT)
    assert select_trial(study, max_params=69).values[0] == 40
    with pytest.raises(
        ValueError, match=r"Invalid `max_params`: expected >= 10 \(smallest found\), received 5"
    ):
        select_trial(study, max_params=5)


def test_trial_number_and_its_errors():
    study = make_study(FRONT)
    assert select_trial(study, trial_number=3).number == 3
    with pytest.raises(
        ValueError, match=r"Invalid `trial_number`: expected a complete feasible trial \(0..4"
    ):
        select_trial(study, trial_number=9)
    with pytest.raises(ValueError, match="at most one of"):
        select_trial(study, trial_number=1, max_params=10)


def test_infeasible_trials_and_finetune_records_are_never_selected():
    constraints = [[0.0], [0.0], [1.0], [0.0], [0.0]]  # trial 2 (the knee) violates a constraint
    records = {4: {FINETUNED_FROM: 1}}
    study = make_study(FRONT, constraints=constraints, attrs=records)
    assert [t.number for t in feasible_trials(study)] == [0, 1, 3]
    assert 2 not in {t.number for t in pareto_trials(study)}
    assert select_trial(study).number != 2
    with pytest.raises(ValueError, match=r"expected a complete feasible trial"):
        select_trial(study, trial_number=2)


def test_empty_study_says_to_run_the_search():
    with pytest.raises(ValueError, match=r"Run the search first"):
        select_trial(optuna.create_study(directions=DIRECTIONS))


def test_spread_trials_keeps_both_ends_and_spaces_evenly():
    trials = make_study([(p, p, p / 100) for p in range(1, 11)]).trials[::-1]  # unsorted input
    assert [t.values[0] for t in spread_trials(trials, 4)] == [1, 4, 7, 10]
    assert [t.values[0] for t in spread_trials(trials, 1)] == [1]
    assert len(spread_trials(trials, 50)) == 10
    with pytest.raises(ValueError, match=r"Invalid `count`: expected >= 1, received 0"):
        spread_trials(trials, 0)
