"""The Optuna search: space, objectives, settings record, studies, storages, workers."""

from __future__ import annotations

from lrf_optuna.search._baselines import vbmf_plan
from lrf_optuna.search._objective import (
    DEFAULT_OBJECTIVES,
    OBJECTIVES,
    Constraints,
    Objective,
    trial_metrics,
)
from lrf_optuna.search._replay import plan_from_trial
from lrf_optuna.search._run import make_objective, run_study
from lrf_optuna.search._settings import DataSpec, SearchSettings
from lrf_optuna.search._space import DEFAULT_METHODS, SearchSpace
from lrf_optuna.search._storage import HeartbeatSettings, open_storage
from lrf_optuna.search._study import SamplerSettings, open_study
from lrf_optuna.search._worker import run_worker

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_OBJECTIVES",
    "OBJECTIVES",
    "Constraints",
    "DataSpec",
    "HeartbeatSettings",
    "Objective",
    "SamplerSettings",
    "SearchSettings",
    "SearchSpace",
    "make_objective",
    "open_storage",
    "open_study",
    "plan_from_trial",
    "run_study",
    "run_worker",
    "trial_metrics",
    "vbmf_plan",
]
