"""Many worker processes, one study: exact budgets on Journal, PostgreSQL and SQLite,
a worker killed mid-trial, a reader polling SQLite during a search, one profile computation."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.search._storage import open_storage
from lrf_optuna.search._worker import OWNER_ATTR, SURPLUS_ATTR
from lrf_optuna.similarity import _cache
from lrf_optuna.similarity._cache import cached_profile
from search_support import settings
from worker_support import (
    HANG_MARK,
    HERE,
    POSTGRES_ENV,
    SHORT_HEARTBEAT,
    finish,
    start,
    wait_for_line,
    worker_command,
    write_inputs,
)

State = optuna.trial.TrialState
BUDGET = 24


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(model.keras, calibration.npy, cache dir), the profile computed once for the module."""
    directory = tmp_path_factory.mktemp("workers")
    model_path, data_path = write_inputs(directory)
    cache = directory / "cache"
    lo.profile_model(
        keras.models.load_model(model_path),
        np.load(data_path),
        settings=settings(),
        cache_dir=cache,
        show_progress=False,
    )
    return model_path, data_path, cache


@pytest.fixture
def postgres_url():
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"${POSTGRES_ENV} is not set (no PostgreSQL server); .ci/run starts one: .ci/postgres.sh")
    return url


@pytest.fixture
def study_name(request):
    """A unique name (PostgreSQL keeps studies between runs), deleted from PostgreSQL after."""
    name = f"workers-{uuid.uuid4().hex[:8]}"
    yield name
    url = os.environ.get(POSTGRES_ENV)
    if url and "postgres_url" in request.fixturenames:
        optuna.delete_study(study_name=name, storage=open_storage(url))


def create(inputs, storage: str, study_name: str) -> None:
    """The creator: ``run_study(n_trials=0)`` (study, settings, anchors), as `search --trials 0`."""
    model_path, data_path, cache = inputs
    lo.run_study(
        keras.models.load_model(model_path),
        np.load(data_path),
        storage=storage,
        study_name=study_name,
        n_trials=0,
        cache_dir=cache,
        show_progress=False,
        profile_settings=settings(),
        # Few hull seeds (population // 3 per cost): anchors and seeds stay well inside BUDGET,
        # so a killed worker's trial, enqueued again behind them, runs within the budget.
        population_size=6,
    )


def run_workers(inputs, storage, study_name, count, tmp_path, budget=BUDGET, **env) -> None:
    logs = [tmp_path / f"worker{i}.log" for i in range(count)]
    processes = [
        start(worker_command(inputs, storage, study_name, budget, i), log, **env)
        for i, log in enumerate(logs)
    ]
    finish(processes, logs)


def check_exact(storage: str, study_name: str, budget: int = BUDGET) -> list[optuna.trial.FrozenTrial]:
    """Exactly ``budget`` COMPLETE, none RUNNING, numbers unique, no params set twice."""
    trials = optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    complete = [t for t in trials if t.state == State.COMPLETE]
    assert len(complete) == budget
    assert not [t.number for t in trials if t.state == State.RUNNING]
    # No queued (anchor, seed, retried) trial was run twice; NSGA-II may sample a seed's params again.
    queued = [json.dumps(t.params, sort_keys=True) for t in complete if "fixed_params" in t.system_attrs]
    assert len(set(queued)) == len(queued)
    assert all(t.user_attrs.get(OWNER_ATTR) for t in complete)
    surplus = [t for t in trials if t.state == State.PRUNED]
    assert all(t.user_attrs.get(SURPLUS_ATTR) for t in surplus)
    return trials


def test_four_workers_on_a_journal_file(inputs, tmp_path, study_name):
    storage = f"journal:///{tmp_path / 'study.log'}"
    create(inputs, storage, study_name)
    run_workers(inputs, storage, study_name, 4, tmp_path)
    check_exact(storage, study_name)


def test_four_workers_on_postgresql(inputs, tmp_path, postgres_url, study_name):
    create(inputs, postgres_url, study_name)
    run_workers(inputs, postgres_url, study_name, 4, tmp_path)
    check_exact(postgres_url, study_name)


def test_two_workers_on_sqlite_then_a_larger_budget(inputs, tmp_path, study_name):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create(inputs, storage, study_name)
    run_workers(inputs, storage, study_name, 2, tmp_path)
    check_exact(storage, study_name)
    model_path, data_path, cache = inputs
    lo.run_worker(  # in this process: a larger budget resumes the study
        keras.models.load_model(model_path), np.load(data_path), storage=storage,
        study_name=study_name, n_trials=BUDGET + 4, worker_id=9, cache_dir=cache,
    )  # fmt: skip
    check_exact(storage, study_name, BUDGET + 4)


def killed_worker(inputs, storage, study_name, tmp_path) -> None:
    """A worker hangs in its 3rd trial and is SIGKILLed; a worker started then finishes the budget."""
    model_path, data_path, cache = inputs
    victim_log, helper_log = tmp_path / "victim.log", tmp_path / "helper.log"
    victim = start(
        [sys.executable, str(HERE / "worker_support.py"), "--storage", storage, "--study", study_name,
         "--n-trials", str(BUDGET), "--model", str(model_path), "--data", str(data_path),
         "--cache-dir", str(cache), "--hang-after", "2"],
        victim_log, **SHORT_HEARTBEAT,
    )  # fmt: skip
    wait_for_line(victim_log, HANG_MARK, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    helper = start(worker_command(inputs, storage, study_name, BUDGET, 1), helper_log, **SHORT_HEARTBEAT)
    finish([helper], [helper_log])
    trials = check_exact(storage, study_name)
    hung = int(victim_log.read_text().split(HANG_MARK)[1].split()[0])
    assert trials[hung].state == State.FAIL  # stale heartbeat, or (Journal) its process is gone
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == hung]
    assert len(retries) == 1 and retries[0].state == State.COMPLETE  # enqueued again, then run
    assert retries[0].params == trials[hung].params


def test_killed_worker_on_sqlite_is_retried(inputs, tmp_path, study_name, monkeypatch):
    for key, value in SHORT_HEARTBEAT.items():
        monkeypatch.setenv(key, value)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create(inputs, storage, study_name)
    killed_worker(inputs, storage, study_name, tmp_path)


@pytest.mark.slow  # the same heartbeat mechanism as SQLite, on a server
def test_killed_worker_on_postgresql_is_retried(inputs, tmp_path, postgres_url, study_name, monkeypatch):
    for key, value in SHORT_HEARTBEAT.items():
        monkeypatch.setenv(key, value)
    create(inputs, postgres_url, study_name)
    killed_worker(inputs, postgres_url, study_name, tmp_path)


@pytest.mark.slow
def test_killed_worker_on_a_journal_file_is_retried(inputs, tmp_path, study_name):
    """No heartbeats: the surviving worker sees that the trial's process is gone."""
    storage = f"journal:///{tmp_path / 'study.log'}"
    create(inputs, storage, study_name)
    killed_worker(inputs, storage, study_name, tmp_path)


READER = """
import sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
reads = 0
while True:
    study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])  # plain Optuna, like the dashboard
    reads += len(study.trials) >= 0
    print("reads", reads, flush=True)
"""


def test_reader_polling_sqlite_does_not_lock_out_the_search(inputs, tmp_path, study_name):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create(inputs, storage, study_name)
    log = tmp_path / "reader.log"
    reader = start([sys.executable, "-c", READER, storage, study_name], log)
    try:
        wait_for_line(log, "reads 1", reader, timeout=60)
        model_path, data_path, cache = inputs
        study = lo.run_study(
            keras.models.load_model(model_path), np.load(data_path), storage=storage,
            study_name=study_name, n_trials=40, cache_dir=cache, show_progress=False,
            profile_settings=settings(),
        )  # fmt: skip
        assert reader.poll() is None, log.read_text()[-3000:]
    finally:
        reader.kill()
        reader.wait()
    assert len(study.get_trials(states=(State.COMPLETE,))) == 40
    assert int(log.read_text().split()[-1]) > 5  # it really read while the search wrote


def test_profile_is_computed_once_by_concurrent_callers(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    data, calls = np.ones((4, 4), np.float32), []
    profile = lo.profile_model(model, data, settings=settings(), cache_dir=None, show_progress=False)
    # The computation waits until all three callers have reached the lock: they really overlap
    # (no sleep that hopes they do).
    arrivals, all_arrived, lock = [], threading.Event(), _cache.exclusive

    def counting_lock(path):
        arrivals.append(path)
        if len(arrivals) == 3:
            all_arrived.set()
        return lock(path)

    monkeypatch.setattr(_cache, "exclusive", counting_lock)

    def compute():
        calls.append(1)
        assert all_arrived.wait(timeout=60), f"only {len(arrivals)} caller(s) reached the lock"
        return profile

    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cached_profile(model, data, settings(), tmp_path, compute))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 3
    assert all(r.equals(results[0]) for r in results)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask(), not optimize()
def test_sqlite_workers_never_pop_the_same_queued_trial(tmp_path):
    """Four connections race to pop 40 WAITING trials: each is run once (BEGIN IMMEDIATE)."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="q")
    for x in range(40):
        study.enqueue_trial({"x": x})
    popped, barrier = [], threading.Barrier(4)

    def pop() -> None:
        mine = optuna.load_study(study_name="q", storage=open_storage(url))
        barrier.wait()
        popped.extend(mine.ask().number for _ in range(10))

    threads = [threading.Thread(target=pop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(popped) == list(range(40))
