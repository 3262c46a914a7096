"""Model analysis: compressible layers, model cost and predicted plan cost."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras

from lrf_optuna.core._cost import Cost
from lrf_optuna.core._plan import Plan, resolve_plan
from lrf_optuna.core._stages import layer_cost
from lrf_optuna.factorizers import get_factorizer, methods_for
from lrf_optuna.model._layer_specs import (
    FACTORIZED,
    LayerSpec,
    geometry_of,
    spec_of,
    trace_calls,
    uncompressible_reason,
)

__all__ = ["ModelAnalysis", "analyze", "compressible_layers", "model_cost", "plan_cost"]


@dataclasses.dataclass(frozen=True)
class ModelAnalysis:
    """Everything the search needs from a model, computed once by ``analyze``."""

    specs: dict[str, LayerSpec]
    refused: dict[str, str]  # uncompressible layer -> reason
    cost: Cost
    layers: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def resolve(self, plan: Plan) -> dict[str, tuple[str, int]]:
        """Validated ``{layer: (method, rank)}`` of the layers ``plan`` factorizes."""
        refused_methods = {
            name: {
                m: get_factorizer(spec.geometry.kind, m).unsupported_reason(spec.geometry)
                for m in methods_for(spec.geometry.kind)
                if m not in spec.methods
            }
            for name, spec in self.specs.items()
        }
        return resolve_plan(plan, self.specs, self.refused, refused_methods)

    def plan_cost(self, plan: Plan) -> Cost:
        """Cost of ``materialize(model, plan)``, predicted without any surgery."""
        total = self.cost
        for name, (method, rank) in self.resolve(plan).items():
            spec = self.specs[name]
            factorizer = get_factorizer(spec.geometry.kind, method)
            total = total - spec.cost + factorizer.cost(spec.geometry, rank)
        return total


def analyze(model: keras.Model) -> ModelAnalysis:
    """Trace ``model`` once and describe its layers and cost."""
    calls_by_path: dict[str, list] = {}
    layers = {}
    for call in trace_calls(model):
        calls_by_path.setdefault(call.path, []).append(call)
        layers[call.path] = call.layer
    specs, refused, macs = {}, {}, 0
    for path, layer in layers.items():
        calls = calls_by_path[path]
        if isinstance(layer, FACTORIZED):
            macs += sum(math.prod(c.input_shape[1:-1]) for c in calls) * layer.macs_per_position()
            refused[path] = "it is already factorized"
            continue
        geom = geometry_of(layer, path, calls)
        if geom is None:
            continue
        macs += layer_cost(geom).macs
        reason = uncompressible_reason(geom)
        if reason is None:
            specs[path] = spec_of(geom)
        else:
            refused[path] = reason
    cost = Cost(model.count_params(), macs)
    return ModelAnalysis(specs=specs, refused=refused, cost=cost, layers=layers)


def compressible_layers(model: keras.Model) -> list[LayerSpec]:
    """The layers of ``model`` that can be factorized, in graph order."""
    return list(analyze(model).specs.values())


def model_cost(model: keras.Model) -> Cost:
    """Params (all weights) and MACs per sample of the conv/dense-like layers of ``model``."""
    return analyze(model).cost


def plan_cost(model: keras.Model, plan: Plan) -> Cost:
    """Predicted cost of ``materialize(model, plan)``; no layer is built."""
    return analyze(model).plan_cost(plan)
