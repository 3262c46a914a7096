"""lrf_optuna: compress trained Keras CNNs by multi-method low-rank factorization."""

from __future__ import annotations

from lrf_optuna.analysis import ModelAnalysis, analyze, compressible_layers, model_cost, plan_cost
from lrf_optuna.catalog import LayerSpec
from lrf_optuna.cost import Cost
from lrf_optuna.factorizers import get_factorizer, methods_for
from lrf_optuna.layers import TTDense, TuckerDense
from lrf_optuna.surgery import materialize

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "LayerSpec",
    "ModelAnalysis",
    "TTDense",
    "TuckerDense",
    "__version__",
    "analyze",
    "compressible_layers",
    "get_factorizer",
    "materialize",
    "methods_for",
    "model_cost",
    "plan_cost",
]
