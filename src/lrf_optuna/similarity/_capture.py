"""Capture, batch by batch, what the profile needs of chosen layers on calibration data.

The model is rebuilt (weights copied) with tiny recording layers around each chosen
layer call, then run eagerly over the calibration set in batches: this reaches layers
inside nested models too, using only public Keras APIs. Each batch is reduced as soon as
it is seen (issue 21): per layer call only the original outputs at a fixed random subset
of ``max_positions`` spatial positions are kept, with the inputs that recompute exactly
those outputs, whichever is smaller of

- ``"windows"``: for a Conv1D/2D/3D (not transposed, channels-last), the padded input window
  under each kept output position; the layer run with ``padding="valid"`` on a window
  gives that position's output, so nothing else of the map is needed;
- ``"rows"``: for a Dense layer on a map, its input vectors at the kept positions;
- ``"full"``: the whole input maps (small maps; separable, transposed or channels-first convs),

plus, when asked, the layer's input second moments (``MomentAccumulator``). Layers are
captured in groups that fit a memory budget (``_capture_plan``), one forward pass per group.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.model._graph import CopyVisitor, rebuild
from lrf_optuna.model._layer_specs import LayerSpec
from lrf_optuna.model._segments import Segment, cut
from lrf_optuna.model._statistics import MomentAccumulator, Tap, padded_windows
from lrf_optuna.similarity._capture_plan import flatten, kept_inputs, position_subset

__all__ = [
    "CallCapture",
    "Captured",
    "capture_groups",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CallCapture:
    """One call of a layer: kept inputs (``mode``), original outputs at ``subset``, flattened."""

    mode: str = "full"
    subset: np.ndarray | None = None
    inputs: list[np.ndarray] = dataclasses.field(default_factory=list)
    outputs: list[np.ndarray] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Captured:
    """Every call of one layer, and its input statistics when they were asked for."""

    calls: list[CallCapture]
    statistics: LayerStatistics | None = None


class _CallSink:
    """Reduces each batch of one layer call to what ``CallCapture`` keeps, written into arrays
    for all ``samples`` allocated at the first batch: no per-batch pieces to concatenate (twice
    the memory for a moment) nor small long-lived buffers among the transient ones."""

    def __init__(self, layer, spec: LayerSpec, options: tuple, moments: MomentAccumulator | None):
        self.layer, self.spec, self.moments = layer, spec, moments
        self.samples, self.limit, self.seed = options
        self.capture = CallCapture()
        self.pending: np.ndarray | None = None
        self.filled = 0

    def append_input(self, inputs: np.ndarray) -> None:
        self.pending = inputs
        if self.moments is not None:
            self.moments.append(inputs)

    def _kept_inputs(self, inputs: np.ndarray) -> np.ndarray:
        subset = self.capture.subset
        if self.capture.mode == "rows":
            rows = inputs.reshape(len(inputs), -1, inputs.shape[-1])[:, subset]
            return rows.reshape(-1, inputs.shape[-1])
        if self.capture.mode == "windows":
            windows = padded_windows(inputs, self.layer, self.spec.geometry)
            index = np.unravel_index(subset, windows.shape[1 : 1 + self.spec.geometry.spatial_rank])
            picked = windows[(slice(None), *index)]  # (N, p, C, *spans): copies the kept windows only
            return np.moveaxis(picked, 2, -1).reshape(-1, *picked.shape[3:], picked.shape[2])
        return inputs

    def append_output(self, outputs: np.ndarray) -> None:
        capture, inputs, self.pending = self.capture, self.pending, None
        if not capture.outputs:
            capture.subset = position_subset(outputs.shape, self.limit, self.seed)
            kept = None if capture.subset is None else len(capture.subset)
            capture.mode = kept_inputs(self.layer, self.spec, inputs.shape[1:-1], kept)[0]
        flat, kept_inputs_ = flatten(outputs, capture.subset), self._kept_inputs(inputs)
        count, per_sample = len(outputs), len(kept_inputs_) // len(outputs)
        if not capture.outputs:
            capture.outputs = [np.empty((self.samples, *flat.shape[1:]), flat.dtype)]
            capture.inputs = [np.empty((self.samples * per_sample, *kept_inputs_.shape[1:]), inputs.dtype)]
        start = self.filled
        capture.outputs[0][start : start + count] = flat
        capture.inputs[0][start * per_sample : (start + count) * per_sample] = kept_inputs_
        self.filled += count


class _Slot:
    """One call of a captured layer in the tapped copy; it records only while ``sink`` is set."""

    def __init__(self):
        self.sink: _CallSink | None = None

    def active(self) -> bool:
        return self.sink is not None

    def append_input(self, inputs: np.ndarray) -> None:
        self.sink.append_input(inputs)

    def append_output(self, outputs: np.ndarray) -> None:
        self.sink.append_output(outputs)


class _CaptureVisitor(CopyVisitor):
    """A faithful copy with switchable taps around every call of the layers at ``paths``."""

    def __init__(self, paths: set[str]):
        super().__init__()
        self.paths = paths
        self.slots: dict[str, list[_Slot]] = {}

    def call(self, layer, replacement, path, *args, **kwargs):
        if path not in self.paths:
            return replacement(*args, **kwargs)
        slot = _Slot()
        self.slots.setdefault(path, []).append(slot)
        recorded = Tap(slot.append_input, when=slot.active)(args[0])
        return Tap(slot.append_output, when=slot.active)(replacement(recorded, *args[1:], **kwargs))


class _Frontier:
    """A segment's frontier for every sample, in files under ``directory``, not in memory:
    at 224x224, ResNet50's frontier inside its first stage holds 4 MB per sample."""

    def __init__(self, directory: Path, name: str, count: int):
        self.paths = [directory / f"{name}_{index}.bin" for index in range(count)]
        self.layouts: list[tuple[tuple, np.dtype]] = []

    def append(self, arrays: list[np.ndarray]) -> None:
        if not self.layouts:
            self.layouts = [(a.shape[1:], a.dtype) for a in arrays]
        try:
            for path, array in zip(self.paths, arrays):
                with open(path, "ab") as file:
                    np.ascontiguousarray(array).tofile(file)
        except OSError as error:
            raise OSError(
                f"Cannot write the profile's frontier to {self.paths[0].parent} ({error}): each forward "
                f"pass of the capture leaves the tensors the next one starts from there "
                f"({self.nbytes() / 2**20:.0f} MB so far). Fix: free space in that directory or point "
                "TMPDIR at a disk with room (tempfile.gettempdir())."
            ) from error

    def read(self, start: int, count: int) -> list[np.ndarray]:
        arrays = []
        for path, (shape, dtype) in zip(self.paths, self.layouts):
            size = math.prod(shape)
            flat = np.fromfile(path, dtype=dtype, count=count * size, offset=start * size * dtype.itemsize)
            arrays.append(flat.reshape(-1, *shape))
        return arrays

    def nbytes(self) -> int:
        return sum(path.stat().st_size for path in self.paths if path.exists())

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def _segment_pass(segment: Segment, source: _Frontier | None, target: _Frontier | None, data, batch_size):
    """Run one segment over every sample, from the model input or ``source``, writing ``target``."""
    for start in range(0, len(data), batch_size):
        inputs = [data[start : start + batch_size]] if source is None else source.read(start, batch_size)
        outputs = keras.tree.flatten(segment.model(inputs, training=False))
        if target is not None:
            target.append([keras.ops.convert_to_numpy(t) for t in segment.frontier_of(inputs, outputs)])


def _whole_pass(copy: keras.Model, data: np.ndarray, batch_size: int) -> None:
    for start in range(0, len(data), batch_size):
        copy(data[start : start + batch_size], training=False)


def _run(forward, slots: dict, group: list[LayerSpec], layers: dict, samples: int, options):
    """One forward pass (``forward()``) of the tapped copy, recording the layers of ``group``."""
    limit, seed, _, with_statistics = options
    moments = {}
    for spec in group:
        if with_statistics:
            layer = layers[spec.name]
            moments[spec.name] = MomentAccumulator(layer, spec.geometry, max_positions=limit, seed=seed)
        for slot in slots[spec.name]:
            sink_options = (samples, limit, seed)
            slot.sink = _CallSink(layers[spec.name], spec, sink_options, moments.get(spec.name))
    try:
        forward()
        captured = {}
        for spec in group:
            calls = [slot.sink.capture for slot in slots[spec.name]]
            captured[spec.name] = Captured(calls, moments[spec.name].result() if moments else None)
    finally:
        for spec in group:
            for slot in slots[spec.name]:
                slot.sink = None
    return captured


def _passes(copy, segments, data, batch_size, directory):
    """One ``forward()`` per group: its segment from the previous frontier, or a whole pass."""
    source = None
    for number, segment in enumerate(segments or []):
        target = None
        if segment.frontier:
            target = _Frontier(directory, str(number), len(segment.frontier))
        yield functools.partial(_segment_pass, segment, source, target, data, batch_size)
        if source is not None:
            source.remove()
        if target is not None:
            logger.info("frontier after pass %d: %.1f MB on disk", number + 1, target.nbytes() / 2**20)
        source = target
    while segments is None:
        yield functools.partial(_whole_pass, copy, data, batch_size)


def capture_groups(
    model: keras.Model,
    groups: list[list[LayerSpec]],
    layers: dict[str, Any],
    data: np.ndarray,
    *,
    max_positions: int,
    seed: int,
    batch_size: int = 32,
    statistics: bool = False,
) -> Iterator[tuple[LayerSpec, Captured]]:
    """Yield ``(spec, captured)`` for every spec of ``groups``, one forward pass per group:
    of the group's segment alone where the graph can be cut (``lrf_optuna.model._segments``)."""
    options = (max_positions, seed, batch_size, statistics)
    # one tapped copy for every pass: a copy per pass costs a rebuild, and its weights stay until
    # the garbage collector finds the copy's reference cycles
    visitor, calls = _CaptureVisitor({spec.name for group in groups for spec in group}), []
    copy = rebuild(model, visitor, calls=calls)
    visitor.copy_weights()
    segments = cut(copy, calls, [{spec.name for spec in group} for group in groups])
    logger.info(
        "capturing %d layers in %d forward pass(es)%s", sum(len(g) for g in groups), len(groups),
        "" if segments is None else ", each from the previous one's frontier",
    )  # fmt: skip
    directory = Path(tempfile.mkdtemp(prefix="lrf_optuna_frontier_"))
    try:
        passes = _passes(copy, segments, data, batch_size, directory)
        for group, forward in zip(groups, passes):
            captured = _run(forward, visitor.slots, group, layers, len(data), options)
            for spec in group:
                yield spec, captured.pop(spec.name)
            del captured
    finally:
        del copy, visitor, segments
        shutil.rmtree(directory, ignore_errors=True)
        gc.collect()  # the copy's weights, before the caller goes on
