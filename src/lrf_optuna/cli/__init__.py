"""The ``lrf-optuna`` command line: demo, profile, search, worker, finetune, report, dashboard,
export, bench. Importing it loads no TensorFlow (``--help`` stays fast)."""

from __future__ import annotations

from lrf_optuna.cli._main import main
from lrf_optuna.cli._parser import DEFAULT_MODEL, METRICS, OBJECTIVES, QUANTIZATIONS, build_parser

__all__ = ["DEFAULT_MODEL", "METRICS", "OBJECTIVES", "QUANTIZATIONS", "build_parser", "main"]
