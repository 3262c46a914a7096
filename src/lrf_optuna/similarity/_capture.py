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
captured in groups that fit a memory budget (``estimate``), one forward pass per group.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from lrf_optuna.factorizers.base import statistics_shape
from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.model._graph import CopyVisitor, rebuild
from lrf_optuna.model._layer_specs import LayerSpec
from lrf_optuna.model._statistics import MomentAccumulator, Tap, padded_windows
from lrf_optuna.similarity._metrics import BLOCK

__all__ = [
    "CallCapture",
    "Captured",
    "capture_groups",
    "estimate",
    "flatten",
    "forward_bytes",
    "kept_inputs",
    "plan_capture",
    "plan_groups",
    "position_subset",
]

logger = logging.getLogger(__name__)
WINDOW_PADDINGS = ("valid", "same", "causal")


def position_subset(shape: tuple, limit: int, seed: int) -> np.ndarray | None:
    """Sorted flat indices of ``limit`` spatial positions of maps of ``shape`` (None: all)."""
    positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
    if positions <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(positions, limit, replace=False))


def flatten(maps: np.ndarray, subset: np.ndarray | None) -> np.ndarray:
    """``(samples, features)``: ``maps`` at the ``subset`` positions, flattened per sample."""
    flat = maps.reshape(maps.shape[0], -1, maps.shape[-1])
    if subset is not None:
        flat = flat[:, subset]
    return flat.reshape(maps.shape[0], -1)


def _windowable(layer: Any, spec: LayerSpec) -> bool:
    config = layer.get_config()
    return (
        spec.geometry.kind == "conv"
        and not spec.geometry.transposed
        and config.get("data_format", "channels_last") == "channels_last"
        and config.get("padding") in WINDOW_PADDINGS
    )


def kept_inputs(layer: Any, spec: LayerSpec, in_spatial: tuple, kept: int | None) -> tuple[str, int]:
    """``(mode, values per sample)`` of the inputs kept for one call (see the module docstring);
    ``kept``: how many output positions are kept (None: all of them)."""
    geom = spec.geometry
    full = math.prod(in_spatial) * geom.in_channels
    if kept is None:
        return "full", full
    if geom.kind == "dense":
        return "rows", kept * geom.in_channels
    if _windowable(layer, spec):
        dilation = layer.get_config()["dilation_rate"]
        dilation = dilation if isinstance(dilation, list | tuple) else (dilation,) * len(geom.kernel_size)
        span = math.prod((k - 1) * d + 1 for k, d in zip(geom.kernel_size, dilation))
        if kept * span * geom.in_channels < full:
            return "windows", kept * span * geom.in_channels
    return "full", full


def estimate(
    layer: Any, spec: LayerSpec, samples: int, *, batch_size: int, limit: int, statistics: bool
) -> tuple[int, int]:
    """``(kept, transient)`` peak bytes of one layer's profile: kept inputs and outputs of every
    sample, a candidate's outputs, the metrics' Gram matrices and the moments; transient: what
    is held only for a while (one batch of full maps, the metrics' float64 blocks, the
    factorizers' work on the moments)."""
    geom, kept_bytes, transient = spec.geometry, 0, 0
    batch = min(batch_size, samples)
    for call in geom.calls:
        kept = None if call.out_positions <= limit else limit
        features = (call.out_positions if kept is None else kept) * geom.out_channels
        inputs = kept_inputs(layer, spec, call.in_spatial, kept)[1]
        # kept inputs and outputs, a candidate's outputs, the metrics' two n x n Gram matrices
        kept_bytes += 4 * samples * (inputs + 2 * features) + 8 * 2 * samples**2
        full = call.in_positions * geom.in_channels + call.out_positions * geom.out_channels
        # one batch of full maps (and NumPy copies); the metrics' float64 column blocks
        transient = max(transient, 8 * batch * full, 4 * 8 * min(BLOCK, samples * features))
    if statistics:
        groups, dim, _ = statistics_shape(geom)
        kept_bytes += 8 * groups * dim**2
        # the moments' shrinkage buffer, then the data-aware factorizers' working set: measured up
        # to 3.1 moments (spatial SVD of a 3x3 conv on 512 channels: 497 MB beside a 162 MB moment)
        transient = max(transient, 3 * 8 * groups * dim**2)
    return kept_bytes, transient


def plan_groups(
    specs: list[LayerSpec], sizes: dict[str, tuple[int, int]], budget: int
) -> list[list[LayerSpec]]:
    """Consecutive layers in groups whose kept bytes plus the largest transient (``sizes``, from
    ``estimate``) fit ``budget`` bytes; a ValueError naming the smallest budget that works when
    one layer alone does not fit."""
    largest = max(specs, key=lambda s: sum(sizes[s.name]), default=None)
    if largest is not None and sum(sizes[largest.name]) > budget:
        needed = -(-sum(sizes[largest.name]) // 2**20)
        raise ValueError(
            f"Invalid `memory_budget_mb`: expected at least {needed} (MB) to profile layer "
            f"'{largest.name}' on these calibration samples, received {budget // 2**20}. Fix: raise "
            "`memory_budget_mb`, or lower `max_samples`, `max_positions` or `batch_size`."
        )
    groups: list[list[LayerSpec]] = []
    kept = transient = 0
    for spec in specs:
        size, passing = sizes[spec.name]
        if not groups or kept + size + max(transient, passing) > budget:
            groups.append([])
            kept = transient = 0
        groups[-1].append(spec)
        kept, transient = kept + size, max(transient, passing)
    return groups


def forward_bytes(model: keras.Model) -> int:
    """Bytes of every layer output for one sample (nested models included): what an eager
    forward pass of the model holds per sample (unknown dimensions count as 1)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_bytes(layer)
            continue
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):  # a layer the model never calls
            continue
        total += sum(4 * math.prod(d or 1 for d in t.shape[1:]) for t in outputs)
    return total


def plan_capture(
    model: keras.Model,
    specs: list[LayerSpec],
    layers: dict[str, Any],
    samples: int,
    *,
    budget: int,
    batch_size: int,
    limit: int,
    statistics: bool,
) -> tuple[int, list[list[LayerSpec]]]:
    """``(batch, groups)``: the forward passes' batch size (at most ``batch_size``, its
    activations within half the budget, less when the largest layer needs more of it)
    and the groups of layers captured per pass; a ValueError naming the smallest budget
    that works (batch 1) when even that does not fit. The tapped copy of the model that the
    passes run counts too (float32 weights)."""
    per_sample = forward_bytes(model)
    copy = 4 * sum(math.prod(w.shape) for w in model.weights)
    batch = max(1, min(batch_size, samples, (budget - copy) // 2 // max(per_sample, 1)))
    if not specs:
        return batch, []
    while True:
        sizes = {
            s.name: estimate(layers[s.name], s, samples, batch_size=batch, limit=limit, statistics=statistics)
            for s in specs
        }
        largest = max(specs, key=lambda s: sum(sizes[s.name]), default=None)
        needed = copy + batch * per_sample + (sum(sizes[largest.name]) if largest else 0)
        if needed <= budget or batch == 1:
            break
        batch = max(1, batch // 2)
    if needed > budget:
        raise ValueError(
            f"Invalid `memory_budget_mb`: expected at least {-(-needed // 2**20)} (MB) to profile layer "
            f"'{largest.name}' on these calibration samples (a forward pass of one sample holds "
            f"{per_sample / 2**20:.1f} MB, the model's copy {copy / 2**20:.1f} MB), received {budget // 2**20}. Fix: raise `memory_budget_mb`, "
            "or lower `max_samples` or `max_positions`."
        )
    logger.info(
        "forward passes of %d sample(s), %.1f MB of activations each, through a %.1f MB copy",
        batch, per_sample / 2**20, copy / 2**20,
    )  # fmt: skip
    return batch, plan_groups(specs, sizes, budget - copy - batch * per_sample)


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


def _run(copy: keras.Model, slots: dict, group: list[LayerSpec], layers: dict, data: np.ndarray, options):
    """One forward pass of the tapped ``copy`` over ``data``, recording the layers of ``group``."""
    limit, seed, batch_size, with_statistics = options
    moments = {}
    for spec in group:
        if with_statistics:
            layer = layers[spec.name]
            moments[spec.name] = MomentAccumulator(layer, spec.geometry, max_positions=limit, seed=seed)
        for slot in slots[spec.name]:
            sink_options = (len(data), limit, seed)
            slot.sink = _CallSink(layers[spec.name], spec, sink_options, moments.get(spec.name))
    try:
        for start in range(0, len(data), batch_size):
            copy(data[start : start + batch_size], training=False)
        captured = {}
        for spec in group:
            calls = [slot.sink.capture for slot in slots[spec.name]]
            captured[spec.name] = Captured(calls, moments[spec.name].result() if moments else None)
    finally:
        for spec in group:
            for slot in slots[spec.name]:
                slot.sink = None
    return captured


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
    """Yield ``(spec, captured)`` for every spec of ``groups``, one forward pass per group."""
    logger.info("capturing %d layers in %d forward pass(es)", sum(len(g) for g in groups), len(groups))
    options = (max_positions, seed, batch_size, statistics)
    # one tapped copy for every pass: a copy per pass costs a rebuild, and its weights stay until
    # the garbage collector finds the copy's reference cycles
    visitor = _CaptureVisitor({spec.name for group in groups for spec in group})
    copy = rebuild(model, visitor)
    visitor.copy_weights()
    try:
        for group in groups:
            captured = _run(copy, visitor.slots, group, layers, data, options)
            for spec in group:
                yield spec, captured.pop(spec.name)
            del captured
    finally:
        del copy, visitor
        gc.collect()  # the copy's weights, before the caller goes on
