"""``plan_from_trial``: the plan a finished trial scored, replayed in its study's search space."""

from __future__ import annotations

import keras
import optuna

from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.search._settings import SearchSettings
from lrf_optuna.search._space import SearchSpace

__all__ = ["plan_from_trial"]


def plan_from_trial(
    model: keras.Model | ModelAnalysis | SearchSpace,
    trial: optuna.trial.FrozenTrial,
    *,
    study: optuna.Study | None = None,
    settings: SearchSettings | None = None,
) -> dict[str, tuple[str, int]]:
    """The plan a trial scored (fixed layers included), replayed through ``optuna.trial.FixedTrial``.

    The trial is replayed in its study's search space: pass its ``study`` (whose recorded
    settings are read: methods, excluded and fixed layers, minimum rank fraction) or
    ``settings``; with neither, ``SearchSettings()``'s defaults, as a study searched
    without options. ``model`` may also be the model's ``ModelAnalysis``, or a
    ``SearchSpace`` used as it is. A trial whose parameters are not of that space is a
    ValueError. ``compress_trial`` and the CLI replay trials through this function.
    """
    if study is not None and settings is not None:
        raise ValueError("Invalid arguments: expected `study` or `settings`, received both; pass one")
    if isinstance(model, SearchSpace):
        if study is not None or settings is not None:
            raise ValueError(
                "Invalid arguments: a SearchSpace is replayed as it is, received `study`/`settings` "
                "too; pass the model (or its analysis) with them instead"
            )
        return model.plan_of(trial)
    if study is not None:
        settings = SearchSettings.from_study(study)
    analysis = model if isinstance(model, ModelAnalysis) else analyze(model)
    return (settings or SearchSettings()).space(analysis).plan_of(trial)
