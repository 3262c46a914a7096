"""Resumable studies on real SQLite files, across real processes (and a kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import lrf_optuna as lo
import search_support
from lrf_optuna.search._study import ANCHORS_ATTR, FINETUNED_FROM, anchor_params, complete_search_trials
from search_support import calibration, nested_cnn, settings, tiny_cnn
from worker_support import HANG_MARK, wait_for_line

SUPPORT = Path(__file__).resolve().parents[1] / "search_support.py"
COMPLETE = optuna.trial.TrialState.COMPLETE
POPULATION = 16  # > the 13 anchors: generation 0 is still being sampled at a resume


def run_support(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SUPPORT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=lo.search.open_storage(url))


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(COMPLETE,))


def all_none_count(study: optuna.Study) -> int:
    """Trials with the all-"none" anchor's parameters."""
    none = anchor_params(lo.search.SearchSpace.from_analysis(lo.analyze(tiny_cnn())))[0]
    return sum(1 for t in study.get_trials() if t.params == none)


# --------------------------------------------------------------------------- processes


def test_resume_in_a_new_process(tmp_path, capsys):
    url, cache = f"sqlite:///{tmp_path / 'study.db'}", str(tmp_path / "cache")
    common = ["--storage", url, "--study", "resume", "--cache-dir", cache]
    common += ["--population-size", str(POPULATION)]
    # The first run in this process (the same code the child runs, without another TensorFlow
    # start-up); the resume, which is the point, in a new one.
    assert search_support.main([*common, "--n-trials", "20"]) == 0
    assert "complete 20" in capsys.readouterr().out
    before = complete(load(url, "resume"))
    assert len(before) == 20

    second_run = run_support(*common, "--n-trials", "40")
    assert "complete 40" in second_run.stdout
    study = load(url, "resume")
    trials = study.get_trials()
    assert len(complete(study)) == 40 and len(trials) == 40
    # the first 20 trials are untouched
    for old, new in zip(before, trials[:20]):
        assert (new.number, new.params, new.values, new.user_attrs) == (
            old.number,
            old.params,
            old.values,
            old.user_attrs,
        )
    # anchors were enqueued once
    assert study.user_attrs[ANCHORS_ATTR] is True
    assert all_none_count(study) == 1
    # the resumed sampler is not a replay of the first process (its seed is offset by the
    # 20 trials): the randomly sampled trials of generation 0 are all new
    resumed_random = [t for t in trials[20:] if t.system_attrs.get("NSGAIISampler:generation") == 0]
    assert len(resumed_random) >= 5
    assert not {params_key(t) for t in resumed_random} & {params_key(t) for t in trials[:20]}
    assert len({params_key(t) for t in resumed_random}) == len(resumed_random)


def params_key(trial: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


HEARTBEAT = {"LRF_OPTUNA_HEARTBEAT_INTERVAL": "1", "LRF_OPTUNA_HEARTBEAT_GRACE": "3"}


def test_resume_after_kill_9(tmp_path, monkeypatch):
    db = tmp_path / "killed.db"
    url, cache = f"sqlite:///{db}", str(tmp_path / "cache")
    args = ["--storage", url, "--study", "killed", "--cache-dir", cache, "--n-trials", "1000"]
    args += ["--population-size", str(POPULATION), "--sleep", "0.2", "--hang-after", "6"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1", **HEARTBEAT}
    log_path = tmp_path / "child.log"
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, str(SUPPORT), *args], stdout=log, stderr=log, env=env)
        try:  # the 7th trial prints the mark once it has its params, then hangs
            wait_for_line(log_path, HANG_MARK, child, timeout=240)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    killed_at = time.monotonic()

    killed = load(url, "killed")
    before = {t.number: t for t in complete(killed)}
    running = killed.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert len(before) == 6
    assert len(running) == 1 and running[0].params  # killed mid-trial, params recorded
    assert running[0].values is None
    stale_number = running[0].number

    for name, value in HEARTBEAT.items():
        monkeypatch.setenv(name, value)
    # This wait is the behaviour under test, not synchronisation: a RUNNING trial only becomes
    # stale once its last heartbeat is older than the grace period (3 s).
    time.sleep(max(0.0, killed_at + 4 - time.monotonic()))
    study = lo.run_study(
        tiny_cnn(),
        calibration(),
        storage=url,
        study_name="killed",
        n_trials=12,
        population_size=POPULATION,
        show_progress=False,
        profile_settings=settings(),
        cache_dir=cache,
    )
    finished = {t.number: t for t in complete(study)}
    assert len(finished) == 12
    for number, old in before.items():
        new = finished[number]
        assert (new.params, new.values, new.user_attrs) == (old.params, old.values, old.user_attrs)
    # the killed trial is never COMPLETE: its heartbeat stopped, so it failed and was
    # enqueued again (behind the anchors still waiting)
    trials = study.get_trials()
    stale = next(t for t in trials if t.number == stale_number)
    assert stale.state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == stale_number]
    assert len(retries) == 1
    assert retries[0].state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.COMPLETE)
    assert retries[0].system_attrs["fixed_params"] == stale.params
    assert all_none_count(study) == 1


# --------------------------------------------------------------------------- in process


def quick_study(model, data, profile, storage, n_trials, **options):
    options = {"population_size": 4, "show_progress": False, "profile": profile, **options}
    return lo.run_study(model, data, storage=storage, study_name="quick", n_trials=n_trials, **options)


def test_resume_to_a_reached_count_runs_nothing(model, data, profile):
    storage = optuna.storages.InMemoryStorage()
    study = quick_study(model, data, profile, storage, 5)
    assert len(complete(study)) == 5
    count = len(study.get_trials())  # 5 complete + the anchors still waiting
    study = quick_study(model, data, profile, storage, 3)
    assert len(study.get_trials()) == count and len(complete(study)) == 5
    study = quick_study(model, data, profile, storage, 7)
    assert len(complete(study)) == 7


def test_default_storage_and_cache_are_under_studies(model, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = lo.run_study(
        model, data, study_name="defaults", n_trials=2, show_progress=False, profile_settings=settings()
    )
    assert len(complete(study)) == 2
    assert (tmp_path / "studies" / "defaults.db").exists()
    assert list((tmp_path / "studies" / "cache").glob("profile-*.json"))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("sampler", ["tpe", "nsga3"])
def test_other_samplers(model, data, profile, sampler):
    study = quick_study(model, data, profile, optuna.storages.InMemoryStorage(), 16, sampler=sampler)
    assert len(complete(study)) == 16


def test_study_of_another_model_is_refused(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    quick_study(model, data, profile, url, 2)
    with pytest.raises(ValueError, match=r"(?s)Invalid settings for study 'quick'.*model weights: study has"):
        lo.run_study(
            nested_cnn(),
            calibration(8),
            storage=url,
            study_name="quick",
            n_trials=3,
            show_progress=False,
            profile_settings=settings(),
            cache_dir=None,
        )


def test_study_with_other_directions_is_refused(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'directions.db'}"
    optuna.create_study(storage=url, study_name="quick", direction="minimize")
    with pytest.raises(
        ValueError, match=r"expected the directions of objectives \['params', 'flops', 'similarity'\]"
    ):
        quick_study(model, data, profile, url, 2)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_trials": -1}, "Invalid `n_trials`"),
        ({"n_trials": True}, "Invalid `n_trials`"),
        ({"sampler": "cmaes"}, "Invalid `sampler`"),
        ({"crossover": "onepoint"}, "Invalid `crossover`"),
        ({"population_size": 1}, "Invalid `population_size`"),
        ({"storage": "studies/demo.db"}, "Invalid `storage`"),
    ],
)
def test_invalid_arguments(model, data, profile, options, match):
    options = {"n_trials": 2, "storage": optuna.storages.InMemoryStorage(), **options}
    with pytest.raises(ValueError, match=match):
        quick_study(model, data, profile, **options)


def test_study_of_other_methods_is_refused_with_the_recorded_ones(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'methods.db'}"
    quick_study(model, data, profile, url, 2)  # the default methods: SVD alone for dense layers
    before = len(load(url, "quick").trials)
    with pytest.raises(
        ValueError,
        match=r"methods: study has \{'conv': \['tucker2'.*'dense': \['svd'\]\}, this run asks None",
    ):
        quick_study(model, data, profile, url, 4, methods=None)  # every method: another space
    assert len(load(url, "quick").trials) == before  # refused before any trial
    assert load(url, "quick").user_attrs["lrf_optuna:methods"] == {
        "conv": list(lo.search.DEFAULT_METHODS["conv"]),
        "dense": ["svd"],
    }


def test_a_finetune_record_never_counts_toward_the_budget(model, data, profile, tmp_path):
    # Measured before the fix: 1299 of 1300 search trials after `lrf-optuna finetune`.
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    study = quick_study(model, data, profile, url, 5)
    best = complete(study)[-1]
    record = optuna.trial.create_trial(
        params=best.params,
        distributions=best.distributions,
        values=best.values,
        user_attrs={**best.user_attrs, FINETUNED_FROM: best.number},
    )
    study.add_trial(record)  # what records.record_finetune adds
    study = quick_study(model, data, profile, url, 9)
    assert complete_search_trials(study) == 9
    assert len(complete(study)) == 10  # and the record
