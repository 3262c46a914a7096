"""Capture the input and output feature maps of chosen layers on calibration data.

The model is rebuilt (weights copied) with tiny recording layers around each chosen
layer call, then run eagerly: this reaches layers inside nested models too, using
only public Keras APIs. Layers are captured in groups that fit a memory budget, one
forward pass per group.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import keras
import numpy as np

from lrf_optuna.catalog import LayerSpec
from lrf_optuna.graph import CopyVisitor, rebuild

__all__ = ["Captured", "capture_groups"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Captured:
    """Per call of one layer: full inputs and outputs on the calibration samples."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


class _Recorder(keras.layers.Layer):
    """Identity layer that appends each eager value it sees to ``sink``."""

    def __init__(self, sink: list, **kwargs):
        super().__init__(**kwargs)
        # A bound method, not the list: Keras would wrap (copy) a list attribute.
        self.append = sink.append

    def call(self, inputs):
        self.append(keras.ops.convert_to_numpy(inputs))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


class _CaptureVisitor(CopyVisitor):
    def __init__(self, targets: set[str]):
        super().__init__()
        self.targets = targets
        self.sinks: dict[str, list[tuple[list, list]]] = {}

    def call(self, layer, replacement, path, *args, **kwargs):
        if path not in self.targets:
            return replacement(*args, **kwargs)
        ins, outs = [], []
        self.sinks.setdefault(path, []).append((ins, outs))
        recorded = _Recorder(ins)(args[0])
        return _Recorder(outs)(replacement(recorded, *args[1:], **kwargs))


def _bytes_of(spec: LayerSpec, samples: int) -> int:
    geom = spec.geometry
    per_call = [c.in_positions * geom.in_channels + c.out_positions * geom.out_channels for c in geom.calls]
    return 4 * samples * sum(per_call)


def _groups(specs: list[LayerSpec], samples: int, budget: int) -> list[list[LayerSpec]]:
    groups: list[list[LayerSpec]] = [[]]
    used = 0
    for spec in specs:
        size = _bytes_of(spec, samples)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(spec)
        used += size
    return groups


def _run(model: keras.Model, targets: set[str], data: np.ndarray, batch_size: int) -> dict[str, Captured]:
    visitor = _CaptureVisitor(targets)
    copy = rebuild(model, visitor)
    visitor.copy_weights()
    for start in range(0, len(data), batch_size):
        copy(data[start : start + batch_size], training=False)
    return {
        path: Captured(
            inputs=[np.concatenate(ins) for ins, _ in calls],
            outputs=[np.concatenate(outs) for _, outs in calls],
        )
        for path, calls in visitor.sinks.items()
    }


def capture_groups(
    model: keras.Model,
    specs: list[LayerSpec],
    data: np.ndarray,
    *,
    memory_budget: int,
    batch_size: int = 32,
) -> Iterator[tuple[LayerSpec, Captured]]:
    """Yield ``(spec, captured)`` for every spec, keeping at most one group in memory."""
    groups = _groups(specs, len(data), memory_budget)
    logger.info("capturing %d layers in %d forward pass(es)", len(specs), len(groups))
    for group in groups:
        captured = _run(model, {s.name for s in group}, data, batch_size)
        for spec in group:
            yield spec, captured[spec.name]
        del captured


def estimated_bytes(specs: list[LayerSpec], samples: int) -> int:
    """Bytes needed to hold every layer's captured maps at once."""
    return sum(_bytes_of(s, samples) for s in specs) if specs else 0
