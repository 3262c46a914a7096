"""Pure data: plans, layer geometry, the cost model of replacement chains, batches."""

from __future__ import annotations

from lrf_optuna.core._cost import Cost
from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.core._plan import NONE, resolve_plan
from lrf_optuna.core._stages import (
    ConvStage,
    DenseStage,
    SeparableStage,
    TTStage,
    TuckerStage,
    chain_cost,
    layer_cost,
)

__all__ = [
    "NONE",
    "CallShape",
    "ConvStage",
    "Cost",
    "DenseStage",
    "LayerGeometry",
    "SeparableStage",
    "TTStage",
    "TuckerStage",
    "chain_cost",
    "layer_cost",
    "resolve_plan",
]
