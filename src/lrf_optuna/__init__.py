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
    from lrf_optuna import (
        cli,
        core,
        data,
        factorizers,
        files,
        layers,
        model,
        results,
        runtime,
        search,
        similarity,
    )
    from lrf_optuna.model import analyze, materialize, model_cost, plan_cost
    from lrf_optuna.results import compress_trial, finetune, select_trial
    from lrf_optuna.runtime import export_tflite, measure_latency
    from lrf_optuna.search import (
        Constraints,
        SearchSettings,
        plan_from_trial,
        run_study,
        run_worker,
    )
    from lrf_optuna.similarity import ProfileSettings, profile_model

__version__ = "0.1.0"

# the few calls of the quick start, the notebook and the CLI; everything else lives in its
# subpackage's namespace (``lo.search.SearchSpace``, ``lo.similarity.LAYERWISE_METRICS``, ...)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "model": ("analyze", "materialize", "model_cost", "plan_cost"),
    "results": ("compress_trial", "finetune", "select_trial"),
    "runtime": ("export_tflite", "measure_latency"),
    "search": (
        "Constraints",
        "SearchSettings",
        "plan_from_trial",
        "profile_model",
        "run_study",
        "run_worker",
    ),
    "similarity": ("ProfileSettings", "profile_model"),
}
_SUBMODULES = (
    "cli",
    "core",
    "data",
    "factorizers",
    "files",
    "layers",
    "model",
    "results",
    "runtime",
    "search",
    "similarity",
)
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Constraints",
    "ProfileSettings",
    "SearchSettings",
    "__version__",
    "analyze",
    "cli",
    "compress_trial",
    "core",
    "data",
    "export_tflite",
    "factorizers",
    "files",
    "finetune",
    "layers",
    "materialize",
    "measure_latency",
    "model",
    "model_cost",
    "plan_cost",
    "plan_from_trial",
    "profile_model",
    "results",
    "run_study",
    "run_worker",
    "runtime",
    "search",
    "select_trial",
    "similarity",
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
