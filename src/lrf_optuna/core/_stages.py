"""Pure-data description of the chain of stock layers that replaces one layer.

A factorizer returns a tuple of stages plus one kernel per stage; graph surgery turns
the stages into Keras layers and the cost model counts them, so both agree by design.
"""

from __future__ import annotations

import dataclasses
import math

from lrf_optuna.core._cost import Cost
from lrf_optuna.core._geometry import LayerGeometry

__all__ = [
    "ConvStage",
    "DenseStage",
    "SeparableStage",
    "Stage",
    "TTStage",
    "TuckerStage",
    "chain_cost",
    "layer_cost",
]


@dataclasses.dataclass(frozen=True)
class ConvStage:
    """A convolution; ``core_axes`` marks the spatial axes that keep the original
    kernel size, strides, dilation and padding (all False: a pointwise 1x1 conv)."""

    filters: int
    groups: int
    core_axes: tuple[bool, ...]

    @property
    def is_core(self) -> bool:
        return any(self.core_axes)


@dataclasses.dataclass(frozen=True)
class DenseStage:
    units: int


@dataclasses.dataclass(frozen=True)
class SeparableStage:
    """The original separable conv's depthwise part, followed by a pointwise to ``filters``."""

    filters: int


@dataclasses.dataclass(frozen=True)
class TTStage:
    """Tensor-train matrix: ``ranks`` has ``len(in_modes) + 1`` entries, ending in 1s."""

    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    ranks: tuple[int, ...]

    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        return [
            (self.ranks[k], self.in_modes[k], self.out_modes[k], self.ranks[k + 1])
            for k in range(len(self.in_modes))
        ]

    def params(self) -> int:
        return sum(math.prod(shape) for shape in self.core_shapes())

    def macs_per_position(self) -> int:
        # Cores are contracted left to right; step k still carries the unread input
        # modes k+1.. and the produced output modes ..k-1 (see layers.TTDense).
        total = 0
        for k, (r0, i, o, r1) in enumerate(self.core_shapes()):
            rest = math.prod(self.in_modes[k + 1 :]) * math.prod(self.out_modes[:k])
            total += rest * r0 * i * o * r1
        return total


@dataclasses.dataclass(frozen=True)
class TuckerStage:
    """Tucker of the weight tensorized as ``(*in_modes, *out_modes)``."""

    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    in_ranks: tuple[int, ...]
    out_ranks: tuple[int, ...]

    def factor_shapes(self) -> list[tuple[int, int]]:
        pairs = zip(self.in_modes + self.out_modes, self.in_ranks + self.out_ranks)
        return [(mode, rank) for mode, rank in pairs]

    def params(self) -> int:
        core = math.prod(self.in_ranks) * math.prod(self.out_ranks)
        return core + sum(m * r for m, r in self.factor_shapes())

    def macs_per_position(self) -> int:
        # Input modes are projected one at a time, then the core matrix, then the
        # output modes are expanded one at a time (see layers.TuckerDense).
        total = 0
        shape = list(self.in_modes)
        for k, rank in enumerate(self.in_ranks):
            total += math.prod(shape) * rank
            shape[k] = rank
        total += math.prod(self.in_ranks) * math.prod(self.out_ranks)
        shape = list(self.out_ranks)
        for k, mode in enumerate(self.out_modes):
            total += math.prod(shape) * mode
            shape[k] = mode
        return total


Stage = ConvStage | DenseStage | SeparableStage | TTStage | TuckerStage


def layer_cost(geom: LayerGeometry) -> Cost:
    """Cost of the original layer described by ``geom``."""
    elements = math.prod(geom.kernel_shape)
    params = elements + geom.bias_params + geom.depthwise_params
    per_position = elements + geom.depthwise_params
    macs = 0
    for call in geom.calls:
        positions = call.in_positions if geom.transposed else call.out_positions
        macs += positions * per_position
    return Cost(params, macs)


def _stage_cost(geom: LayerGeometry, stage: Stage, channels: int) -> tuple[int, int]:
    """(params, MACs per position) of one stage fed with ``channels`` channels."""
    if isinstance(stage, ConvStage):
        spatial = math.prod(k if core else 1 for k, core in zip(geom.kernel_size or (), stage.core_axes))
        elements = spatial * (channels // stage.groups) * stage.filters
        return elements, elements
    if isinstance(stage, SeparableStage):
        elements = channels * stage.filters
        return geom.depthwise_params + elements, geom.depthwise_params + elements
    if isinstance(stage, DenseStage):
        return channels * stage.units, channels * stage.units
    return stage.params(), stage.macs_per_position()


def _stage_out_channels(stage: Stage, geom: LayerGeometry) -> int:
    if isinstance(stage, ConvStage | SeparableStage):
        return stage.filters
    if isinstance(stage, DenseStage):
        return stage.units
    return geom.out_channels


def chain_cost(geom: LayerGeometry, stages: tuple[Stage, ...]) -> Cost:
    """Cost of the chain of stages replacing the layer; the last stage carries the bias."""
    params, macs = geom.bias_params, 0
    for call in geom.calls:
        spatial, channels = list(call.in_spatial), geom.in_channels
        for stage in stages:
            stage_params, per_position = _stage_cost(geom, stage, channels)
            positions_in = math.prod(spatial)
            if isinstance(stage, ConvStage):
                for axis, core in enumerate(stage.core_axes):
                    if core:
                        spatial[axis] = call.out_spatial[axis]
            elif isinstance(stage, SeparableStage):
                spatial = list(call.out_spatial)
            transposed_core = geom.transposed and isinstance(stage, ConvStage) and stage.is_core
            macs += (positions_in if transposed_core else math.prod(spatial)) * per_position
            if call is geom.calls[0]:
                params += stage_params
            channels = _stage_out_channels(stage, geom)
    return Cost(params, macs)
