"""After the search: trial selection, fine-tuning, records, reports, compress_trial."""

from __future__ import annotations

from lrf_optuna.results._compress import (
    Compressed,
    calibration_subset,
    compress_trial,
    materialize_as_searched,
)
from lrf_optuna.results._finetune import (
    SCHEDULES,
    FinetuneResult,
    evaluate_accuracy,
    finetune,
    learning_rate_schedule,
)
from lrf_optuna.results._report import pareto_frame, summary_table, write_report
from lrf_optuna.results._selection import feasible_trials, pareto_trials, select_trial, spread_trials

__all__ = [
    "SCHEDULES",
    "Compressed",
    "FinetuneResult",
    "calibration_subset",
    "compress_trial",
    "evaluate_accuracy",
    "feasible_trials",
    "finetune",
    "learning_rate_schedule",
    "materialize_as_searched",
    "pareto_frame",
    "pareto_trials",
    "select_trial",
    "spread_trials",
    "summary_table",
    "write_report",
]
