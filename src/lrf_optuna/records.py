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
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from lrf_optuna.finetune import FinetuneResult
from lrf_optuna.study import FINETUNED_FROM

__all__ = ["record_finetune"]


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
