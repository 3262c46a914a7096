"""lrf_optuna: compress trained Keras CNNs by multi-method low-rank factorization."""

from __future__ import annotations

from lrf_optuna import data
from lrf_optuna.analysis import ModelAnalysis, analyze, compressible_layers, model_cost, plan_cost
from lrf_optuna.baselines import vbmf_plan
from lrf_optuna.catalog import LayerSpec
from lrf_optuna.cost import Cost
from lrf_optuna.factorizers import get_factorizer, methods_for
from lrf_optuna.finetune import SCHEDULES, FinetuneResult, evaluate_accuracy, finetune, learning_rate_schedule
from lrf_optuna.layers import TTDense, TuckerDense
from lrf_optuna.metrics import METRICS, OUTPUT_METRICS
from lrf_optuna.objective import METRIC_NAMES, Constraints, Objective
from lrf_optuna.profile import ProfileSettings
from lrf_optuna.proxy import AGGREGATORS, LAYERWISE_METRICS, LayerwiseProxy, ModelProxy
from lrf_optuna.report import pareto_frame, summary_table, write_report
from lrf_optuna.search import make_objective, plan_from_trial, profile_model, run_study
from lrf_optuna.search_space import DEFAULT_METHODS, SearchSpace
from lrf_optuna.select import pareto_trials, select_trial, spread_trials
from lrf_optuna.settings import DataSpec, SearchSettings
from lrf_optuna.storage import open_storage
from lrf_optuna.study import SamplerSettings
from lrf_optuna.surgery import materialize
from lrf_optuna.worker import run_worker

__version__ = "0.1.0"

__all__ = [
    "AGGREGATORS",
    "DEFAULT_METHODS",
    "LAYERWISE_METRICS",
    "METRICS",
    "METRIC_NAMES",
    "OUTPUT_METRICS",
    "SCHEDULES",
    "Constraints",
    "Cost",
    "DataSpec",
    "FinetuneResult",
    "LayerSpec",
    "LayerwiseProxy",
    "ModelAnalysis",
    "ModelProxy",
    "Objective",
    "ProfileSettings",
    "SamplerSettings",
    "SearchSettings",
    "SearchSpace",
    "TTDense",
    "TuckerDense",
    "__version__",
    "analyze",
    "compressible_layers",
    "data",
    "evaluate_accuracy",
    "finetune",
    "get_factorizer",
    "learning_rate_schedule",
    "make_objective",
    "materialize",
    "methods_for",
    "model_cost",
    "open_storage",
    "pareto_frame",
    "pareto_trials",
    "plan_cost",
    "plan_from_trial",
    "profile_model",
    "run_study",
    "run_worker",
    "select_trial",
    "spread_trials",
    "summary_table",
    "vbmf_plan",
    "write_report",
]
