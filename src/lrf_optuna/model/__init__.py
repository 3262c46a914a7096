"""Keras models: graph rebuild, compressible layers, exact costs, materialization, refit.

The only code that rewires Keras models lives here (``rebuild`` and its visitors).
"""

from __future__ import annotations

from lrf_optuna.model._analysis import ModelAnalysis, analyze, compressible_layers, model_cost, plan_cost
from lrf_optuna.model._graph import GraphVisitor, rebuild
from lrf_optuna.model._layer_specs import LayerSpec
from lrf_optuna.model._materialize import materialize
from lrf_optuna.model._refit import refit_chains
from lrf_optuna.model._statistics import collect_statistics

__all__ = [
    "GraphVisitor",
    "LayerSpec",
    "ModelAnalysis",
    "analyze",
    "collect_statistics",
    "compressible_layers",
    "materialize",
    "model_cost",
    "plan_cost",
    "rebuild",
    "refit_chains",
]
