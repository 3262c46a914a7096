"""What a user feels of a model: size, FLOPs and measured latency, side by side (``lrf-optuna bench``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import pandas as pd

from lrf_optuna.model._analysis import model_cost
from lrf_optuna.runtime._latency import Latency, measure_latency

__all__ = ["TIMINGS", "Bench", "bench_model", "bench_table"]

# (row label, runtime, batch size, threads): Keras on TensorFlow's threads, TFLite on one.
TIMINGS = (
    ("Keras latency, batch 1 (ms)", "keras", 1, None),
    ("Keras latency, batch 64 (ms)", "keras", 64, None),
    ("TFLite latency, batch 1, 1 thread (ms)", "tflite", 1, 1),
)


@dataclasses.dataclass(frozen=True)
class Bench:
    """One model's figures: params, FLOPs (2 x MACs per sample), .keras size, latencies."""

    name: str
    params: int
    flops: int
    file_bytes: int
    latencies: tuple[Latency, ...]


def bench_model(
    model: keras.Model, path: str | os.PathLike, *, warmup: int = 5, runs: int = 30, seed: int = 0
) -> Bench:
    """``model`` (loaded from ``path``) measured in every runtime of ``TIMINGS``."""
    cost = model_cost(model)
    latencies = tuple(
        measure_latency(
            model, runtime=runtime, batch_size=batch, threads=threads, warmup=warmup, runs=runs, seed=seed
        )
        for _, runtime, batch, threads in TIMINGS
    )
    return Bench(Path(path).name, cost.params, 2 * cost.macs, Path(path).stat().st_size, latencies)


def bench_table(benches: list[Bench]) -> str:
    """Rows of figures, a column per model and, for two models, their ratio (second / first)."""
    labels = ["params", "FLOPs per sample", ".keras file (KB)", *(label for label, *_ in TIMINGS)]
    names = [b.name for b in benches]
    if len(set(names)) < len(names):
        names = [f"{chr(ord('a') + i)}: {name}" for i, name in enumerate(names)]
    columns = {name: _cells(bench) for name, bench in zip(names, benches)}
    if len(benches) == 2:
        first, second = (_values(b) for b in benches)
        columns[f"{names[1]} / {names[0]}"] = [f"{b / a:.2f}x" if a else "-" for a, b in zip(first, second)]
    return pd.DataFrame(columns, index=labels).to_string()


def _values(bench: Bench) -> list[float]:
    timed = [latency.median_ms for latency in bench.latencies]
    return [bench.params, bench.flops, bench.file_bytes / 1e3, *timed]


def _cells(bench: Bench) -> list[str]:
    timed = [f"{t.median_ms:.3f} ({t.p10_ms:.3f}-{t.p90_ms:.3f})" for t in bench.latencies]
    return [f"{bench.params:,}", f"{bench.flops:,}", f"{bench.file_bytes / 1e3:,.1f}", *timed]
