"""The search, end to end: profile (cached) -> proxy -> objective -> resumable study."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping

import keras
import numpy as np
import optuna
import pandas as pd

from lrf_optuna.analysis import ModelAnalysis, analyze
from lrf_optuna.objective import Constraints, Objective
from lrf_optuna.profile import ProfileSettings, check_calibration, check_weights, run_profile
from lrf_optuna.profile_cache import cached_profile, profile_key
from lrf_optuna.proxy import DEFAULT_AGGREGATOR, DEFAULT_METRIC, LayerwiseProxy, ModelProxy
from lrf_optuna.search_space import DEFAULT_METHODS, SearchSpace, methods_record
from lrf_optuna.seeds import hull_params
from lrf_optuna.storage import default_storage_url
from lrf_optuna.study import GracefulInterrupt, SamplerSettings, open_study, remaining_trials

__all__ = ["make_objective", "plan_from_trial", "profile_model", "run_study"]

logger = logging.getLogger(__name__)
PROXIES = ("layerwise", "model")


def profile_model(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    settings: ProfileSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
    analysis: ModelAnalysis | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """The calibration profile (see ``lrf_optuna.profile``), cached under ``cache_dir``."""
    # unresolved output_samples means none: the same cache entry as a default search's
    settings = (settings or ProfileSettings()).for_metric(None)
    data = check_calibration(model, calibration_x)
    analysis = analysis or analyze(model)
    compute = lambda: run_profile(
        model, data, settings=settings, analysis=analysis, show_progress=show_progress
    )
    return cached_profile(model, data, settings, cache_dir, compute)


def make_objective(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    profile: pd.DataFrame | None = None,
    proxy: str = "layerwise",
    metric: str = DEFAULT_METRIC,
    aggregator: str = DEFAULT_AGGREGATOR,
    constraints: Constraints | None = None,
    methods: Iterable[str] | Mapping[str, Iterable[str]] | None = DEFAULT_METHODS,
    profile_settings: ProfileSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> Objective:
    """The objective for ``study.optimize`` (also usable alone through ``.evaluate``).

    ``methods`` (default ``DEFAULT_METHODS``: every conv method, SVD for dense layers)
    restricts the searched methods, as ``SearchSpace.from_analysis`` reads it; ``None``
    searches every registered method.
    """
    if proxy not in PROXIES:
        raise ValueError(f"Invalid `proxy`: expected one of {list(PROXIES)}, received {proxy!r}")
    analysis = analyze(model)
    check_weights(model)
    space = SearchSpace.from_analysis(analysis, methods=methods)
    profile_settings = (profile_settings or ProfileSettings()).for_metric(metric)
    if proxy == "model":
        data = check_calibration(model, calibration_x)
        scorer = ModelProxy(
            model,
            analysis,
            data[: profile_settings.max_samples],
            metric=metric,
            seed=seed,
        )
    else:
        if profile is None:
            profile = profile_model(
                model,
                calibration_x,
                settings=profile_settings,
                cache_dir=cache_dir,
                analysis=analysis,
                show_progress=show_progress,
            )
        scorer = LayerwiseProxy(profile, analysis, metric=metric, aggregator=aggregator)
        _check_profile_covers(space, scorer)
    return Objective(analysis, space, scorer, constraints=constraints)


def _check_profile_covers(space: SearchSpace, scorer: LayerwiseProxy) -> None:
    """Fail now, not at the first trial that picks an unprofiled (layer, method)."""
    missing = [
        f"{c.name}:{m}" for c in space.layers for m in c.useful_ranks if (c.name, m) not in scorer.curves
    ]
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
    seed: int = 0,
    sampler: str = "nsga2",
    population_size: int = 50,
    crossover: str = "uniform",
    timeout: float | None = None,
    show_progress: bool = True,
    hull_seeds: bool = True,
    **objective_options,
) -> optuna.Study:
    """Run (or resume) the search until ``n_trials`` trials are COMPLETE; return the study.

    ``storage`` defaults to ``sqlite:///studies/<study_name>.db``; calling again with
    the same storage and name continues the study. ``objective_options`` go to
    ``make_objective`` (proxy, metric, aggregator, constraints, methods, profile, ...).
    ``n_trials=0`` only creates the study, records its settings and fills the profile
    cache: ``lrf_optuna.worker.run_worker`` processes then share the search.
    ``hull_seeds``: a new study first runs up to ``population_size`` plans of the layerwise
    proxy's convex hull (``lrf_optuna.seeds``), after the anchors.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"Invalid `n_trials`: expected an integer >= 0, received {n_trials!r}")
    settings = SamplerSettings(name=sampler, population_size=population_size, crossover=crossover, seed=seed)
    objective_options.setdefault("cache_dir", os.path.join("studies", "cache"))
    objective = make_objective(
        model, calibration_x, seed=seed, show_progress=show_progress, **objective_options
    )
    storage = default_storage_url(study_name) if storage is None else storage
    study = open_study(
        storage,
        study_name,
        settings,
        objective.space,
        seeds=hull_params(objective, count=max(1, population_size // 3)) if hull_seeds else (),
    )
    if "lrf_optuna:base_params" not in study.user_attrs:
        key = _profile_key(model, calibration_x, objective_options)
        record_settings(study, objective, {**objective_options, "seed": seed}, settings, key)
    remaining = remaining_trials(study, n_trials)
    logger.info("study '%s': %d trial(s) to run", study_name, remaining)
    if remaining:
        with GracefulInterrupt() as interrupt:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                show_progress_bar=show_progress,
                callbacks=[
                    optuna.study.MaxTrialsCallback(n_trials, states=(optuna.trial.TrialState.COMPLETE,)),
                    interrupt,
                ],
            )
    return study


def _profile_key(model: keras.Model, calibration_x: np.ndarray, options: dict) -> str | None:
    if options.get("proxy", "layerwise") != "layerwise" or options.get("profile") is not None:
        return None
    data = check_calibration(model, calibration_x)
    settings = (options.get("profile_settings") or ProfileSettings()).for_metric(
        options.get("metric") or DEFAULT_METRIC
    )
    return profile_key(model, data, settings)


def record_settings(
    study: optuna.Study,
    objective: Objective,
    options: dict,
    sampler: SamplerSettings,
    profile_key: str | None,
) -> None:
    """Store what a worker needs to rebuild the same objective and sampler (user attrs)."""
    defaults = {"proxy": "layerwise", "metric": DEFAULT_METRIC, "aggregator": DEFAULT_AGGREGATOR}
    profile_settings = dataclasses.asdict(options.get("profile_settings") or ProfileSettings())
    methods = options.get("methods", DEFAULT_METHODS)
    attrs = {
        **{key: options.get(key) or default for key, default in defaults.items()},
        "sampler": {k: getattr(sampler, k) for k in ("name", "population_size", "crossover")},
        "seed": options.get("seed", 0),
        "methods": methods_record(methods),
        "constraints": dataclasses.asdict(objective.constraints),
        "profile_settings": {**profile_settings, "methods": methods_record(profile_settings["methods"])},
        "profile_key": profile_key,
    }
    for key, value in attrs.items():
        study.set_user_attr(f"lrf_optuna:{key}", value)
    # written last: a worker treats a study without it as still being created
    study.set_user_attr("lrf_optuna:base_macs", objective.analysis.cost.macs)
    study.set_user_attr("lrf_optuna:base_params", objective.analysis.cost.params)


def plan_from_trial(
    model: keras.Model | SearchSpace,
    trial: optuna.trial.FrozenTrial,
    *,
    methods: tuple[str, ...] | None = None,
) -> dict[str, tuple[str, int]]:
    """The plan a trial scored, replayed through ``optuna.trial.FixedTrial``.

    ``methods`` as the study searched them; the default (every method) also replays
    the trials of a restricted study, unless the restriction left a layer out.
    """
    space = (
        model
        if isinstance(model, SearchSpace)
        else SearchSpace.from_analysis(analyze(model), methods=methods)
    )
    return space.plan_of(trial)
