"""Calibration statistics: second moments of the vectors each layer's kernel multiplies.

Conv layers multiply patches (``(*kernel_size, cin_g)`` order, one set per group),
taken here with NumPy from the layer's own padding, strides and dilation; Dense layers
their inputs; separable convs' pointwise kernels the depthwise output. Transposed
convs multiply each input position by every kernel offset, so their moment is the
input channels' one repeated per offset (overlaps between offsets are ignored).
Moments are accumulated batch by batch (nothing but ``D x D`` sums is kept) on at most
``max_positions`` spatial positions per sample (a fixed seeded subset, as the profile).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np

from lrf_optuna.core._batches import calibration_array
from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.factorizers.base import statistics_shape
from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.model._graph import CopyVisitor, check_single_input, rebuild

__all__ = [
    "MomentAccumulator",
    "Tap",
    "TapVisitor",
    "channel_rows",
    "check_calibration",
    "collect_statistics",
    "layer_vectors",
    "ledoit_wolf",
    "padded_windows",
]

logger = logging.getLogger(__name__)


def check_calibration(model: keras.Model, calibration_x, *, max_samples: int = 256) -> np.ndarray:
    """Calibration inputs as float32, or a ValueError/TypeError saying what is wrong.

    ``calibration_x``: an array, or a tf.data.Dataset, PyDataset or generator of batches (of
    ``(x, y)`` or ``x`` alone) whose first ``max_samples`` samples are taken.
    """
    check_single_input(model)  # before a dataset is read
    calibration_x = calibration_array(calibration_x, max_samples)
    try:
        data = np.asarray(calibration_x)
    except Exception as error:
        raise TypeError(
            "Invalid `calibration_x`: expected a NumPy array or dataset of model inputs, "
            f"received {type(calibration_x).__name__}"
        ) from error
    expected = tuple(model.inputs[0].shape[1:])
    if data.ndim != len(expected) + 1 or any(e not in (None, d) for e, d in zip(expected, data.shape[1:])):
        raise ValueError(
            f"Invalid `calibration_x` shape: expected (samples, {', '.join(map(str, expected))}), "
            f"received {data.shape}. Fix: pass model inputs (a dataset must yield batches: `.batch(n)`)."
        )
    if len(data) < 2:
        raise ValueError(f"Invalid `calibration_x`: expected at least 2 samples, received {len(data)}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise TypeError(f"Invalid `calibration_x` dtype: expected real numbers, received {data.dtype}")
    data = data.astype(np.float32, copy=False)  # read only: a float32 array is not copied (issue 21)
    if not np.isfinite(data).all():
        raise ValueError("Invalid `calibration_x`: expected finite values, received NaN or Inf")
    return data


def _per_axis(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,) * rank


def _subset(count: int, limit: int, seed: int) -> np.ndarray | None:
    if count <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def _channels_last(x: np.ndarray, layer: Any) -> np.ndarray:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return np.moveaxis(x, 1, -1)
    return x


def padded_windows(x: np.ndarray, layer: Any, geom: LayerGeometry) -> np.ndarray:
    """``(N, *out, C, *spans)`` view: the input window (dilation included) under each output
    position of a conv with the layer's padding and strides, on channels-last ``x``."""
    config, rank, kernel = layer.get_config(), geom.spatial_rank, geom.kernel_size
    strides = _per_axis(config["strides"], rank)
    dilation = _per_axis(config["dilation_rate"], rank)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    pads = []
    for axis, (span, stride) in enumerate(zip(spans, strides)):
        size = x.shape[1 + axis]
        if config["padding"] == "same":
            total = max((-(-size // stride) - 1) * stride + span - size, 0)
            pads.append((total // 2, total - total // 2))
        else:  # "causal" pads on the left only; "valid" not at all
            pads.append((span - 1, 0) if config["padding"] == "causal" else (0, 0))
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    windows = np.lib.stride_tricks.sliding_window_view(x, spans, axis=tuple(range(1, rank + 1)))
    return windows[(slice(None), *(slice(None, None, s) for s in strides))]


def conv_patches(x: np.ndarray, layer: Any, geom: LayerGeometry, limit: int, seed: int) -> np.ndarray:
    """``(n, K, cin)`` patches of channels-last ``x`` at (a subset of) the output positions."""
    rank, kernel = geom.spatial_rank, geom.kernel_size
    dilation = _per_axis(layer.get_config()["dilation_rate"], rank)
    windows = padded_windows(x, layer, geom)
    windows = windows[(Ellipsis, *(slice(None, None, d) for d in dilation))]
    out = windows.shape[1 : 1 + rank]
    chosen = _subset(math.prod(out), limit, seed)
    flat = np.arange(math.prod(out)) if chosen is None else chosen
    index = np.unravel_index(flat, out)
    patches = windows[(slice(None), *index)]  # (N, p, C, *k): copies only the chosen positions
    patches = np.moveaxis(patches, 2, -1)  # (N, p, *k, C)
    return patches.reshape(-1, math.prod(kernel), x.shape[-1])


def channel_rows(x: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """``(n, C)``: the channel vectors of ``x`` at (a subset of) its positions."""
    flat = x.reshape(len(x), -1, x.shape[-1])
    chosen = _subset(flat.shape[1], limit, seed)
    return (flat if chosen is None else flat[:, chosen]).reshape(-1, x.shape[-1])


def layer_vectors(
    layer: Any, geom: LayerGeometry, inputs: np.ndarray, *, limit: int, seed: int
) -> np.ndarray:
    """``(groups, n, D)``: the vectors the kernel multiplies (transposed convs: ``D = cin``)."""
    x = np.asarray(inputs, np.float32)
    if geom.kind == "dense":
        return channel_rows(x, limit, seed)[None]
    x = _channels_last(x, layer)
    if geom.kind == "separable":
        config = layer.get_config()
        depthwise = keras.ops.depthwise_conv(
            x,
            layer.depthwise_kernel,
            strides=config["strides"],
            padding=config["padding"],
            dilation_rate=config["dilation_rate"],
        )
        return channel_rows(keras.ops.convert_to_numpy(depthwise), limit, seed)[None]
    groups, cin = geom.groups, geom.in_per_group
    if geom.transposed:
        rows = channel_rows(x, limit, seed).reshape(-1, groups, cin)
        return rows.transpose(1, 0, 2)
    patches = conv_patches(x, layer, geom, limit, seed)  # (n, K, C)
    n, k = patches.shape[:2]
    return patches.reshape(n, k, groups, cin).transpose(2, 0, 1, 3).reshape(groups, n, k * cin)


class MomentAccumulator:
    """Streaming ``E[v v^T]`` of one layer's vectors; ``append`` takes a batch of layer inputs."""

    def __init__(self, layer: Any, geom: LayerGeometry, *, max_positions: int, seed: int):
        self.layer, self.geom, self.limit, self.seed = layer, geom, max_positions, seed
        groups, dim, _ = statistics_shape(geom)
        dim = geom.in_per_group if geom.transposed else dim
        self.total = np.zeros((groups, dim, dim))
        self.fourth = np.zeros(groups)  # sum of ||v||^4, for the Ledoit-Wolf shrinkage
        self.count = 0

    def append(self, inputs: np.ndarray) -> None:
        vectors = layer_vectors(self.layer, self.geom, inputs, limit=self.limit, seed=self.seed)
        # float32 BLAS per batch (einsum does not use BLAS here), float64 across batches
        for group, part in enumerate(vectors):
            part = np.ascontiguousarray(part)
            self.total[group] += part.T @ part
        self.fourth += np.sum(np.sum(vectors.astype(np.float64) ** 2, axis=-1) ** 2, axis=-1)
        self.count += vectors.shape[1]

    def result(self) -> LayerStatistics:
        """The shrunk moments, computed in place of the sums: call it once, at the end."""
        if not self.count:
            raise ValueError(
                f"No calibration inputs reached layer '{self.geom.name}': expected at least 1 sample"
            )
        # in place: a 3x3 conv on 512 channels has 4608 x 4608 moments, 170 MB each (issue 21)
        moments, shrinkage = self.total, []
        for group, fourth in enumerate(self.fourth):
            moments[group] /= self.count
            moments[group], weight = ledoit_wolf(moments[group], fourth, self.count)
            shrinkage.append(weight)
        if self.geom.transposed:  # each input position meets every kernel offset
            eye = np.eye(math.prod(self.geom.kernel_size))
            moments = np.stack([np.kron(eye, m) for m in moments])
        return LayerStatistics(moments, self.count, tuple(shrinkage))


def ledoit_wolf(moment: np.ndarray, fourth: float, count: int) -> tuple[np.ndarray, float]:
    """``((1 - a) S + a tr(S)/D I, a)``: Ledoit and Wolf's (2004) shrinkage of the sample
    moment ``S`` of ``count`` vectors (``fourth``: sum of their ``||v||^4``).

    With few vectors for the dimension (a Dense layer's inputs, 512 samples) the sample
    moment overfits them; the shrinkage moves the data-aware factors towards the
    weight-only ones by as much as the estimate is uncertain (``a`` near 0 with plenty).
    Positions of one sample are not independent, so ``a`` errs on the small side.
    """
    dim = len(moment)
    mean = float(np.trace(moment)) / dim
    # one D x D buffer for every step (no identity matrices): the same values, bit for bit
    work = moment.copy()
    work.flat[:: dim + 1] -= mean
    spread = float(np.sum(np.square(work, out=work))) / dim
    if spread <= 0:
        return moment, 0.0
    noise = (fourth / count - float(np.sum(np.square(moment, out=work)))) / (count * dim)
    weight = min(max(noise, 0.0), spread) / spread
    shrunk = np.multiply(moment, 1 - weight, out=work)
    shrunk.flat[:: dim + 1] += weight * mean
    return shrunk, weight


class Tap(keras.layers.Layer):
    """Identity layer handing each eager value it sees (as NumPy) to ``append``, only while
    ``when()`` is true when given (one tapped copy then serves several passes)."""

    def __init__(self, append: Any, *, when: Any = None, **kwargs):
        super().__init__(**kwargs)
        # bound methods, not their object: Keras would track (wrap) that
        self.append, self.when = append, when

    def call(self, inputs):
        if self.when is None or self.when():
            self.append(keras.ops.convert_to_numpy(inputs))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


class TapVisitor(CopyVisitor):
    """A faithful copy that hands every input of the layers at ``sinks``' paths to ``sink.append``."""

    def __init__(self, sinks: dict[str, Any]):
        super().__init__()
        self.sinks = sinks

    def call(self, layer, replacement, path, *args, **kwargs):
        if path in self.sinks:
            args = (Tap(self.sinks[path].append)(args[0]), *args[1:])
        return replacement(*args, **kwargs)


def collect_statistics(
    model: keras.Model,
    layers: dict[str, tuple[Any, LayerGeometry]],
    data: np.ndarray,
    *,
    batch_size: int = 32,
    max_positions: int = 256,
    seed: int = 0,
) -> dict[str, LayerStatistics]:
    """Statistics of ``layers`` (path -> (layer, geometry)) in one pass of ``model`` over ``data``."""
    sinks = {
        path: MomentAccumulator(layer, geom, max_positions=max_positions, seed=seed)
        for path, (layer, geom) in layers.items()
    }
    visitor = TapVisitor(sinks)
    copy = rebuild(model, visitor)
    visitor.copy_weights()
    for start in range(0, len(data), batch_size):
        copy(data[start : start + batch_size], training=False)
    logger.info("statistics of %d layer(s) from %d samples", len(sinks), len(data))
    return {path: sink.result() for path, sink in sinks.items()}
