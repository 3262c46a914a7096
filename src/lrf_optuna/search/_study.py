"""Study creation, anchors and resumable runs: NSGA-II by default."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import warnings
from collections.abc import Sequence

import optuna

from lrf_optuna.search._objective import DEFAULT_OBJECTIVES, LEGACY_OBJECTIVES, directions
from lrf_optuna.search._space import SearchSpace
from lrf_optuna.search._storage import CREATE_HINT, open_storage, storage_label

FINETUNED_FROM = "lrf_optuna:finetuned_from"  # user attr of fine-tuning record trials (results/_records.py)

__all__ = [
    "GracefulInterrupt",
    "SamplerSettings",
    "StopAtBudget",
    "anchor_params",
    "check_space",
    "complete_search_trials",
    "load_existing_study",
    "make_sampler",
    "open_study",
    "remaining_trials",
    "study_objectives",
]

logger = logging.getLogger(__name__)
ANCHORS_ATTR = "lrf_optuna:anchors_enqueued"
ANCHOR_FRACTIONS = (0.25, 0.5)
CROSSOVERS = ("uniform", "blxalpha", "sbx", "spx", "undx", "vsbx")


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """``name``: "nsga2" (default), "nsga3" or "tpe"; ``crossover`` for the NSGA samplers."""

    name: str = "nsga2"
    population_size: int = 50
    crossover: str = "uniform"
    seed: int = 0

    def __post_init__(self):
        if self.name not in ("nsga2", "nsga3", "tpe"):
            raise ValueError(
                f"Invalid `sampler`: expected one of ['nsga2', 'nsga3', 'tpe'], received {self.name!r}"
            )
        if self.crossover not in CROSSOVERS:
            raise ValueError(
                f"Invalid `crossover`: expected one of {list(CROSSOVERS)}, received {self.crossover!r}"
            )
        if self.population_size < 2:
            raise ValueError(f"Invalid `population_size`: expected >= 2, received {self.population_size}")


def _crossover(name: str) -> optuna.samplers.nsgaii.BaseCrossover:
    module = optuna.samplers.nsgaii
    classes = {
        "uniform": module.UniformCrossover,
        "blxalpha": module.BLXAlphaCrossover,
        "sbx": module.SBXCrossover,
        "spx": module.SPXCrossover,
        "undx": module.UNDXCrossover,
        "vsbx": module.VSBXCrossover,
    }
    return classes[name]()


def make_sampler(settings: SamplerSettings, *, offset: int = 0) -> optuna.samplers.BaseSampler:
    """A seeded sampler; ``offset`` (trials already run) keeps a resume from replaying them."""
    seed = settings.seed + offset
    if settings.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    cls = optuna.samplers.NSGAIISampler if settings.name == "nsga2" else optuna.samplers.NSGAIIISampler
    return cls(population_size=settings.population_size, crossover=_crossover(settings.crossover), seed=seed)


def open_study(
    storage,
    study_name: str,
    settings: SamplerSettings,
    space: SearchSpace,
    *,
    seeds: Sequence[dict] = (),
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
) -> optuna.Study:
    """Create the study (once) or load it; the sampler is rebuilt each time (Optuna doesn't store it).

    A new study gets the anchors, then ``seeds`` (trial params), as its first trials; its
    metric names are ``objectives``.
    """
    storage = open_storage(storage)
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=directions(objectives), load_if_exists=True
    )
    _check_directions(study, objectives)
    check_space(study, space)
    study.sampler = make_sampler(settings, offset=len(study.get_trials(deepcopy=False)))
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still the only way
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))
    if not study.user_attrs.get(ANCHORS_ATTR):
        for params in [*anchor_params(space), *seeds]:
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr(ANCHORS_ATTR, True)
    return study


def load_existing_study(storage, study_name: str, space: SearchSpace | None = None) -> optuna.Study:
    """A study created before (by ``run_study``); never creates one. Its sampler is Optuna's default.

    ``space``, when given, must be the one the study's trials were searched over.
    """
    label = storage_label(storage) if isinstance(storage, str) else type(storage).__name__
    storage = open_storage(storage, create=False)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        raise ValueError(
            f"Invalid study name {study_name!r}: expected one of {names} in {label}, "
            f"received {study_name!r}. {CREATE_HINT}"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    _check_directions(study, study_objectives(study))
    if space is not None:
        check_space(study, space)
    return study


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objectives a study searched (its metric names; studies before names: the legacy three)."""
    return tuple(study.metric_names or LEGACY_OBJECTIVES)


def _check_directions(study: optuna.Study, objectives: Sequence[str]) -> None:
    found = [d.name.lower() for d in study.directions]
    if found != directions(objectives):
        raise ValueError(
            f"Invalid study '{study.study_name}': expected the directions of objectives {list(objectives)} "
            f"({directions(objectives)}), received {found}. Use another --study name."
        )


def check_space(study: optuna.Study, space: SearchSpace) -> None:
    """ValueError when the study's COMPLETE trials were searched over another space."""
    expected = space.distributions()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))[:1]:
        if set(trial.distributions) != set(expected):
            raise ValueError(
                f"Invalid study '{study.study_name}': it was searched over other layers or ranks "
                "(another model or other settings). Use a new study name, or the original model."
            )
        changed = sorted(name for name, dist in expected.items() if trial.distributions[name] != dist)
        if changed:
            recorded = study.user_attrs.get("lrf_optuna:methods")
            raise ValueError(
                f"Invalid study '{study.study_name}': expected trials searched over these choices, "
                f"received a study whose {changed[0]} was searched over "
                f"{_choices(trial.distributions[changed[0]])}, not {_choices(expected[changed[0]])}. "
                f"Search it with the methods it recorded (`methods={recorded!r}`, None meaning "
                "every method; CLI: --conv-methods/--dense-methods), or use a new study name."
            )


def _choices(distribution: optuna.distributions.BaseDistribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return str(list(distribution.choices))
    return f"{distribution.low}..{distribution.high}"


def anchor_params(space: SearchSpace) -> list[dict[str, object]]:
    """All-"none", then every method used uniformly at a few fractions of its useful ranks."""
    methods = sorted({m for layer in space.layers for m in layer.useful_ranks})
    anchors = [space.uniform_params("none", 1.0, fallback="none")]
    anchors += [space.uniform_params(m, f) for m in methods for f in ANCHOR_FRACTIONS]
    return anchors


def complete_search_trials(study: optuna.Study) -> int:
    """COMPLETE trials of the search (fine-tuning record trials are not counted)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sum(FINETUNED_FROM not in t.user_attrs for t in trials)


def remaining_trials(study: optuna.Study, n_trials: int) -> int:
    """Trials still to run so that ``n_trials`` are COMPLETE (a RUNNING one does not count)."""
    return max(0, n_trials - complete_search_trials(study))


@dataclasses.dataclass(frozen=True)
class StopAtBudget:
    """Callback: stop once ``n_trials`` search trials are COMPLETE.

    Unlike ``optuna.study.MaxTrialsCallback``, fine-tuning record trials never count.
    """

    n_trials: int

    def __call__(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if remaining_trials(study, self.n_trials) == 0:
            study.stop()


class GracefulInterrupt:
    """Ctrl-C around ``study.optimize``: the running trial finishes, then KeyboardInterrupt.

    Use as a context manager around ``optimize`` and pass it as a callback. The first
    SIGINT only sets ``requested``; after the current trial the callback stops the loop,
    and leaving the context raises KeyboardInterrupt, so no trial is left RUNNING or
    half-told. A second SIGINT raises at once. Outside the main thread it does nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.requested and kind is None:
            raise KeyboardInterrupt
        return False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("interrupted: finishing the running trial, then stopping (Ctrl-C again: at once)")

    def __call__(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if self.requested:
            study.stop()
