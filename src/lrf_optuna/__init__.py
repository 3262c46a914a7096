"""lrf_optuna: compress trained Keras CNNs by multi-method low-rank factorization.

The package imports lazily (PEP 562): ``import lrf_optuna`` (and so ``lrf-optuna --help``)
loads no TensorFlow; each public name is imported from its module on first access.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what readers and type checkers see; `_EXPORTS` below must list the same names
    from lrf_optuna import data
    from lrf_optuna.analysis import ModelAnalysis, analyze, compressible_layers, model_cost, plan_cost
    from lrf_optuna.baselines import vbmf_plan
    from lrf_optuna.catalog import LayerSpec
    from lrf_optuna.cost import Cost
    from lrf_optuna.factorizers import get_factorizer, methods_for
    from lrf_optuna.finetuning import (
        SCHEDULES,
        FinetuneResult,
        evaluate_accuracy,
        finetune,
        learning_rate_schedule,
    )
    from lrf_optuna.latency import RUNTIMES, Latency, measure_latency
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
    from lrf_optuna.tflite import QUANTIZATIONS, export_tflite
    from lrf_optuna.worker import run_worker

__version__ = "0.1.0"

# submodule (under lrf_optuna.) -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis": ("ModelAnalysis", "analyze", "compressible_layers", "model_cost", "plan_cost"),
    "baselines": ("vbmf_plan",),
    "catalog": ("LayerSpec",),
    "cost": ("Cost",),
    "factorizers": ("get_factorizer", "methods_for"),
    "finetuning": ("SCHEDULES", "FinetuneResult", "evaluate_accuracy", "finetune", "learning_rate_schedule"),
    "latency": ("RUNTIMES", "Latency", "measure_latency"),
    "layers": ("TTDense", "TuckerDense"),
    "metrics": ("METRICS", "OUTPUT_METRICS"),
    "objective": ("METRIC_NAMES", "Constraints", "Objective"),
    "profile": ("ProfileSettings",),
    "proxy": ("AGGREGATORS", "LAYERWISE_METRICS", "LayerwiseProxy", "ModelProxy"),
    "report": ("pareto_frame", "summary_table", "write_report"),
    "search": ("make_objective", "plan_from_trial", "profile_model", "run_study"),
    "search_space": ("DEFAULT_METHODS", "SearchSpace"),
    "select": ("pareto_trials", "select_trial", "spread_trials"),
    "settings": ("DataSpec", "SearchSettings"),
    "storage": ("open_storage",),
    "study": ("SamplerSettings",),
    "surgery": ("materialize",),
    "tflite": ("QUANTIZATIONS", "export_tflite"),
    "worker": ("run_worker",),
}
_SUBMODULES = ("data",)
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


__all__ = [
    "AGGREGATORS",
    "DEFAULT_METHODS",
    "LAYERWISE_METRICS",
    "METRICS",
    "METRIC_NAMES",
    "OUTPUT_METRICS",
    "QUANTIZATIONS",
    "RUNTIMES",
    "SCHEDULES",
    "Constraints",
    "Cost",
    "DataSpec",
    "FinetuneResult",
    "Latency",
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
    "export_tflite",
    "finetune",
    "get_factorizer",
    "learning_rate_schedule",
    "make_objective",
    "materialize",
    "measure_latency",
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


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _RegisterLayersAfterKeras(importlib.abc.MetaPathFinder):
    """A one-shot post-import hook: ``import keras`` also imports ``lrf_optuna.layers``.

    The eager imports registered TTDense/TuckerDense with Keras on ``import lrf_optuna``, so
    ``keras.models.load_model`` restored compressed models without ``custom_objects``
    (Keras imports no module named in a file outside its own packages). Lazily, they are
    registered as soon as Keras exists.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # from the other finders
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module  # this spec's own loader object

        def exec_module(module) -> None:
            load(module)
            try:
                importlib.import_module(f"{__name__}.layers")
            except ImportError as error:  # never break `import keras` itself
                logging.getLogger(__name__).warning("TTDense/TuckerDense not registered: %s", error)

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:  # Keras (and its backend) already loaded: registering costs nothing
    importlib.import_module(f"{__name__}.layers")
elif not any(isinstance(finder, _RegisterLayersAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersAfterKeras())
