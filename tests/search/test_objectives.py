"""Objectives: 2 to 4 of params, FLOPs, latency and similarity; FLOPs = 2 x MACs (real SQLite)."""

from __future__ import annotations

import re

import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.results._report import pareto_frame
from lrf_optuna.runtime._latency_table import LatencySettings, latency_table
from lrf_optuna.search._objective import trial_metrics

COMPLETE = optuna.trial.TrialState.COMPLETE
FAST_LATENCY = LatencySettings(runtime="keras", runs=2, ranks_per_method=2)


def search(model, data, profile, url, n_trials=6, **options):
    options = {"population_size": 4, "show_progress": False, "profile": profile, "cache_dir": None, **options}
    return lo.run_study(model, data, storage=url, study_name="s", n_trials=n_trials, **options)


def test_default_objectives_are_params_flops_similarity(model, data, profile, tmp_path):
    study = search(model, data, profile, f"sqlite:///{tmp_path / 'a.db'}")
    assert study.metric_names == ["params", "flops", "similarity"]
    analysis = lo.analyze(model)
    for trial in study.get_trials(states=(COMPLETE,)):
        cost = analysis.plan_cost(lo.plan_from_trial(model, trial, study=study))
        assert trial.values[:2] == [cost.params, 2 * cost.macs]
        assert "flops" not in trial.user_attrs  # an objective already: no second copy


def test_two_objectives_keep_the_other_metrics_as_user_attrs(model, data, profile, tmp_path):
    study = search(model, data, profile, f"sqlite:///{tmp_path / 'b.db'}", objectives=("flops", "similarity"))
    assert study.metric_names == ["flops", "similarity"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    analysis = lo.analyze(model)
    for trial in study.get_trials(states=(COMPLETE,)):
        cost = analysis.plan_cost(lo.plan_from_trial(model, trial, study=study))
        metrics = trial_metrics(trial, study.metric_names)
        assert (metrics["params"], metrics["flops"], metrics["macs"]) == (cost.params, cost.flops, cost.macs)
    knee = lo.select_trial(study)
    assert knee in lo.results.pareto_trials(study)
    frame = pareto_frame(study)
    assert list(frame["flops"]) == [
        int(trial_metrics(t, study.metric_names)["flops"]) for t in lo.results.pareto_trials(study)
    ]
    best = lo.select_trial(study, min_similarity=0.0)  # the fewest params of any trial
    every = [trial_metrics(t, study.metric_names)["params"] for t in study.get_trials(states=(COMPLETE,))]
    assert trial_metrics(best, study.metric_names)["params"] == min(every)


def test_latency_objective_is_the_tables_prediction(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cache = tmp_path / "cache"
    study = search(
        model, data, profile, url, objectives=("params", "latency", "similarity"),
        latency_settings=FAST_LATENCY, cache_dir=cache, constraints=lo.Constraints(max_latency_ms=1e9),
    )  # fmt: skip
    assert study.metric_names == ["params", "latency", "similarity"]
    assert len(list(cache.glob("latency-*.json"))) == 1
    objective = lo.search.make_objective(
        model, data, profile=profile, objectives=("params", "latency", "similarity"),
        latency_settings=FAST_LATENCY, cache_dir=cache,
    )  # fmt: skip
    table = objective.latency  # loaded from the cache: the same numbers the search used
    for trial in study.get_trials(states=(COMPLETE,)):
        assert trial.values[1] == table.predict(lo.plan_from_trial(model, trial, study=study))
        assert set(trial.constraints.values()) == {trial.values[1] - 1e9}  # named, and the legacy mirror
    again = latency_table(model, FAST_LATENCY, {}, cache_dir=None)
    assert again.deltas == {}  # only the searched layers are timed


def test_resume_with_other_objectives_is_refused_untouched(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    search(model, data, profile, url, n_trials=3)
    before = len(optuna.load_study(study_name="s", storage=url).get_trials())
    with pytest.raises(
        ValueError,
        match=re.escape(
            "objectives: study has ['params', 'flops', 'similarity'], this run asks ['params', 'similarity']"
        ),
    ):
        search(model, data, profile, url, n_trials=6, objectives=("params", "similarity"))
    assert len(optuna.load_study(study_name="s", storage=url).get_trials()) == before


def test_a_study_of_params_macs_similarity_reads_and_resumes_as_before(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    study = search(model, data, profile, url, n_trials=3, objectives=("params", "macs", "similarity"))
    study = search(model, data, profile, url, n_trials=5)  # omitted: the recorded objectives
    assert study.metric_names == ["params", "macs", "similarity"]
    assert len([t for t in study.get_trials(states=(COMPLETE,))]) == 5
    knee = lo.select_trial(study)
    metrics = trial_metrics(knee, study.metric_names)
    assert metrics["flops"] == 2 * knee.values[1]


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        (("params", "speed"), "expected names among ['params', 'flops', 'latency', 'similarity'], received unknown ['speed']"),
        (("params",), "expected 2 to 4 distinct names"),
        (("params", "params", "similarity"), "expected 2 to 4 distinct names"),
        (("flops", "macs", "similarity"), "expected 2 to 4 distinct names"),
    ],
)  # fmt: skip
def test_bad_objectives_are_refused_before_anything_is_written(
    model, data, profile, tmp_path, objectives, message
):
    path = tmp_path / "f.db"
    with pytest.raises(ValueError, match=re.escape(message)):
        search(model, data, profile, f"sqlite:///{path}", objectives=objectives)
    assert not path.exists()


def test_constraint_values_follow_each_metric():
    limits = lo.Constraints(max_params=10, max_flops=100, max_latency_ms=2.0, min_similarity=0.9)
    values = limits.values({"params": 12, "flops": 80, "macs": 40, "latency": 2.5, "similarity": 0.95})
    assert values == {
        "max_params": 2.0,
        "max_flops": -20.0,
        "max_latency_ms": 0.5,
        "min_similarity": pytest.approx(-0.05),
    }
