"""Objective 3: similarity of a plan to the original model, without retraining.

``LayerwiseProxy`` aggregates the profiled per-layer similarities (no forward pass);
``ModelProxy`` runs the calibration batch through a copy of the model whose planned
kernels are replaced by their low-rank reconstructions (the exact function of the
factorized network) and compares the network outputs.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import keras
import numpy as np
import pandas as pd

from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.model._kernel_swap import KernelSwapper
from lrf_optuna.model._layer_specs import canonical_kernel, keras_kernel
from lrf_optuna.similarity._metrics import METRICS, OUTPUT_METRICS, ReferenceMaps

__all__ = [
    "AGGREGATORS",
    "DEFAULT_AGGREGATOR",
    "DEFAULT_METRIC",
    "LAYERWISE_METRICS",
    "LayerwiseProxy",
    "ModelProxy",
]

# Measured by benchmarks/proxy_fidelity.py (LeNet-5, VGG-small, ResNet-small; 16-24 Pareto
# plans each, fine-tuned once, distilled): layerwise cosine/mean >= 0.97 Spearman with
# post-fine-tune accuracy on all three, tied first on the mean over the models and within
# noise of the best given params; CKA, `min` and the output/model proxies trail given params.
# See docs/results.md, "Proxy fidelity".
DEFAULT_METRIC = "cosine"
DEFAULT_AGGREGATOR = "mean"

LAYERWISE_METRICS = (*METRICS, *OUTPUT_METRICS, "weight_error")

Resolved = dict[str, tuple[str, int]]


def _mean(scores, weights):
    return float(np.mean(scores))


def _product(scores, weights):
    return float(np.prod(scores))


def _minimum(scores, weights):
    return float(np.min(scores))


def _weighted(scores, weights):
    return float(np.average(scores, weights=weights))


# How per-layer similarities (1.0 for untouched layers) become one number; "weighted"
# weighs each layer by its share of the original params.
AGGREGATORS = {"mean": _mean, "product": _product, "min": _minimum, "weighted": _weighted}


def _check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"Invalid `{name}`: expected one of {sorted(valid)}, received {value!r}")


class LayerwiseProxy:
    """Piecewise-linear interpolation of the profile between profiled ranks."""

    def __init__(self, profile: pd.DataFrame, analysis: ModelAnalysis, *, metric: str, aggregator: str):
        _check_choice("metric", metric, LAYERWISE_METRICS)
        _check_choice("aggregator", aggregator, AGGREGATORS)
        if profile[metric].isna().any():
            raise ValueError(
                f"Invalid `metric` {metric!r}: the profile has no values for it (profiled with "
                "`output_samples` 0 or None). Profile with `ProfileSettings(output_samples=...)` >= 1, "
                f"or pick one of {[*METRICS, 'weight_error']}."
            )
        self.layers = list(analysis.specs)
        self.weights = np.array([analysis.specs[n].cost.params for n in self.layers], dtype=float)
        self.aggregator, self.aggregate = aggregator, AGGREGATORS[aggregator]
        self.curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for (layer, method), rows in profile.groupby(["layer", "method"], sort=False):
            rows = rows.sort_values("rank")
            values = rows[metric].to_numpy(float)
            if metric == "weight_error":  # an error, turned into a score in [0, 1]
                values = 1.0 - np.minimum(values, 1.0)
            self.curves[(layer, method)] = (rows["rank"].to_numpy(float), values)

    def layer_similarity(self, layer: str, method: str, rank: int) -> float:
        try:
            ranks, values = self.curves[(layer, method)]
        except KeyError:
            raise ValueError(
                f"Invalid plan entry for layer '{layer}': method {method!r} is not in the profile"
            ) from None
        return float(np.interp(rank, ranks, values))

    def __call__(self, resolved: Resolved) -> float:
        scores = [self.layer_similarity(n, *resolved[n]) if n in resolved else 1.0 for n in self.layers]
        return self.aggregate(scores, self.weights)


class ModelProxy:
    """Network-output similarity with reconstructed kernels swapped into a model copy.

    ``stats`` (layer path -> ``LayerStatistics``, e.g. from
    ``lrf_optuna.model._statistics.collect_statistics`` on the same calibration data): the
    kernels are the data-aware ones, as
    ``materialize(..., calibration=, refit=False)`` computes them.
    """

    def __init__(
        self,
        model: keras.Model,
        analysis: ModelAnalysis,
        calibration_x: np.ndarray,
        *,
        metric: str,
        seed: int = 0,
        cache_mb: int = 1024,
        batch_size: int = 64,
        stats: Mapping[str, LayerStatistics] | None = None,
    ):
        _check_choice("metric", metric, METRICS)
        self.analysis, self.metric, self.seed = analysis, metric, seed
        self.stats = dict(stats or {})
        self.swapper = KernelSwapper(model, analysis, calibration_x, batch_size=batch_size)
        self.reference = ReferenceMaps(self.swapper.outputs())
        self.cache: collections.OrderedDict = collections.OrderedDict()
        self.cache_bytes, self.cache_limit = 0, cache_mb * 2**20

    def _kernel(self, name: str, method: str, rank: int) -> np.ndarray:
        key = (name, method, rank)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        geom = self.analysis.specs[name].geometry
        original = canonical_kernel(self.analysis.layers[name], geom)
        factorizer = get_factorizer(geom.kind, method)
        approx = factorizer.reconstruct(
            factorizer.decompose(original, geom, rank, seed=self.seed, stats=self.stats.get(name)), geom, rank
        )
        kernel = keras_kernel(approx, self.swapper.layers[name], geom)
        self.cache[key] = kernel
        self.cache_bytes += kernel.nbytes
        while self.cache_bytes > self.cache_limit and len(self.cache) > 1:
            _, dropped = self.cache.popitem(last=False)
            self.cache_bytes -= dropped.nbytes
        return kernel

    def __call__(self, resolved: Resolved) -> float:
        for name in self.analysis.specs:
            wanted = resolved.get(name)
            if wanted != self.swapper.current[name]:
                self.swapper.assign(name, wanted, None if wanted is None else self._kernel(name, *wanted))
        return getattr(self.reference, self.metric)(self.swapper.outputs().astype(np.float64))
