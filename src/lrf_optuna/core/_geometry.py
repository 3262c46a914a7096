"""Pure data describing a compressible layer: kernel shape, grouping and call shapes."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["CallShape", "LayerGeometry"]


@dataclasses.dataclass(frozen=True)
class CallShape:
    """Spatial extent of one call of a layer (batch and channel axes removed).

    For Dense layers the "spatial" axes are the leading axes of a rank > 2 input.
    """

    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]

    @property
    def in_positions(self) -> int:
        return math.prod(self.in_spatial)

    @property
    def out_positions(self) -> int:
        return math.prod(self.out_spatial)


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """Everything the factorizers need to know about a layer, without Keras.

    ``kernel_shape`` is canonical: ``(*kernel_size, in_channels_per_group, out_channels)``
    for convolutions (transposed ones included), ``(in, out)`` for Dense and for the
    pointwise kernel of separable convolutions.
    """

    name: str
    layer_type: str
    kind: str  # "conv", "dense", "separable" or "depthwise"
    kernel_shape: tuple[int, ...]
    calls: tuple[CallShape, ...]
    groups: int = 1
    transposed: bool = False
    use_bias: bool = True
    depthwise_params: int = 0  # separable convs: the depthwise kernel, left untouched

    @property
    def spatial_rank(self) -> int:
        return len(self.kernel_shape) - 2 if self.kind == "conv" else 0

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.kernel_shape[:-2] if self.kind == "conv" else ()

    @property
    def in_channels(self) -> int:
        return self.kernel_shape[-2] * self.groups

    @property
    def out_channels(self) -> int:
        return self.kernel_shape[-1]

    @property
    def in_per_group(self) -> int:
        return self.kernel_shape[-2]

    @property
    def out_per_group(self) -> int:
        return self.kernel_shape[-1] // self.groups

    @property
    def bias_params(self) -> int:
        return self.out_channels if self.use_bias else 0
