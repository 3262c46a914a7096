"""Where users run models: TFLite export, measured latency, the latency table, bench."""

from __future__ import annotations

from lrf_optuna.runtime._bench import bench_model
from lrf_optuna.runtime._latency import RUNTIMES, Latency, measure_latency
from lrf_optuna.runtime._latency_table import LatencySettings, LatencyTable, latency_table
from lrf_optuna.runtime._tflite import QUANTIZATIONS, export_tflite

__all__ = [
    "QUANTIZATIONS",
    "RUNTIMES",
    "Latency",
    "LatencySettings",
    "LatencyTable",
    "bench_model",
    "export_tflite",
    "latency_table",
    "measure_latency",
]
