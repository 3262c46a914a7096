"""How the profile's capture fits its memory budget: what each layer keeps (windows, rows or full
maps at a fixed subset of positions), bytes per sample, the forward batch and the groups of layers
captured per pass (issue 21)."""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np

from lrf_optuna.factorizers.base import statistics_shape
from lrf_optuna.model._layer_specs import LayerSpec
from lrf_optuna.similarity._metrics import BLOCK

__all__ = [
    "WINDOW_PADDINGS",
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

# What the plan counts is what is live; the process holds more: TensorFlow's CPU allocator (a
# BFC pool under oneDNN) never returns its peak, and glibc keeps freed NumPy blocks. Measured on
# ResNet50 (benchmarks/results/profile_scaling.txt, 12 configurations): peak RSS rose up to 15.4 %
# above the planned bytes when they filled the budget, up to 23 % above this share of it (at most
# 2010 MB for 2048). The plan fills this share (%) of the budget.
PLANNED_PERCENT = 80


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


def _halvings(start: int) -> list[int]:
    """``start``, ``start // 2``, ... down to 1."""
    return [start >> shift for shift in range(start.bit_length())]


def _estimates(specs, layers, samples, probe, *, limit, statistics) -> dict[str, tuple[int, int]]:
    return {
        s.name: estimate(layers[s.name], s, samples, batch_size=probe, limit=limit, statistics=statistics)
        for s in specs
    }


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
) -> tuple[int, int, list[list[LayerSpec]]]:
    """``(batch, probe_batch, groups)`` planned within ``PLANNED_PERCENT`` % of ``budget`` bytes
    (the allocators' overhead takes the rest).

    ``batch``: the forward passes' batch size, at most ``batch_size``, its activations within half
    the planned bytes, less when the largest layer needs more of them. ``probe_batch``: the layer
    probes' batch (they run one layer), the largest up to ``batch_size`` that keeps that forward
    batch, never below it. ``groups``: the layers captured per pass. The tapped copy of the model
    that the passes run counts too (float32 weights). A ValueError names the smallest budget that
    works (batches of 1) when even that does not fit.
    """
    planned = budget * PLANNED_PERCENT // 100
    per_sample = max(forward_bytes(model), 1)
    copy = 4 * sum(math.prod(w.shape) for w in model.weights)
    most = max(1, min(batch_size, samples, (planned - copy) // 2 // per_sample))
    if not specs:
        return most, max(most, min(batch_size, samples)), []
    # The largest forward batch that fits beside the largest layer, then the largest probe batch
    # that keeps it (halving: the probe batch barely changes that layer's bytes when its kept
    # maps dominate, as for ResNet50 at 224x224, where shrinking both left batches of 2).
    options = []
    for probe in _halvings(max(most, min(batch_size, samples))):
        sizes = _estimates(specs, layers, samples, probe, limit=limit, statistics=statistics)
        largest = max(specs, key=lambda s: sum(sizes[s.name]))
        room = planned - copy - sum(sizes[largest.name])
        options.append((min(most, probe, room // per_sample), probe, sizes, largest))
    batch, probe, sizes, largest = max(options, key=lambda option: option[:2])
    if batch < 1:  # not even at batch 1 with probes of 1: name the budget that would do
        _, _, sizes, largest = options[-1]
        needed = copy + per_sample + sum(sizes[largest.name])
        smallest_budget = (needed * 100 + PLANNED_PERCENT - 1) // PLANNED_PERCENT  # integer ceil
        minimum = (smallest_budget + 2**20 - 1) // 2**20
        raise ValueError(
            f"Invalid `memory_budget_mb`: expected at least {minimum} (MB) to profile layer "
            f"'{largest.name}' on these calibration samples (a forward pass of one sample holds "
            f"{per_sample / 2**20:.1f} MB, the model's copy {copy / 2**20:.1f} MB), received {budget // 2**20}. Fix: raise `memory_budget_mb`, "
            "or lower `max_samples` or `max_positions`."
        )
    logger.info(
        "forward passes of %d sample(s), %.1f MB of activations each, through a %.1f MB copy; "
        "layer probes of %d sample(s)",
        batch, per_sample / 2**20, copy / 2**20, probe,
    )  # fmt: skip
    return batch, probe, plan_groups(specs, sizes, planned - copy - batch * per_sample)
