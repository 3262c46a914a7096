"""Many worker processes, one study: ``run_worker`` joins a study made by ``run_study``.

Budget protocol. The study must end with exactly ``n_trials`` COMPLETE search trials
however many workers share it, with no lock beyond the storage's own ordering of trial
numbers (creation order, on SQLite, PostgreSQL and Journal alike):

* A trial *claims* a slot when, counted when it starts, the COMPLETE search trials plus
  the RUNNING or WAITING ones numbered below it are fewer than ``n_trials``. A trial that
  finds the budget claimed is a *surplus* trial: it is PRUNED at once (user attr
  ``lrf_optuna:surplus``) without evaluating anything. A trial that claims a slot runs.
  Let Z be the highest-numbered trial that completes: every other trial that completes
  after Z's check was RUNNING or WAITING below Z at that check, so at most ``n_trials``
  complete. A few surplus PRUNED trials may appear near the end; they never count.
* After each trial a callback stops the worker (``study.stop()``) once
  ``remaining_trials`` is 0. While the only missing trials are RUNNING in other workers,
  it waits: if one of them fails, a slot opens again and the worker goes on.
* A worker killed mid-trial: on RDB storages (SQLite, PostgreSQL) its heartbeats stop,
  the trial is failed after the grace period and enqueued again
  (``RetryHeartbeatStaleTrialCallback``). Journal storages have no heartbeats: a trial
  whose worker process (same host, ``lrf_optuna:worker`` = "host:pid") is gone is failed
  and enqueued again the same way. Trials of dead workers on other hosts stay RUNNING.

Samplers are seeded from ``(seed, worker_id or pid, trials so far)`` so that workers
never replay one another's samples.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable

import keras
import numpy as np
import optuna

from lrf_optuna.model._analysis import analyze
from lrf_optuna.search._run import DEFAULT_CACHE_DIR, objective_for
from lrf_optuna.search._settings import SearchSettings
from lrf_optuna.search._settings_record import has_record, refuse_differences, with_inputs
from lrf_optuna.search._study import (
    FINETUNED_FROM,
    GracefulInterrupt,
    check_space,
    load_existing_study,
    make_sampler,
    remaining_trials,
)
from lrf_optuna.similarity._profile import check_calibration, check_weights

__all__ = ["OWNER_ATTR", "SURPLUS_ATTR", "optimize_shared", "run_worker", "worker_seed"]

logger = logging.getLogger(__name__)
OWNER_ATTR = "lrf_optuna:worker"
SURPLUS_ATTR = "lrf_optuna:surplus"
ATTR = "lrf_optuna:"
State = optuna.trial.TrialState


def worker_seed(seed: int, worker: int, trials_so_far: int) -> int:
    """A 32-bit sampler seed distinct for each worker (and each restart of one)."""
    return int(np.random.SeedSequence([seed, worker, trials_so_far]).generate_state(1)[0])


def run_worker(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    n_trials: int,
    seed: int = 0,
    worker_id: int | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    timeout: float | None = None,
    poll_interval: float = 0.5,
) -> optuna.Study:
    """Join the existing study ``study_name`` and search until it has ``n_trials`` COMPLETE.

    Every setting (``SearchSettings``) is the one ``run_study`` recorded in the study; a
    model or calibration data other than the study's is refused (ValueError listing each
    difference). The profile comes from ``cache_dir``
    (computed once, under a lock, when missing). ``worker_id`` (default: the process id)
    offsets the sampler's ``seed``. See the module docstring for the budget protocol.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"Invalid `n_trials`: expected an integer >= 1, received {n_trials!r}")
    study = load_existing_study(storage, study_name)
    if not has_record(study):
        raise ValueError(
            f"Invalid study '{study.study_name}': expected a study created by lrf_optuna "
            "(run_study / `lrf-optuna search`), received one without its settings. Create it with "
            "`lrf-optuna search --trials 0` and the same --model/--data."
        )
    recorded = SearchSettings.from_study(study)
    data = check_calibration(model, calibration_x, max_samples=recorded.profile_settings.max_samples)
    check_weights(model)
    _check_params(study, model)
    refuse_differences(study.study_name, recorded, with_inputs(recorded, model, data, None))
    objective = objective_for(
        model, data, recorded, analysis=analyze(model), cache_dir=cache_dir, show_progress=False
    )
    check_space(study, objective.space)
    worker = os.getpid() if worker_id is None else worker_id
    trials_so_far = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(recorded.sampler_settings(seed=worker_seed(seed, worker, trials_so_far)))
    return optimize_shared(study, objective, n_trials=n_trials, timeout=timeout, poll_interval=poll_interval)


def _check_params(study: optuna.Study, model: keras.Model) -> None:
    """Another model is named as such (its weights' fingerprint would only say "other weights")."""
    expected, params = study.user_attrs[f"{ATTR}base_params"], model.count_params()
    if params != expected:
        raise ValueError(
            f"Invalid model for study '{study.study_name}': expected the model it was created with "
            f"({expected} params), received one with {params} params"
        )


def optimize_shared(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], object],
    *,
    n_trials: int,
    timeout: float | None = None,
    poll_interval: float = 0.5,
) -> optuna.Study:
    """``study.optimize(objective)`` until ``n_trials`` search trials are COMPLETE in total."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    budget = _Budget(n_trials, poll_interval)
    if not budget.wait_for_slot(study):
        logger.info("worker %s: study '%s' already has its %d trials", owner, study.study_name, n_trials)
        return study
    with GracefulInterrupt() as interrupt:
        study.optimize(
            _Claimed(objective, owner, n_trials),
            n_trials=None,
            timeout=timeout,
            callbacks=[interrupt, dataclasses.replace(budget, interrupt=interrupt)],
            gc_after_trial=False,
            show_progress_bar=False,
        )
    complete = n_trials - remaining_trials(study, n_trials)
    logger.info("worker %s: stopped; study '%s' has %d/%d", owner, study.study_name, complete, n_trials)
    return study


@dataclasses.dataclass(frozen=True)
class _Claimed:
    """The objective, run only by trials that claim a slot of the budget (others are PRUNED)."""

    objective: Callable[[optuna.Trial], object]
    owner: str
    n_trials: int

    def __call__(self, trial: optuna.Trial):
        trial.set_user_attr(OWNER_ATTR, self.owner)
        if _claimed_below(trial.study, trial.number) >= self.n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("the budget is already claimed by other workers")
        return self.objective(trial)


def _is_search(trial: optuna.trial.FrozenTrial) -> bool:
    return FINETUNED_FROM not in trial.user_attrs and not trial.user_attrs.get(SURPLUS_ATTR)


def _claimed_below(study: optuna.Study, number: int) -> int:
    trials = study.get_trials(deepcopy=False, states=(State.COMPLETE, State.RUNNING, State.WAITING))
    return sum(1 for t in trials if _is_search(t) and (t.state == State.COMPLETE or t.number < number))


@dataclasses.dataclass(frozen=True)
class _Budget:
    """Callback: stop once the budget is COMPLETE; wait while other workers may still fill it."""

    n_trials: int
    poll_interval: float
    interrupt: GracefulInterrupt | None = None

    def __call__(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if (self.interrupt and self.interrupt.requested) or not self.wait_for_slot(study):
            study.stop()

    def wait_for_slot(self, study: optuna.Study) -> bool:
        """True when a trial may claim a slot; False when the budget is (or will be) met."""
        while True:
            remaining = remaining_trials(study, self.n_trials)
            if remaining == 0:
                return False
            pending = [
                t
                for t in study.get_trials(deepcopy=False, states=(State.RUNNING, State.WAITING))
                if _is_search(t)
            ]
            if any(t.state == State.WAITING for t in pending) or len(pending) < remaining:
                return True
            if not _may_still_fail(study, pending) or (self.interrupt and self.interrupt.requested):
                return False
            time.sleep(self.poll_interval)


def _has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None


def _may_still_fail(study: optuna.Study, pending: list[optuna.trial.FrozenTrial]) -> bool:
    """True while a RUNNING trial of an lrf_optuna worker may still fail (and free its slot).

    With heartbeats, stale trials are failed here and enqueued again. Without them, trials
    of dead workers on this host are; trials of other hosts are not waited for.
    """
    storage, host = study._storage, socket.gethostname()
    heartbeat = _has_heartbeat(storage)
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    wait = False
    for trial in pending:
        owner_host, _, pid = str(trial.user_attrs.get(OWNER_ATTR, "")).rpartition(":")
        if trial.state != State.RUNNING or not pid.isdigit():
            continue
        if heartbeat or (owner_host == host and _process_alive(int(pid))):
            wait = True
        elif owner_host == host:
            wait = _fail_and_retry(study, trial, pid) or wait
    return wait


def _fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, pid: str) -> bool:
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=State.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return True  # another worker failed it first (and enqueued the retry)
    logger.warning("trial %d: its worker (pid %s) is gone; failed and enqueued again", trial.number, pid)
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, storage.get_trial(trial._trial_id))
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
