"""Write fine-tuning results back into the study, where optuna-dashboard shows them.

Optuna refuses to update a finished trial, so the results go on a *record trial*:
a COMPLETE copy of the chosen trial (same params and values) carrying the accuracies,
times and the id of the compressed ``.keras`` file, stored as a study artifact. Record
trials are tagged ``lrf_optuna:finetuned_from`` and never count toward the budget.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact

from lrf_optuna.results._finetune import FinetuneResult
from lrf_optuna.search._study import FINETUNED_FROM

__all__ = ["finetune_records", "record_finetune", "recorded_model"]


def record_finetune(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    result: FinetuneResult,
    model_path: str | os.PathLike,
    artifact_dir: str | os.PathLike,
) -> optuna.trial.FrozenTrial:
    """Add the record trial for ``trial`` with ``result`` and the model file as artifact."""
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    # Study-level artifact + add_trial: enqueue/ask would pop a waiting anchor trial instead.
    artifact_id = upload_artifact(
        artifact_store=FileSystemArtifactStore(str(artifact_dir)),
        file_path=str(model_path),
        study_or_trial=study,
    )
    attrs = {**trial.user_attrs, FINETUNED_FROM: trial.number}
    attrs.update({k: v for k, v in dataclasses.asdict(result).items() if k != "history"})
    attrs.update({"model_artifact_id": artifact_id, "model_file": str(model_path)})
    study.add_trial(
        optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions, values=trial.values, user_attrs=attrs
        )
    )
    # add_trial returns nothing; found by its artifact id, not as the last trial (workers may add more).
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return next(t for t in reversed(trials) if t.user_attrs.get("model_artifact_id") == artifact_id)


def finetune_records(study: optuna.Study, trial_number: int | None = None) -> list[optuna.trial.FrozenTrial]:
    """Record trials holding a fine-tuned model (of search trial ``trial_number``), oldest first."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [
        t
        for t in trials
        if "model_artifact_id" in t.user_attrs
        and (trial_number is None or t.user_attrs.get(FINETUNED_FROM) == trial_number)
    ]


def recorded_model(record: optuna.trial.FrozenTrial, artifact_dir: str | os.PathLike, into: Path) -> Path:
    """The record's ``.keras`` file: its artifact copied into the directory ``into`` (the
    artifact is the exact file recorded; ``model_file`` may have been overwritten since), else
    ``model_file`` when the artifact store is gone."""
    artifact = Path(artifact_dir) / record.user_attrs["model_artifact_id"]
    if artifact.is_file():
        target = Path(into) / Path(record.user_attrs["model_file"]).name
        download_artifact(
            artifact_store=FileSystemArtifactStore(str(artifact_dir)),
            artifact_id=record.user_attrs["model_artifact_id"],
            file_path=str(target),
        )
        return target
    model_file = Path(record.user_attrs["model_file"])
    if not model_file.is_file():
        trial = record.user_attrs[FINETUNED_FROM]
        raise FileNotFoundError(
            f"Invalid fine-tuning record of trial {trial}: expected its model as artifact '{artifact}' "
            f"or as file '{model_file}', found neither. Fine-tune the trial again (lrf-optuna finetune "
            f"--trial {trial}) to recreate it."
        )
    return model_file
