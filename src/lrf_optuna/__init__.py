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
    from lrf_optuna.core._cost import Cost
    from lrf_optuna.factorizers import get_factorizer, methods_for
    from lrf_optuna.layers import TTDense, TuckerDense
    from lrf_optuna.model._analysis import ModelAnalysis, analyze, compressible_layers, model_cost, plan_cost
    from lrf_optuna.model._layer_specs import LayerSpec
    from lrf_optuna.model._materialize import materialize
    from lrf_optuna.results._finetune import (
        SCHEDULES,
        FinetuneResult,
        evaluate_accuracy,
        finetune,
        learning_rate_schedule,
    )
    from lrf_optuna.results._report import pareto_frame, summary_table, write_report
    from lrf_optuna.results._selection import pareto_trials, select_trial, spread_trials
    from lrf_optuna.runtime._latency import RUNTIMES, Latency, measure_latency
    from lrf_optuna.runtime._tflite import QUANTIZATIONS, export_tflite
    from lrf_optuna.search._baselines import vbmf_plan
    from lrf_optuna.search._objective import METRIC_NAMES, Constraints, Objective
    from lrf_optuna.search._run import make_objective, plan_from_trial, profile_model, run_study
    from lrf_optuna.search._settings import DataSpec, SearchSettings
    from lrf_optuna.search._space import DEFAULT_METHODS, SearchSpace
    from lrf_optuna.search._storage import open_storage
    from lrf_optuna.search._study import SamplerSettings
    from lrf_optuna.search._worker import run_worker
    from lrf_optuna.similarity._metrics import METRICS, OUTPUT_METRICS
    from lrf_optuna.similarity._profile import ProfileSettings
    from lrf_optuna.similarity._proxy import AGGREGATORS, LAYERWISE_METRICS, LayerwiseProxy, ModelProxy

__version__ = "0.1.0"

# submodule (under lrf_optuna.) -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "model._analysis": ("ModelAnalysis", "analyze", "compressible_layers", "model_cost", "plan_cost"),
    "search._baselines": ("vbmf_plan",),
    "model._layer_specs": ("LayerSpec",),
    "core._cost": ("Cost",),
    "factorizers": ("get_factorizer", "methods_for"),
    "results._finetune": (
        "SCHEDULES",
        "FinetuneResult",
        "evaluate_accuracy",
        "finetune",
        "learning_rate_schedule",
    ),
    "runtime._latency": ("RUNTIMES", "Latency", "measure_latency"),
    "layers": ("TTDense", "TuckerDense"),
    "similarity._metrics": ("METRICS", "OUTPUT_METRICS"),
    "search._objective": ("METRIC_NAMES", "Constraints", "Objective"),
    "similarity._profile": ("ProfileSettings",),
    "similarity._proxy": ("AGGREGATORS", "LAYERWISE_METRICS", "LayerwiseProxy", "ModelProxy"),
    "results._report": ("pareto_frame", "summary_table", "write_report"),
    "search._run": ("make_objective", "plan_from_trial", "profile_model", "run_study"),
    "search._space": ("DEFAULT_METHODS", "SearchSpace"),
    "results._selection": ("pareto_trials", "select_trial", "spread_trials"),
    "search._settings": ("DataSpec", "SearchSettings"),
    "search._storage": ("open_storage",),
    "search._study": ("SamplerSettings",),
    "model._materialize": ("materialize",),
    "runtime._tflite": ("QUANTIZATIONS", "export_tflite"),
    "search._worker": ("run_worker",),
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
