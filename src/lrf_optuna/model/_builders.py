"""Stages -> fresh stock Keras layers (and their weights in Keras layout)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import (
    ConvStage,
    DenseStage,
    SeparableStage,
    Stage,
    TTStage,
    TuckerStage,
)
from lrf_optuna.layers import TTDense, TuckerDense

__all__ = ["build_chain"]

L = keras.layers
_CONV = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}
_TRANSPOSED = {1: L.Conv1DTranspose, 2: L.Conv2DTranspose, 3: L.Conv3DTranspose}
_SEPARABLE = {1: L.SeparableConv1D, 2: L.SeparableConv2D}
# TensorFlow's CPU kernels run a grouped conv with one input channel per group ~14x slower
# than the same math as a depthwise conv (benchmarks/stage_layers.py). Keras has no
# DepthwiseConv3D, so 3-D stages stay grouped Conv3D.
_DEPTHWISE = {1: L.DepthwiseConv1D, 2: L.DepthwiseConv2D}


def _per_axis(value: Any, rank: int) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,) * rank


def is_depthwise(stage: ConvStage, in_channels: int, *, transposed: bool) -> bool:
    """Whether the stage is a depthwise conv: one input channel per group, a stock layer exists."""
    return (
        stage.groups > 1
        and stage.groups == in_channels
        and len(stage.core_axes) in _DEPTHWISE
        and not (transposed and stage.is_core)
    )


def _conv_layer(
    layer: Any, geom: LayerGeometry, stage: ConvStage, name: str, tail: dict, in_channels: int
) -> list[keras.layers.Layer]:
    """The stage's conv layer, preceded by a padding layer where the stock layer lacks one."""
    rank, config = len(stage.core_axes), layer.get_config()
    pick = lambda key, off: tuple(
        v if core else off for v, core in zip(_per_axis(config[key], rank), stage.core_axes)
    )
    kwargs = dict(
        filters=stage.filters,
        kernel_size=pick("kernel_size", 1),
        strides=pick("strides", 1),
        dilation_rate=pick("dilation_rate", 1),
        padding=config["padding"] if stage.is_core else "valid",
        data_format=config["data_format"],
        name=name,
        dtype=layer.dtype_policy,
        **tail,
    )
    if geom.transposed and stage.is_core:
        if config.get("output_padding") is not None:
            kwargs["output_padding"] = pick("output_padding", 0)
        return [_TRANSPOSED[rank](**kwargs)]
    if is_depthwise(stage, in_channels, transposed=geom.transposed):
        multiplier = kwargs.pop("filters") // stage.groups
        if kwargs["padding"] == "causal":
            # DepthwiseConv1D has no causal padding: left zero padding, then a "valid" conv.
            (size,), (dilation,) = kwargs["kernel_size"], kwargs["dilation_rate"]
            padding = L.ZeroPadding1D(
                (dilation * (size - 1), 0), name=f"{name}_pad", dtype=layer.dtype_policy
            )
            return [padding, _DEPTHWISE[rank](depth_multiplier=multiplier, **{**kwargs, "padding": "valid"})]
        return [_DEPTHWISE[rank](depth_multiplier=multiplier, **kwargs)]
    return [_CONV[rank](groups=stage.groups, **kwargs)]


def _separable_layer(layer: Any, stage: SeparableStage, name: str, tail: dict) -> keras.layers.Layer:
    config = layer.get_config()
    keys = ("kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier", "data_format")
    rank = len(layer.depthwise_kernel.shape) - 2
    kwargs = {k: config[k] for k in keys}
    return _SEPARABLE[rank](stage.filters, name=name, dtype=layer.dtype_policy, **kwargs, **tail)


def _make_layers(
    layer, geom, stage: Stage, name: str, last: bool, in_channels: int
) -> list[keras.layers.Layer]:
    """The layers of one stage; only the last one has weights."""
    tail = (
        dict(use_bias=geom.use_bias, activation=layer.get_config().get("activation"))
        if last
        else dict(use_bias=False)
    )
    if isinstance(stage, ConvStage):
        return _conv_layer(layer, geom, stage, name, tail, in_channels)
    if isinstance(stage, SeparableStage):
        return [_separable_layer(layer, stage, name, tail)]
    if isinstance(stage, DenseStage):
        return [L.Dense(stage.units, name=name, dtype=layer.dtype_policy, **tail)]
    if isinstance(stage, TTStage):
        return [
            TTDense(stage.in_modes, stage.out_modes, stage.ranks, name=name, dtype=layer.dtype_policy, **tail)
        ]
    modes = (stage.in_modes, stage.out_modes, stage.in_ranks, stage.out_ranks)
    return [TuckerDense(*modes, name=name, dtype=layer.dtype_policy, **tail)]


def _keras_weights(layer, geom, stage: Stage, kernel: np.ndarray, in_channels: int) -> list[np.ndarray]:
    if isinstance(stage, ConvStage) and geom.transposed and stage.is_core:
        return [np.swapaxes(kernel, -1, -2)]
    if isinstance(stage, ConvStage) and is_depthwise(stage, in_channels, transposed=geom.transposed):
        # grouped (k..., 1, C*m), outputs group-major, is depthwise (k..., C, m): same order
        return [kernel.reshape(kernel.shape[:-2] + (stage.groups, stage.filters // stage.groups))]
    if isinstance(stage, SeparableStage):
        depthwise = keras.ops.convert_to_numpy(layer.depthwise_kernel)
        pointwise = kernel.reshape((1,) * (depthwise.ndim - 2) + kernel.shape)
        return [depthwise, pointwise]
    if isinstance(stage, TTStage | TuckerStage):
        return list(kernel)
    return [kernel]


def build_chain(
    layer: Any, geom: LayerGeometry, method: str, stages: tuple[Stage, ...], kernels: list[np.ndarray]
) -> list[tuple[keras.layers.Layer, list[np.ndarray]]]:
    """Fresh layers replacing ``layer`` in call order, each with the weights to set once built."""
    chain = []
    tt_or_tucker = len(stages) == 1 and isinstance(stages[0], TTStage | TuckerStage)
    per_stage = [kernels] if tt_or_tucker else kernels
    in_channels = geom.in_channels
    for index, (stage, kernel) in enumerate(zip(stages, per_stage)):
        last = index == len(stages) - 1
        *padding, new = _make_layers(layer, geom, stage, f"{layer.name}_{method}_{index}", last, in_channels)
        chain.extend((pad, []) for pad in padding)
        weights = _keras_weights(layer, geom, stage, kernel, in_channels)
        if last and geom.use_bias:
            weights.append(keras.ops.convert_to_numpy(layer.bias))
        chain.append((new, weights))
        in_channels = getattr(stage, "filters", in_channels)
    return chain
