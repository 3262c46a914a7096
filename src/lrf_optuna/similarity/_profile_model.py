"""``profile_model``: the calibration profile of a model, computed once and cached."""

from __future__ import annotations

import os

import keras
import numpy as np
import pandas as pd

from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.similarity._cache import cached_profile
from lrf_optuna.similarity._profile import ProfileSettings, check_calibration, run_profile

__all__ = ["profile_model"]


def profile_model(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    settings: ProfileSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
    analysis: ModelAnalysis | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """The calibration profile (see ``lrf_optuna.similarity._profile``), cached under ``cache_dir``."""
    # unresolved output_samples means none: the same cache entry as a default search's
    settings = (settings or ProfileSettings()).for_metric(None)
    data = check_calibration(model, calibration_x, max_samples=settings.max_samples)
    analysis = analysis or analyze(model)
    compute = lambda: run_profile(
        model, data, settings=settings, analysis=analysis, show_progress=show_progress
    )
    return cached_profile(model, data, settings, cache_dir, compute)
