"""``materialize``: a new Keras model with the planned layers factorized."""

from __future__ import annotations

import logging
from typing import Any

import keras

from lrf_optuna.analysis import ModelAnalysis, analyze
from lrf_optuna.builders import build_chain
from lrf_optuna.catalog import canonical_kernel
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.graph import CopyVisitor, rebuild
from lrf_optuna.plan import Plan

__all__ = ["materialize"]

logger = logging.getLogger(__name__)


class _Chain:
    """Stand-in for a factorized layer: calling it runs its chain of new layers."""

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = layers

    def __call__(self, inputs, **kwargs):
        for layer in self.layers:
            inputs = layer(inputs)
        return inputs


class _Materializer(CopyVisitor):
    def __init__(self, analysis: ModelAnalysis, resolved: dict[str, tuple[str, int]], seed: int):
        super().__init__()
        self.analysis, self.resolved, self.seed = analysis, resolved, seed

    def clone(self, layer: Any, path: str) -> Any:
        if path not in self.resolved:
            return super().clone(layer, path)
        method, rank = self.resolved[path]
        geom = self.analysis.specs[path].geometry
        factorizer = get_factorizer(geom.kind, method)
        kernels = factorizer.decompose(canonical_kernel(layer, geom), geom, rank, seed=self.seed)
        chain = build_chain(layer, geom, method, factorizer.stages(geom, rank), kernels)
        self.pending.extend(chain)
        logger.debug("factorized %s with %s at rank %d", path, method, rank)
        return _Chain([new for new, _ in chain])


def materialize(
    model: keras.Model, plan: Plan, *, seed: int = 0, analysis: ModelAnalysis | None = None
) -> keras.Model:
    """A new model where each layer named in ``plan`` is replaced by its factorization.

    ``plan`` maps layer names to ``(method, rank)`` (or ``"none"``). The original model
    is not modified; every weight of the new model is a copy. Sequential models come
    back as Functional ones with the same layers. Pass ``analysis`` (``analyze(model)``)
    to skip tracing the model again.
    """
    analysis = analysis or analyze(model)
    resolved = analysis.resolve(plan)
    materializer = _Materializer(analysis, resolved, seed)
    new_model = rebuild(model, materializer)
    materializer.copy_weights()
    return new_model
