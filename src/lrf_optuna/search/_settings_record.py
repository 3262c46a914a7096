"""A study's settings record in its storage: written once at creation, read and compared on resume;
the fingerprints of the model and calibration data it records."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import optuna
import pandas as pd

from lrf_optuna.core._cost import Cost
from lrf_optuna.search._settings import ATTR, SearchSettings
from lrf_optuna.similarity._cache import data_fingerprint, model_fingerprint, profile_key

__all__ = ["has_record", "record_settings", "refuse_differences", "stored_settings", "with_inputs"]


def has_record(study: optuna.Study) -> bool:
    """True once ``record_settings`` has completed (a study being created has no record yet)."""
    return f"{ATTR}base_params" in study.user_attrs


def stored_settings(storage: optuna.storages.BaseStorage, study_name: str) -> SearchSettings | None:
    """The settings of an existing, fully created study; None when there is no such study yet."""
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study_name))
    except KeyError:
        return None
    return SearchSettings.from_attrs(attrs) if f"{ATTR}base_params" in attrs else None


def record_settings(study: optuna.Study, settings: SearchSettings, base: Cost) -> None:
    """Write ``settings`` and the model's cost into a new study's user attributes."""
    for key, value in settings.to_attrs().items():
        study.set_user_attr(key, value)
    # written last: a worker treats a study without it as still being created
    study.set_user_attr(f"{ATTR}base_macs", base.macs)
    study.set_user_attr(f"{ATTR}base_params", base.params)


def refuse_differences(study_name: str, recorded: SearchSettings, wanted: SearchSettings) -> None:
    """ValueError listing each difference between ``wanted`` and the study's ``recorded`` settings."""
    lines = recorded.differences(wanted)
    if not lines:
        return
    inputs = any(line.startswith(("model weights", "calibration data")) for line in lines)
    fix = (
        "the model and calibration data it was searched with (the same --model, --data, --calibration "
        "and --seed)"
        if inputs
        else "its recorded settings (leave these options out and the study's own are used)"
    )
    raise ValueError(
        f"Invalid settings for study '{study_name}': expected the settings it was created with, "
        "received a run whose trials would not be comparable with its trials:\n  - "
        + "\n  - ".join(lines)
        + f"\nResume it with {fix}, or start a new study (another study_name / --study)."
    )


def with_inputs(
    settings: SearchSettings, model: keras.Model, data: np.ndarray, profile: pd.DataFrame | None
) -> SearchSettings:
    """``settings`` with the fingerprints of this model and calibration data."""
    key = None
    if settings.proxy == "layerwise" and profile is None:
        key = profile_key(model, data, settings.profile_settings.for_metric(settings.metric))
    return dataclasses.replace(
        settings,
        model_fingerprint=model_fingerprint(model),
        data_fingerprint=data_fingerprint(data, settings.profile_settings.max_samples),
        profile_key=key,
    )
