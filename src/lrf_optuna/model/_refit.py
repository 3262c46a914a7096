"""Error compensation: refit the last stage of each factor chain on calibration data.

Layers are refit one at a time in graph order. For each, the calibration data runs
through the original model (the layer's inputs, hence its original pre-activation
outputs ``Z``) and through the compressed model as refit so far (the inputs ``H`` of
the chain's last layer), and that layer's kernel and bias become the least-squares
solution of ``[H, 1] [K; b] = Z``: the chain reproduces the original layer given the
errors the compressed layers before it already make. The normal equations are
accumulated batch by batch at the statistics' subset of positions, with a ridge
towards the current weights (``RIDGE``, relative), so directions the data never
excites keep the data-aware factors. One pass of both models per refit layer.

Chains whose last stage is a TT or Tucker layer (Dense ``tt``/``tucker``) are not refit
(their last core is not a stock layer's kernel), nor those ending in a transposed conv
(``spatial_svd`` of a transposed conv: its kernel does not multiply input patches).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.factorizers.data_aware import RIDGE
from lrf_optuna.layers import TTDense, TuckerDense
from lrf_optuna.model._graph import rebuild
from lrf_optuna.model._statistics import TapVisitor, channel_rows, layer_vectors

__all__ = ["refit_chains"]

logger = logging.getLogger(__name__)
L = keras.layers
# Last layers whose kernel does not multiply per-position patches of their input.
_NOT_REFIT = (TTDense, TuckerDense, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)


def _last_geometry(last: Any, path: str) -> LayerGeometry:
    """Enough geometry for ``layer_vectors`` on the chain's last layer (a Dense or a conv)."""
    if isinstance(last, keras.layers.Dense):
        return LayerGeometry(path, "Dense", "dense", tuple(last.kernel.shape), ())
    groups = int(getattr(last, "groups", 1) or 1)
    return LayerGeometry(path, type(last).__name__, "conv", tuple(last.kernel.shape), (), groups)


def _linear_twin(layer: Any, shape: tuple) -> keras.layers.Layer:
    """The original layer without its activation: its pre-activation outputs are the target."""
    config = layer.get_config()
    if "activation" in config:
        config["activation"] = "linear"
    twin = layer.__class__.from_config(config)
    twin.build(shape)
    twin.set_weights(layer.get_weights())
    return twin


def _channels_last(x: np.ndarray, layer: Any) -> np.ndarray:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return np.moveaxis(x, 1, -1)
    return x


class _Normal:
    """Normal equations of one group: ``[H, 1]^T [H, 1]`` and ``[H, 1]^T Z``."""

    def __init__(self, dim: int, outputs: int, bias: bool):
        self.bias = bias
        size = dim + int(bias)
        self.gram, self.cross = np.zeros((size, size)), np.zeros((size, outputs))

    def add(self, h: np.ndarray, z: np.ndarray) -> None:
        if self.bias:
            h = np.hstack([h, np.ones((len(h), 1))])
        self.gram += h.T @ h
        self.cross += h.T @ z

    def solve(self, current: np.ndarray) -> np.ndarray:
        """Ridge towards ``current`` (the weights before the refit)."""
        delta = RIDGE * max(float(np.trace(self.gram)) / len(self.gram), 1e-12)
        matrix = self.gram + delta * np.eye(len(self.gram))
        return np.linalg.solve(matrix, self.cross + delta * current)


class _Sink:
    """Collects the values a tap sees, only while ``active`` (one layer is refit at a time)."""

    def __init__(self):
        self.active, self.values = False, []

    def append(self, value: np.ndarray) -> None:
        if self.active:
            self.values.append(value)


def _tapped(model: keras.Model, paths) -> tuple[keras.Model, dict[str, _Sink], dict[str, Any]]:
    """A copy of ``model`` whose layers at ``paths`` report their inputs to sinks."""
    sinks = {path: _Sink() for path in paths}
    visitor = TapVisitor(sinks)
    copy = rebuild(model, visitor)
    visitor.copy_weights()
    return copy, sinks, visitor.by_path


def _normal_equations(
    layer, last, source, target, sinks: tuple[_Sink, _Sink], data, options
) -> list[_Normal]:
    """Normal equations of ``last`` (in ``target``) against ``layer``'s pre-activation outputs."""
    batch_size, limit, seed = options
    inputs, hidden = sinks
    last_geom = _last_geometry(last, last.name)
    groups, twin, normals = last_geom.groups, None, None
    for start in range(0, len(data), batch_size):
        inputs.values.clear()
        hidden.values.clear()
        source(data[start : start + batch_size], training=False)
        target(data[start : start + batch_size], training=False)
        for x, h in zip(inputs.values, hidden.values, strict=True):  # a pair per call of a shared layer
            twin = twin or _linear_twin(layer, tuple(x.shape))
            z = channel_rows(_channels_last(keras.ops.convert_to_numpy(twin(x)), layer), limit, seed)
            vectors = layer_vectors(last, last_geom, h, limit=limit, seed=seed).astype(np.float64)
            cout_g = z.shape[-1] // groups
            if normals is None:
                use_bias = bool(getattr(last, "use_bias", False))
                normals = [_Normal(vectors.shape[-1], cout_g, use_bias) for _ in range(groups)]
            for g, normal in enumerate(normals):
                normal.add(vectors[g], z[:, g * cout_g : (g + 1) * cout_g])
    return normals


def refit_chains(
    original: keras.Model,
    compressed: keras.Model,
    chains: dict[str, str],
    data: np.ndarray,
    *,
    batch_size: int = 32,
    max_positions: int = 256,
    seed: int = 0,
) -> list[str]:
    """Refit, in the order given (graph order), the last layer of each chain in place.

    ``chains`` maps an original layer's path to the path of its chain's last layer in
    ``compressed``; returns the refit paths (TT/Tucker/transposed last layers are skipped).
    """
    chains = {p: q for p, q in chains.items() if not isinstance(_find(compressed, q), _NOT_REFIT)}
    source, inputs, _ = _tapped(original, chains)
    target, hidden, copies = _tapped(compressed, chains.values())
    options = (batch_size, max_positions, seed)
    for path, last_path in chains.items():
        sinks = (inputs[path], hidden[last_path])
        for sink in sinks:
            sink.active = True
        layer, last = _find(original, path), copies[last_path]
        normals = _normal_equations(layer, last, source, target, sinks, data, options)
        for sink in sinks:
            sink.active = False
        _assign([last, _find(compressed, last_path)], normals, _last_geometry(last, path).groups)
    logger.info("refit %d chain(s) on %d samples", len(chains), len(data))
    return list(chains)


def _assign(targets: list[Any], normals: list[_Normal], groups: int) -> None:
    """Solve the normal equations and set the result on every layer of ``targets`` (same weights)."""
    last = targets[0]
    kernel = keras.ops.convert_to_numpy(last.kernel)
    bias = keras.ops.convert_to_numpy(last.bias) if getattr(last, "use_bias", False) else None
    cout_g = kernel.shape[-1] // groups
    new_kernel, new_bias = np.empty_like(kernel), None if bias is None else np.empty_like(bias)
    for g, normal in enumerate(normals):
        block = slice(g * cout_g, (g + 1) * cout_g)
        current = kernel[..., block].reshape(-1, cout_g)
        if bias is not None:
            current = np.vstack([current, bias[None, block]])
        solution = normal.solve(current.astype(np.float64))
        new_kernel[..., block] = solution[: len(solution) - int(bias is not None)].reshape(
            kernel[..., block].shape
        )
        if bias is not None:
            new_bias[block] = solution[-1]
    for layer in targets:
        layer.kernel.assign(new_kernel)
        if bias is not None:
            layer.bias.assign(new_bias)


def _find(model: keras.Model, path: str) -> Any:
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer
