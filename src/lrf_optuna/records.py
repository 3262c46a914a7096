"""Write fine-tuning results back into the study, where optuna-dashboard shows them.

Optuna refuses to update a finished trial, so the results go on a *record trial*:
a COMPLETE copy of the chosen trial (same params and values) carrying the accuracies
and times as user attrs and the compressed ``.keras`` file as an artifact. Record
trials are tagged ``lrf_optuna:finetuned_from`` and never count toward the budget.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from lrf_optuna.finetune import FinetuneResult
from lrf_optuna.select import FINETUNED_FROM

__all__ = ["artifact_dir_for", "record_finetune"]


def artifact_dir_for(storage_url: str) -> Path:
    """The artifact store beside a SQLite/Journal file (``<db>.artifacts``), else ./studies/artifacts."""
    for prefix in ("sqlite:///", "journal:///"):
        if storage_url.startswith(prefix):
            path = Path(storage_url[len(prefix) :])
            return path.with_name(path.name + ".artifacts")
    return Path("studies") / "artifacts"


def record_finetune(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    result: FinetuneResult,
    model_path: str | os.PathLike,
    artifact_dir: str | os.PathLike,
) -> optuna.trial.FrozenTrial:
    """Add the record trial for ``trial`` with ``result`` and the model file as artifact."""
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    study.enqueue_trial(trial.params, user_attrs={FINETUNED_FROM: trial.number})
    with warnings.catch_warnings():  # heartbeats guard optimize() loops; a record is told at once
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        record = study.ask(fixed_distributions=trial.distributions)
    for key, value in dataclasses.asdict(result).items():
        if key != "history":
            record.set_user_attr(key, value)
    for key, value in trial.user_attrs.items():
        record.set_user_attr(key, value)
    artifact_id = upload_artifact(
        artifact_store=FileSystemArtifactStore(str(artifact_dir)),
        file_path=str(model_path),
        study_or_trial=record,
    )
    record.set_user_attr("model_artifact_id", artifact_id)
    record.set_user_attr("model_file", str(model_path))
    study.tell(record, trial.values)
    return study.trials[record.number]
