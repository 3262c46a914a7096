"""Which layers of a Keras model can be factorized, and their geometry.

One traced rebuild records the input and output shape of every layer call (shared
layers have several), from which the cost model and the factorizers work without
touching Keras again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np

from lrf_optuna.core._cost import Cost
from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.core._stages import layer_cost
from lrf_optuna.factorizers import get_factorizer, methods_for
from lrf_optuna.layers import TTDense, TuckerDense
from lrf_optuna.model._graph import fresh_copy, rebuild

__all__ = [
    "LayerCall",
    "LayerSpec",
    "canonical_kernel",
    "geometry_of",
    "keras_kernel",
    "kernel_variable",
    "spec_of",
    "trace_calls",
    "uncompressible_reason",
]

L = keras.layers
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
FACTORIZED = (TTDense, TuckerDense)
DEPTHWISE_REASON = (
    "a depthwise convolution has one filter per channel, so there is no channel dimension to factorize"
)


@dataclasses.dataclass(frozen=True)
class LayerCall:
    layer: Any
    path: str
    input_shape: tuple
    output_shape: tuple


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A compressible layer.

    ``methods`` are the applicable method names; every one accepts ranks
    ``1..max_rank`` (a method clamps ranks above its own exact rank).
    ``useful_ranks[method]`` is the largest rank that is strictly cheaper than the
    layer in both params and MACs (0: none); the search only offers ranks up to it.
    """

    name: str
    kind: str
    layer_type: str
    methods: tuple[str, ...]
    max_rank: int
    useful_ranks: dict[str, int]
    cost: Cost
    geometry: LayerGeometry = dataclasses.field(repr=False)


class _Tracer:
    def __init__(self):
        self.calls: list[LayerCall] = []

    def clone(self, layer, path):
        return fresh_copy(layer)

    def call(self, layer, replacement, path, *args, **kwargs):
        outputs = replacement(*args, **kwargs)
        if args and hasattr(args[0], "shape") and hasattr(outputs, "shape"):
            self.calls.append(LayerCall(layer, path, tuple(args[0].shape), tuple(outputs.shape)))
        return outputs


def trace_calls(model: keras.Model) -> list[LayerCall]:
    """Every call of every layer in graph order, with its symbolic shapes."""
    tracer = _Tracer()
    rebuild(model, tracer)
    return tracer.calls


def _spatial(shape: tuple, layer: Any) -> tuple[int, ...]:
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]
    if any(d is None for d in spatial):
        raise ValueError(
            f"Invalid input shape for layer '{layer.name}': expected known spatial sizes "
            f"to count MACs, received {shape}. Build the model with a fixed input shape."
        )
    return tuple(int(d) for d in spatial)


def geometry_of(layer: Any, path: str, calls: list[LayerCall]) -> LayerGeometry | None:
    """Geometry of a layer with a kernel, or None for layers without one."""
    shapes = tuple(CallShape(_spatial(c.input_shape, layer), _spatial(c.output_shape, layer)) for c in calls)
    common = dict(
        name=path,
        layer_type=type(layer).__name__,
        calls=shapes,
        use_bias=bool(getattr(layer, "use_bias", False)),
    )
    if isinstance(layer, CONV + TRANSPOSED):
        kernel = tuple(layer.kernel.shape)
        transposed = isinstance(layer, TRANSPOSED)
        canonical = kernel[:-2] + (kernel[-1], kernel[-2]) if transposed else kernel
        groups = int(getattr(layer, "groups", 1) or 1)
        return LayerGeometry(
            kind="conv", kernel_shape=canonical, groups=groups, transposed=transposed, **common
        )
    if isinstance(layer, SEPARABLE):
        pointwise = tuple(layer.pointwise_kernel.shape)
        depthwise = math.prod(layer.depthwise_kernel.shape)
        return LayerGeometry(
            kind="separable", kernel_shape=pointwise[-2:], depthwise_params=depthwise, **common
        )
    if isinstance(layer, DEPTHWISE):
        return LayerGeometry(kind="depthwise", kernel_shape=tuple(layer.kernel.shape), **common)
    if isinstance(layer, L.Dense):
        return LayerGeometry(kind="dense", kernel_shape=tuple(layer.kernel.shape), **common)
    return None


def canonical_kernel(layer: Any, geom: LayerGeometry) -> np.ndarray:
    """The layer's kernel as NumPy, in the canonical layout of ``LayerGeometry``."""
    if geom.kind == "separable":
        return keras.ops.convert_to_numpy(layer.pointwise_kernel).reshape(geom.kernel_shape)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return np.swapaxes(kernel, -1, -2) if geom.transposed else kernel


def kernel_variable(layer: Any, geom: LayerGeometry) -> Any:
    """The Keras variable holding the kernel that ``canonical_kernel`` reads."""
    return layer.pointwise_kernel if geom.kind == "separable" else layer.kernel


def keras_kernel(canonical: np.ndarray, layer: Any, geom: LayerGeometry) -> np.ndarray:
    """Inverse of ``canonical_kernel``: a canonical kernel in the layer's own layout."""
    kernel = np.swapaxes(canonical, -1, -2) if geom.transposed else canonical
    return kernel.reshape(tuple(kernel_variable(layer, geom).shape)).astype(np.float32)


def uncompressible_reason(geom: LayerGeometry) -> str | None:
    if geom.kind == "depthwise":
        return DEPTHWISE_REASON
    if not methods_for(geom.kind, geom):
        return "no factorization method applies to it"
    return None


def spec_of(geom: LayerGeometry) -> LayerSpec:
    """The public description of a compressible layer (registry kind == geom.kind)."""
    methods = tuple(methods_for(geom.kind, geom))
    factorizers = {m: get_factorizer(geom.kind, m) for m in methods}
    return LayerSpec(
        name=geom.name,
        kind="dense" if geom.kind == "dense" else "conv",
        layer_type=geom.layer_type,
        methods=methods,
        max_rank=max(f.full_rank(geom) for f in factorizers.values()),
        useful_ranks={m: f.useful_max_rank(geom) for m, f in factorizers.items()},
        cost=layer_cost(geom),
        geometry=geom,
    )
