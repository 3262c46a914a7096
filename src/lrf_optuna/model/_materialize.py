"""``materialize``: a new Keras model with the planned layers factorized."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from lrf_optuna.core._plan import Plan
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.model._builders import build_chain
from lrf_optuna.model._graph import CopyVisitor, rebuild
from lrf_optuna.model._layer_specs import canonical_kernel
from lrf_optuna.model._refit import refit_chains
from lrf_optuna.model._statistics import check_calibration, collect_statistics

__all__ = ["materialize"]

logger = logging.getLogger(__name__)
# Positions per calibration sample for the statistics: 64 x 512 samples = 32k patches,
# plenty for the moments of a 3x3x128 conv (D = 1152) at a fraction of the cost of all.
STATISTICS_POSITIONS = 64


class _Chain:
    """Stand-in for a factorized layer: calling it runs its chain of new layers."""

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = layers

    def __call__(self, inputs, **kwargs):
        for layer in self.layers:
            inputs = layer(inputs)
        return inputs


class _Materializer(CopyVisitor):
    def __init__(
        self,
        analysis: ModelAnalysis,
        resolved: dict[str, tuple[str, int]],
        seed: int,
        stats: dict[str, LayerStatistics],
    ):
        super().__init__()
        self.analysis, self.resolved, self.seed, self.stats = analysis, resolved, seed, stats
        self.last_paths: dict[str, str] = {}  # layer path -> path of its chain's last layer

    def clone(self, layer: Any, path: str) -> Any:
        if path not in self.resolved:
            return super().clone(layer, path)
        method, rank = self.resolved[path]
        geom = self.analysis.specs[path].geometry
        factorizer = get_factorizer(geom.kind, method)
        kernel, stats = canonical_kernel(layer, geom), self.stats.get(path)
        kernels = factorizer.decompose(kernel, geom, rank, seed=self.seed, stats=stats)
        chain = build_chain(layer, geom, method, factorizer.stages(geom, rank), kernels)
        self.pending.extend(chain)
        prefix = path[: len(path) - len(layer.name)]
        self.last_paths[path] = prefix + chain[-1][0].name
        logger.debug("factorized %s with %s at rank %d", path, method, rank)
        return _Chain([new for new, _ in chain])


def materialize(
    model: keras.Model,
    plan: Plan,
    *,
    seed: int = 0,
    analysis: ModelAnalysis | None = None,
    calibration: np.ndarray | None = None,
    refit: bool = True,
    batch_size: int = 128,
    max_positions: int = STATISTICS_POSITIONS,
) -> keras.Model:
    """A new model where each layer named in ``plan`` is replaced by its factorization.

    ``plan`` maps layer names to ``(method, rank)`` (or ``"none"``). The original model
    is not modified; every weight of the new model is a copy. Sequential models come
    back as Functional ones with the same layers. Pass ``analysis`` (``analyze(model)``)
    to skip tracing the model again.

    ``calibration`` (model inputs, e.g. a few hundred training samples): the factors
    minimize each layer's output error on that data (one pass for the statistics, at
    ``max_positions`` positions per sample), and with ``refit`` the last layer of every
    chain is then refit, in graph order, to reproduce the original layer given the
    compressed layers before it (``lrf_optuna.model._refit``: one pass per factorized layer).
    Without it, the weight-only factors. Both are exact at full rank.
    """
    analysis = analysis or analyze(model)
    resolved = analysis.resolve(plan)
    stats: dict[str, LayerStatistics] = {}
    data = None
    if calibration is not None:
        data = check_calibration(model, calibration)
        layers = {path: (analysis.layers[path], analysis.specs[path].geometry) for path in resolved}
        options = dict(batch_size=batch_size, max_positions=max_positions, seed=seed)
        stats = collect_statistics(model, layers, data, **options)
    materializer = _Materializer(analysis, resolved, seed, stats)
    new_model = rebuild(model, materializer)
    materializer.copy_weights()
    if data is not None and refit:
        order = [path for path in analysis.specs if path in materializer.last_paths]
        chains = {path: materializer.last_paths[path] for path in order}
        refit_chains(model, new_model, chains, data, **options)
    return new_model
