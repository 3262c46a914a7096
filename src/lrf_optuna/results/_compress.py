"""The steps the CLI chains: calibration subset, pick + materialize + fine-tune + record."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np
import optuna

from lrf_optuna.core._batches import calibration_array
from lrf_optuna.core._cost import Cost
from lrf_optuna.files._models import save_model_atomic, writable_directory
from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.model._materialize import materialize
from lrf_optuna.results._finetune import FinetuneResult, finetune
from lrf_optuna.results._records import record_finetune
from lrf_optuna.search._replay import plan_from_trial
from lrf_optuna.search._settings import SearchSettings
from lrf_optuna.similarity._cache import model_fingerprint

__all__ = [
    "Compressed",
    "calibration_subset",
    "check_model",
    "compress_trial",
    "materialize_as_searched",
    "plan_calibration",
    "study_factorization",
]

logger = logging.getLogger(__name__)


def calibration_subset(x, size: int, *, seed: int = 0) -> np.ndarray:
    """``size`` samples drawn without replacement (seeded), or all when fewer; from a
    tf.data.Dataset, PyDataset or generator, its first ``size`` samples."""
    x = calibration_array(x, size)
    if size >= len(x):
        return np.asarray(x)
    return np.asarray(x)[np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))]


def study_factorization(study: optuna.Study) -> tuple[str, int]:
    """``(factorization, samples)`` of the profile the study searched: "data_aware" or
    "weights" ("weights" for studies from before data-aware factors), and its calibration size."""
    profile = SearchSettings.from_study(study).profile_settings
    return profile.factorization, profile.max_samples


def plan_calibration(study: optuna.Study, train_x: np.ndarray, calibration, seed: int) -> np.ndarray | None:
    """The calibration inputs to materialize the study's plans with, or None (weight-only)."""
    factorization, samples = study_factorization(study)
    if factorization == "weights":
        if calibration is not None:
            raise ValueError(
                f"Invalid `calibration`: study '{study.study_name}' scored weight-only factors "
                "(profile factorization 'weights'), so its plans must be materialized without "
                "calibration data. Pass calibration=None, or search again with the data-aware profile."
            )
        return None
    # The same number of samples as the profile (which the CLI draws with the same seed).
    return calibration if calibration is not None else calibration_subset(train_x, samples, seed=seed)


def materialize_as_searched(
    model: keras.Model,
    plan: dict[str, tuple[str, int]],
    study: optuna.Study,
    train_x,
    *,
    calibration=None,
    seed: int = 0,
    refit: bool = True,
    analysis: ModelAnalysis | None = None,
) -> keras.Model:
    """``plan`` factorized as ``study``'s profile scored it: data-aware on its calibration size
    of ``train_x`` (or ``calibration``), statistics at the profile's positions, then refit; or
    weight-only for a study that profiled weight-only factors (see ``plan_calibration``)."""
    data = plan_calibration(study, train_x, calibration, seed)
    positions = SearchSettings.from_study(study).profile_settings.max_positions
    return materialize(
        model, plan, seed=seed, analysis=analysis, calibration=data, refit=refit, max_positions=positions
    )


def check_model(study: optuna.Study, model: keras.Model) -> None:
    """ValueError when ``model``'s weights are not those the study recorded (when it did)."""
    recorded = SearchSettings.from_study(study)
    if recorded.model_fingerprint and recorded.model_fingerprint != model_fingerprint(model):
        where = f" ({recorded.model_path})" if recorded.model_path else ""
        raise ValueError(
            f"Invalid model for study '{study.study_name}': expected the model it was searched "
            f"with{where}, received one with other weights. Pass that model (--model PATH)."
        )


@dataclasses.dataclass(frozen=True)
class Compressed:
    trial: optuna.trial.FrozenTrial
    plan: dict[str, tuple[str, int]]
    original_cost: Cost
    cost: Cost
    result: FinetuneResult
    path: Path


def compress_trial(
    model: keras.Model,
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    *,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    output: Path,
    artifact_dir: Path,
    epochs: int = 1,
    distill: bool | None = None,
    learning_rate: float | None = None,
    schedule: str | None = None,
    seed: int = 0,
    input_path: Path | None = None,
    calibration: np.ndarray | None = None,
    refit: bool = True,
) -> Compressed:
    """Materialize ``trial``'s plan, fine-tune it once, save it, record it in the study.

    ``distill``, ``learning_rate`` and ``schedule`` left at None take ``finetune``'s defaults
    (distilled from ``model``). The plan is factorized as the study's profile did
    (``study_factorization``): data-aware on ``calibration`` (default: as many training
    samples as the profile, drawn with ``seed``) then refit unless ``refit=False``, or
    weight-only (then passing ``calibration`` is an error).
    """
    writable_directory(Path(output).parent, option="--output directory")  # fail before training
    check_model(study, model)
    analysis = analyze(model)  # traced once for the plan, the surgery and the costs
    plan = plan_from_trial(analysis, trial, study=study)  # in the space the study recorded
    logger.info("trial %d: factorizing %d layer(s)", trial.number, len(plan))
    compressed = materialize_as_searched(
        model, plan, study, train[0], calibration=calibration, seed=seed, refit=refit, analysis=analysis
    )
    optimizer = {"learning_rate": learning_rate, "schedule": schedule}
    result = finetune(
        compressed, train, validation_data=test, epochs=epochs, original=model, distill=distill, seed=seed,
        **{name: value for name, value in optimizer.items() if value is not None},
    )  # fmt: skip
    path = save_model_atomic(compressed, output, protect=[input_path] if input_path else [])
    record_finetune(study, trial, result, path, artifact_dir)
    # plan_cost equals model_cost(compressed) exactly (tested), without tracing it.
    return Compressed(trial, plan, analysis.cost, analysis.plan_cost(plan), result, path)
