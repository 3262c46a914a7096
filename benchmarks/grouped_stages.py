"""A factorized model as the builders made it before issue 17's layer fix (5791f2f), for timing.

Before the fix, a stage with one input channel per group (CP's spatial stage, a grouped layer at
rank 1) was a ``Conv1D/Conv2D(groups=in_channels)``; now it is a ``DepthwiseConv1D/2D``. The two
compute the same function: ``with_grouped_stages`` rebuilds a model with every depthwise layer
that the original model does not have as the equivalent grouped conv (same weights, reordered),
and checks that the outputs agree.
"""

from __future__ import annotations

import keras
import numpy as np

from lrf_optuna.model._graph import CopyVisitor, rebuild

_GROUPED = {
    keras.layers.DepthwiseConv2D: keras.layers.Conv2D,
    keras.layers.DepthwiseConv1D: keras.layers.Conv1D,
}
_SHARED_KEYS = ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation", "use_bias")


class _GroupedVisitor(CopyVisitor):
    def __init__(self, keep: set[str]):
        super().__init__()
        self.keep = keep

    def clone(self, layer: keras.layers.Layer, path: str):
        grouped = _GROUPED.get(type(layer))
        if grouped is None or layer.name in self.keep:
            return super().clone(layer, path)
        config, (kernel, *bias) = layer.get_config(), layer.get_weights()
        in_channels = kernel.shape[-2]
        new = grouped(
            filters=in_channels * config["depth_multiplier"],
            groups=in_channels,
            name=layer.name,
            **{key: config[key] for key in _SHARED_KEYS},
        )
        # depthwise output channel c * multiplier + j is group c's output j: the same order
        self.pending.append((new, [kernel.reshape(*kernel.shape[:-2], 1, -1), *bias]))
        self.by_path[path] = new
        return new


def with_grouped_stages(model: keras.Model, original: keras.Model, *, seed: int = 0) -> keras.Model:
    """``model`` with its depthwise layers that ``original`` lacks rebuilt as grouped convs."""
    visitor = _GroupedVisitor({layer.name for layer in original.layers})
    rebuilt = rebuild(model, visitor)
    visitor.copy_weights()
    x = np.random.default_rng(seed).random((2, *model.input_shape[1:]), dtype=np.float32)
    expected, received = model.predict(x, verbose=0), rebuilt.predict(x, verbose=0)
    difference = float(np.max(np.abs(expected - received)))
    if difference > 1e-4 * (1 + float(np.max(np.abs(expected)))):
        raise RuntimeError(f"grouped stand-in differs from the model: largest difference {difference:.3g}")
    return rebuilt
