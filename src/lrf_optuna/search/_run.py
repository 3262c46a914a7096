"""The search, end to end: profile (cached) -> proxy -> objective -> resumable study."""

from __future__ import annotations

import dataclasses
import logging
import os

import keras
import numpy as np
import optuna
import pandas as pd

from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.model._statistics import collect_statistics
from lrf_optuna.runtime._latency_table import latency_table
from lrf_optuna.search._hull import hull_params
from lrf_optuna.search._objective import Objective
from lrf_optuna.search._settings import SearchSettings, settings_from
from lrf_optuna.search._settings_record import (
    has_record,
    record_settings,
    refuse_differences,
    stored_settings,
)
from lrf_optuna.search._space import SearchSpace
from lrf_optuna.search._storage import default_storage_url, open_storage
from lrf_optuna.search._study import GracefulInterrupt, StopAtBudget, open_study, remaining_trials
from lrf_optuna.similarity._cache import cached_profile, data_fingerprint, model_fingerprint, profile_key
from lrf_optuna.similarity._profile import ProfileSettings, check_calibration, check_weights, run_profile
from lrf_optuna.similarity._proxy import LayerwiseProxy, ModelProxy

__all__ = ["make_objective", "plan_from_trial", "profile_model", "run_study"]

logger = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = os.path.join("studies", "cache")


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


def make_objective(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    settings: SearchSettings | None = None,
    profile: pd.DataFrame | None = None,
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    **options,
) -> Objective:
    """The objective for ``study.optimize`` (also usable alone through ``.evaluate``).

    ``options`` are ``SearchSettings`` fields (proxy, metric, aggregator, constraints,
    methods, profile_settings, exclude, fixed, min_rank_fraction, seed), over ``settings``;
    what neither gives takes ``SearchSettings``'s default (e.g. ``methods``: every conv
    method, SVD for dense layers; ``None`` searches every registered method).
    """
    settings = SearchSettings(**settings_from(settings, options))
    data = check_calibration(model, calibration_x, max_samples=settings.profile_settings.max_samples)
    analysis = analyze(model)
    check_weights(model)
    return objective_for(
        model,
        data,
        settings,
        analysis=analysis,
        profile=profile,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )


def objective_for(
    model: keras.Model,
    data: np.ndarray,
    settings: SearchSettings,
    *,
    analysis: ModelAnalysis,
    profile: pd.DataFrame | None = None,
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> Objective:
    """The objective of ``settings`` on checked calibration ``data`` (see ``make_objective``)."""
    space = settings.space(analysis)
    profile_settings = settings.profile_settings.for_metric(settings.metric)
    if settings.proxy == "model":
        data = data[: profile_settings.max_samples]
        stats = None
        if profile_settings.factorization == "data_aware":  # score the factors materialize will build
            layers = {
                c.name: (analysis.layers[c.name], analysis.specs[c.name].geometry) for c in space.layers
            }
            layers.update({n: (analysis.layers[n], analysis.specs[n].geometry) for n in space.fixed})
            stats = collect_statistics(
                model, layers, data, batch_size=profile_settings.batch_size,
                max_positions=profile_settings.max_positions, seed=profile_settings.seed,
            )  # fmt: skip
        scorer = ModelProxy(model, analysis, data, metric=settings.metric, seed=settings.seed, stats=stats)
    else:
        if profile is None:
            profile = profile_model(
                model,
                data,
                settings=profile_settings,
                cache_dir=cache_dir,
                analysis=analysis,
                show_progress=show_progress,
            )
        scorer = LayerwiseProxy(profile, analysis, metric=settings.metric, aggregator=settings.aggregator)
        _check_profile_covers(space, scorer)
    latency = None
    if settings.uses_latency:
        methods = {c.name: tuple(c.useful_ranks) for c in space.layers}
        methods.update({name: (method,) for name, (method, _) in space.fixed.items()})
        latency = latency_table(
            model, settings.latency_settings, methods, cache_dir=cache_dir, analysis=analysis
        )
    return Objective(
        analysis,
        space,
        scorer,
        constraints=settings.constraints,
        objectives=settings.objectives,
        latency=latency,
    )


def _check_profile_covers(space: SearchSpace, scorer: LayerwiseProxy) -> None:
    """Fail now, not at the first trial that picks an unprofiled (layer, method)."""
    wanted = [(c.name, m) for c in space.layers for m in c.useful_ranks]
    wanted += [(name, method) for name, (method, _) in space.fixed.items()]
    missing = [f"{name}:{method}" for name, method in wanted if (name, method) not in scorer.curves]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            "Invalid `profile`: expected a curve for every layer and method of the search space, "
            f"received none for {', '.join(missing[:5])}{more}. Profile this model with the searched "
            "methods (`profile_settings.methods`), or restrict `methods` to the profiled ones."
        )


def run_study(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str = "lrf_optuna",
    n_trials: int = 1000,
    settings: SearchSettings | None = None,
    profile: pd.DataFrame | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    timeout: float | None = None,
    show_progress: bool = True,
    hull_seeds: bool = True,
    **options,
) -> optuna.Study:
    """Run (or resume) the search until ``n_trials`` search trials are COMPLETE; return the study.

    ``storage`` defaults to ``sqlite:///studies/<study_name>.db``; calling again with
    the same storage and name continues the study. ``options`` are ``SearchSettings``
    fields (proxy, metric, aggregator, constraints, methods, profile_settings, exclude,
    fixed, min_rank_fraction, sampler, population_size, crossover, seed, ...) over
    ``settings``. A new study takes ``SearchSettings``'s defaults for the others and
    records them all; a resumed study takes its recorded ones, and refuses (ValueError,
    nothing written) options, model weights or calibration data that would make the new
    trials incomparable with its trials. ``n_trials=0`` only creates the study, records its
    settings and fills the profile cache: ``lrf_optuna.search._worker.run_worker`` processes then
    share the search. ``hull_seeds``: a new study first runs up to ``population_size``
    plans of the layerwise proxy's convex hull (``lrf_optuna.search._hull``), after the anchors.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"Invalid `n_trials`: expected an integer >= 0, received {n_trials!r}")
    asked = settings_from(settings, options)
    asked_settings = SearchSettings(**asked)
    asked_settings.space(analysis := analyze(model))  # bad options: refused before any write
    data = check_calibration(model, calibration_x, max_samples=asked_settings.profile_settings.max_samples)
    check_weights(model)
    storage = open_storage(default_storage_url(study_name) if storage is None else storage)
    recorded = stored_settings(storage, study_name)
    chosen = with_inputs(dataclasses.replace(recorded or SearchSettings(), **asked), model, data, profile)
    if recorded is not None:
        refuse_differences(study_name, recorded, chosen)
    objective = objective_for(
        model,
        data,
        chosen,
        analysis=analysis,
        profile=profile,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )
    study = open_study(
        storage,
        study_name,
        chosen.sampler_settings(),
        objective.space,
        seeds=hull_params(objective, count=max(1, chosen.population_size // 3)) if hull_seeds else (),
        objectives=chosen.objectives,
    )
    if not has_record(study):
        record_settings(study, chosen, analysis.cost)
    remaining = remaining_trials(study, n_trials)
    logger.info("study '%s': %d trial(s) to run", study_name, remaining)
    if remaining:
        with GracefulInterrupt() as interrupt:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                show_progress_bar=show_progress,
                callbacks=[StopAtBudget(n_trials), interrupt],
            )
    return study


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
