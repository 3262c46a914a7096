"""Objective 3: similarity of a plan to the original model, without retraining.

``LayerwiseProxy`` aggregates the profiled per-layer similarities (no forward pass);
``ModelProxy`` runs the calibration batch through a copy of the model whose planned
kernels are replaced by their low-rank reconstructions (the exact function of the
factorized network) and compares the network outputs.
"""

from __future__ import annotations

import collections
from typing import Any

import keras
import numpy as np
import pandas as pd

from lrf_optuna.analysis import ModelAnalysis
from lrf_optuna.catalog import canonical_kernel, keras_kernel, kernel_variable
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.graph import copy_model
from lrf_optuna.metrics import METRICS, ReferenceMaps

__all__ = ["AGGREGATORS", "DEFAULT_AGGREGATOR", "DEFAULT_METRIC", "LayerwiseProxy", "ModelProxy"]

# Measured by benchmarks/proxy_fidelity.py (LeNet-5, 16 Pareto plans, 1-epoch fine-tune):
# layerwise cosine/mean had the best Spearman with post-fine-tune accuracy among the
# feature-map proxies (0.957; CKA/mean 0.935). See README "Proxy fidelity".
DEFAULT_METRIC = "cosine"
DEFAULT_AGGREGATOR = "mean"

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
        _check_choice("metric", metric, [*METRICS, "weight_error"])
        _check_choice("aggregator", aggregator, AGGREGATORS)
        self.layers = list(analysis.specs)
        self.weights = np.array([analysis.specs[n].cost.params for n in self.layers], dtype=float)
        self.aggregate = AGGREGATORS[aggregator]
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
    """Network-output similarity with reconstructed kernels swapped into a model copy."""

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
    ):
        _check_choice("metric", metric, METRICS)
        self.analysis, self.metric, self.seed, self.batch_size = analysis, metric, seed, batch_size
        self.copy, by_path = copy_model(model)
        self.layers = {name: by_path[name] for name in analysis.specs}
        self.originals = {
            name: keras.ops.convert_to_numpy(kernel_variable(layer, analysis.specs[name].geometry))
            for name, layer in self.layers.items()
        }
        self.current: dict[str, Any] = {name: None for name in self.layers}
        self.data = np.asarray(calibration_x, np.float32)
        self.reference = ReferenceMaps(self._outputs())
        self.cache: collections.OrderedDict = collections.OrderedDict()
        self.cache_bytes, self.cache_limit = 0, cache_mb * 2**20

    def _outputs(self) -> np.ndarray:
        outputs = self.copy.predict(self.data, batch_size=self.batch_size, verbose=0)
        parts = outputs if isinstance(outputs, list | tuple) else [outputs]
        return np.concatenate([np.reshape(p, (len(self.data), -1)) for p in parts], axis=1)

    def _kernel(self, name: str, method: str, rank: int) -> np.ndarray:
        key = (name, method, rank)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        geom, layer = self.analysis.specs[name].geometry, self.layers[name]
        original = canonical_kernel(self.analysis.layers[name], geom)
        factorizer = get_factorizer(geom.kind, method)
        approx = factorizer.reconstruct(
            factorizer.decompose(original, geom, rank, seed=self.seed), geom, rank
        )
        kernel = keras_kernel(approx, layer, geom)
        self.cache[key] = kernel
        self.cache_bytes += kernel.nbytes
        while self.cache_bytes > self.cache_limit and len(self.cache) > 1:
            _, dropped = self.cache.popitem(last=False)
            self.cache_bytes -= dropped.nbytes
        return kernel

    def __call__(self, resolved: Resolved) -> float:
        for name, layer in self.layers.items():
            wanted = resolved.get(name)
            if wanted == self.current[name]:
                continue
            kernel = self.originals[name] if wanted is None else self._kernel(name, *wanted)
            kernel_variable(layer, self.analysis.specs[name].geometry).assign(kernel)
            self.current[name] = wanted
        return getattr(self.reference, self.metric)(self._outputs().astype(np.float64))
