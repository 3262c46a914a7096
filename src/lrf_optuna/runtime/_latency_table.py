"""Predicted latency of a plan from a table measured once per (model, runtime, machine).

For every compressible layer, each searched method and each rank of the profile's rank
grid, the layer alone (at its traced input shape) and its replacement chain alone are
timed; their difference is that candidate's latency delta. A plan's predicted latency is
the whole original model's measured latency plus the deltas of its factorized layers,
interpolated linearly between grid ranks: no model is built per trial. A layer called
several times (shared) counts its delta once per call.

Robustness (a table is measured once and steers a whole search, so one noisy timing must
not decide it):

- Paired timing: the original layer and each candidate are timed alternately, ``rounds``
  blocks each (ABBA order, so steady drift cancels), and the delta is the median over the
  rounds of (candidate block median - original block median). A burst of load that hits
  one block moves one round's difference, not the delta.
- Samples of at least ``MIN_SAMPLE_MS``: a layer alone can take a few microseconds (under
  TFLite at batch 1), and ``runs / rounds`` single calls of it were timed at the resolution of
  the timer and the scheduler. Each sample is the mean of enough back-to-back calls to last
  ``MIN_SAMPLE_MS``; models that take longer are timed call by call, as before.
- Monotone in rank: a (layer, method) chain at a higher rank has the same operations on
  more channels, so its latency cannot be lower; the deltas over the grid ranks are
  projected onto non-decreasing sequences by isotonic regression (pool adjacent
  violators, least squares) before they are stored. This also keeps interpolation monotone.
- A prediction is clipped below at ``FLOOR`` x the base latency, as a guard: deltas are
  measured on layers alone, so nothing bounds their sum by the model's own time, and a
  prediction at or below zero would be an optimum the search chases. With paired deltas
  the guard did not bind on the reference models (the lowest reachable prediction, every
  layer at its most negative delta, 2026-12-01, loaded 2-core box: TFLite 0.14x-0.63x of
  the base; Keras b64 0.41x-0.91x), so it changes no ranking there.

Tables are cached as JSON (atomic writes, one process measures under a lock), keyed by the
architecture (not the weights: latency does not depend on their values), runtime, batch
size, threads, rank grid and the machine (host, processor, CPU count, TensorFlow version).
``FORMAT`` 3: paired, monotone deltas from samples of at least ``MIN_SAMPLE_MS`` (tables of
earlier formats are measured again, not reused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from lrf_optuna.files._json import exclusive, read_json, write_json_atomic
from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.model._graph import fresh_copy
from lrf_optuna.model._layer_specs import trace_calls
from lrf_optuna.model._materialize import materialize
from lrf_optuna.runtime._latency import RUNTIMES, calls_per_sample, model_call, time_calls
from lrf_optuna.similarity._profile import rank_grid

__all__ = ["LatencySettings", "LatencyTable", "isotonic_increasing", "latency_table"]

logger = logging.getLogger(__name__)
FORMAT = 3
FLOOR = 0.05  # lowest predicted latency, as a fraction of the original's (see the docstring)
WARMUP = 3
MIN_SAMPLE_MS = 1.0  # a timed sample lasts at least this long (see the docstring)


@dataclasses.dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: ``runtime`` ("tflite" or "keras"), batch, threads, repetitions.

    ``runs``: timed samples of each model per timing (the whole model; the original layer and
    each candidate), split into ``rounds`` alternating blocks for the paired deltas; a sample is
    the mean of back-to-back calls lasting at least ``MIN_SAMPLE_MS``.
    """

    runtime: str = "tflite"
    batch_size: int = 1
    threads: int | None = 1
    runs: int = 20
    ranks_per_method: int = 8
    rounds: int = 5

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"Invalid `latency_runtime`: expected one of {list(RUNTIMES)}, received {self.runtime!r}"
            )
        for name in ("batch_size", "runs", "ranks_per_method", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid latency `{name}`: expected an integer >= 1, received {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(
                f"Invalid latency `threads`: expected None or an integer >= 1, received {self.threads!r}"
            )

    def keras_threads(self) -> int | None:
        # TensorFlow's pool is sized once per process: Keras timings use what the process has.
        return None if self.runtime == "keras" else self.threads


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """``base_ms``: the original model; ``deltas[(layer, method)] = (ranks, ms)`` per call."""

    base_ms: float
    deltas: dict[tuple[str, str], tuple[tuple[int, ...], tuple[float, ...]]]
    calls: dict[str, int]

    def delta(self, layer: str, method: str, rank: int) -> float:
        ranks, values = self.deltas[(layer, method)]
        return float(np.interp(rank, ranks, values)) * self.calls.get(layer, 1)

    def predict(self, plan: dict[str, tuple[str, int]]) -> float:
        """Predicted milliseconds per batch of the model with ``plan`` applied (>= FLOOR x base)."""
        total = self.base_ms + sum(self.delta(name, method, rank) for name, (method, rank) in plan.items())
        return max(total, FLOOR * self.base_ms)

    def to_json(self) -> dict:
        rows = [[layer, method, list(r), list(v)] for (layer, method), (r, v) in self.deltas.items()]
        return {"base_ms": self.base_ms, "deltas": rows, "calls": self.calls}

    @classmethod
    def from_json(cls, document: dict) -> LatencyTable:
        deltas = {(l, m): (tuple(r), tuple(v)) for l, m, r, v in document["deltas"]}  # noqa: E741
        return cls(float(document["base_ms"]), deltas, dict(document["calls"]))


def machine_id() -> str:
    import tensorflow as tf

    return (
        f"{platform.node()}|{platform.processor() or platform.machine()}|{os.cpu_count()}|tf{tf.__version__}"
    )


def table_key(model: keras.Model, settings: LatencySettings, methods: dict[str, tuple[str, ...]]) -> str:
    document = {
        "format": FORMAT,
        "settings": dataclasses.asdict(settings),
        "machine": machine_id(),
        "methods": {k: list(v) for k, v in sorted(methods.items())},
        "architecture": model.to_json(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _single_layer_model(layer, input_shape: tuple) -> keras.Model:
    inputs = keras.Input(batch_shape=(None, *input_shape[1:]))
    copy = fresh_copy(layer)
    model = keras.Model(inputs, copy(inputs))
    copy.set_weights(layer.get_weights())
    return model


def isotonic_increasing(values: Sequence[float]) -> np.ndarray:
    """The non-decreasing sequence nearest to ``values`` in least squares (pool adjacent
    violators): every run that breaks the order is replaced by its mean."""
    blocks: list[tuple[float, int]] = []  # (mean, count), means non-decreasing
    for value in values:
        mean, count = float(value), 1
        while blocks and blocks[-1][0] > mean:
            previous, size = blocks.pop()
            mean, count = (previous * size + mean * count) / (size + count), size + count
        blocks.append((mean, count))
    return np.array([mean for mean, count in blocks for _ in range(count)], dtype=float)


def _timer(model: keras.Model, settings: LatencySettings) -> Callable[[int], np.ndarray]:
    """``timer(n)``: milliseconds of ``n`` calls of ``model`` (built and warmed up once here)."""
    call, _ = model_call(
        model, runtime=settings.runtime, batch_size=settings.batch_size, threads=settings.keras_threads()
    )
    time_calls(call, warmup=WARMUP, runs=0)
    repeat = calls_per_sample(call, MIN_SAMPLE_MS)
    return lambda n: time_calls(call, warmup=0, runs=n, repeat=repeat)


def _paired_delta(original: Callable, candidate: Callable, settings: LatencySettings) -> float:
    """Median over rounds of (candidate - original), block medians timed alternately (ABBA)."""
    block = max(1, settings.runs // settings.rounds)
    differences = []
    for index in range(settings.rounds):
        order = (("original", original), ("candidate", candidate))
        timed = {
            name: float(np.median(timer(block))) for name, timer in order[:: 1 if index % 2 == 0 else -1]
        }
        differences.append(timed["candidate"] - timed["original"])
    return float(np.median(differences))


def measure_table(
    model: keras.Model,
    settings: LatencySettings,
    methods: dict[str, tuple[str, ...]],
    *,
    analysis: ModelAnalysis | None = None,
) -> LatencyTable:
    """Time the model, then every (layer, method, grid rank) chain against its layer, paired."""
    analysis = analysis or analyze(model)
    shapes, calls = {}, {}
    for call in trace_calls(model):
        shapes.setdefault(call.path, call.input_shape)
        calls[call.path] = calls.get(call.path, 0) + 1
    base = float(np.median(_timer(model, settings)(settings.runs)))
    deltas = {}
    for name, layer_methods in methods.items():
        spec, layer = analysis.specs[name], analysis.layers[name]
        single = _single_layer_model(layer, shapes[name])
        original = _timer(single, settings)
        for method in layer_methods:
            ranks = tuple(rank_grid(spec.useful_ranks[method], settings.ranks_per_method))
            measured = [
                _paired_delta(
                    original, _timer(materialize(single, {layer.name: (method, r)}), settings), settings
                )
                for r in ranks
            ]
            deltas[(name, method)] = (ranks, tuple(isotonic_increasing(measured).tolist()))
        logger.info("latency of %s: %d methods timed against the layer alone", name, len(layer_methods))
    return LatencyTable(base, deltas, {name: calls[name] for name in methods})


def latency_table(
    model: keras.Model,
    settings: LatencySettings,
    methods: dict[str, Iterable[str]],
    *,
    cache_dir: str | os.PathLike | None = None,
    analysis: ModelAnalysis | None = None,
) -> LatencyTable:
    """The latency table of ``model`` for ``methods`` (``{layer: methods}``), cached under ``cache_dir``."""
    methods = {name: tuple(m) for name, m in methods.items()}
    compute = lambda: measure_table(model, settings, methods, analysis=analysis)
    if cache_dir is None:
        return compute()
    key = table_key(model, settings, methods)
    path = Path(cache_dir) / f"latency-{key[:24]}.json"
    with exclusive(path.with_suffix(".lock")):  # one process measures, the others then load
        document = read_json(path)
        if document and document.get("format") == FORMAT and document.get("key") == key:
            return LatencyTable.from_json(document["table"])
        table = compute()
        write_json_atomic(path, {"format": FORMAT, "key": key, "table": table.to_json()})
        logger.info("latency table cached in %s", path)
    return table
