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
    with_inputs,
)
from lrf_optuna.search._space import SearchSpace
from lrf_optuna.search._storage import default_storage_url, open_storage
from lrf_optuna.search._study import GracefulInterrupt, StopAtBudget, open_study, remaining_trials
from lrf_optuna.similarity._profile import check_calibration, check_weights
from lrf_optuna.similarity._profile_model import profile_model
from lrf_optuna.similarity._proxy import LayerwiseProxy, ModelProxy

__all__ = ["DEFAULT_CACHE_DIR", "make_objective", "objective_for", "run_study"]

logger = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = os.path.join("studies", "cache")


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
