"""A floor under any factorization's latency: every compressible layer replaced by a free stand-in.

``with_free_stand_ins`` rebuilds a model with each compressible layer (``lo.model.compressible_layers``)
replaced by the cheapest layer that still produces its output: the first input channel (cropped
where the layer's padding is 'valid'), then a 1x1 conv (a Dense for dense layers) with the
layer's filters, strides, activation and bias. That is two ops (a slice and one conv) where every
factorized chain has two or more convs, and op by op no more work: the slice reads less than a
chain's first conv, and the conv is a rank-1 chain's last stage at its cheapest (a 1x1 conv from
one channel to the same filters); the rest of the model is unchanged. Timed against the
original, it bounds from below what any plan can reach: Amdahl's share of the model's time that
lies outside the layers factorization can touch. Weights are random: they do not change timing.
"""

from __future__ import annotations

import keras

import lrf_optuna as lo
from lrf_optuna.model._graph import CopyVisitor, rebuild

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


class _StandInVisitor(CopyVisitor):
    def __init__(self, names: set[str]):
        super().__init__()
        self.names = names

    def clone(self, layer: keras.layers.Layer, path: str):
        if layer.name not in self.names:
            return super().clone(layer, path)
        config = layer.get_config()
        if isinstance(layer, keras.layers.Dense):
            return keras.layers.Dense(
                config["units"], activation=config["activation"], use_bias=config["use_bias"], name=layer.name
            )
        conv = type(layer)
        if conv not in _CONVS or config.get("data_format") == "channels_first":
            raise ValueError(
                f"Invalid layer '{layer.name}' for a free stand-in: expected Dense or Conv1D/2D/3D "
                f"(channels_last), received {type(layer).__name__}"
            )
        stand_in = conv(
            config["filters"], 1, strides=config["strides"], padding=config["padding"],
            activation=config["activation"], use_bias=config["use_bias"], name=layer.name,
        )  # fmt: skip
        stand_in.crop = _valid_crop(config) if config["padding"] == "valid" else None
        return stand_in

    def call(self, layer: keras.layers.Layer, replacement, path: str, *args, **kwargs):
        if layer.name not in self.names:
            return replacement(*args, **kwargs)
        x = args[0]
        if isinstance(replacement, keras.layers.Dense):
            return replacement(x[..., :1])
        crop = replacement.crop or (0,) * (len(x.shape) - 2)
        window = tuple(slice(0, size - cut) for size, cut in zip(x.shape[1:-1], crop, strict=True))
        return replacement(x[(slice(None), *window, slice(0, 1))])


def _valid_crop(config: dict) -> tuple[int, ...]:
    """What a 'valid' conv's window takes off each spatial axis: dilation * (kernel - 1)."""
    return tuple(d * (k - 1) for k, d in zip(config["kernel_size"], config["dilation_rate"], strict=True))


def with_free_stand_ins(model: keras.Model) -> keras.Model:
    """``model`` with every compressible layer replaced by its free stand-in (random weights)."""
    names = {spec.name for spec in lo.model.compressible_layers(model)}
    visitor = _StandInVisitor(names)
    rebuilt = rebuild(model, visitor)
    visitor.copy_weights()  # of the layers kept
    for expected, received in zip(model.outputs, rebuilt.outputs, strict=True):
        if tuple(expected.shape) != tuple(received.shape):
            raise RuntimeError(f"stand-in output shape {received.shape} differs from {expected.shape}")
    return rebuilt
