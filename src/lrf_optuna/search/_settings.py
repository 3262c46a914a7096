"""The settings record of a study: every setting that makes its trials comparable.

``SearchSettings`` is the single source of the search's defaults (``run_study``,
``run_worker``, ``compress_trial``, ``plan_from_trial`` and the CLI read them here). It
is written to the study's user attributes (``lrf_optuna:<field>``) when the study is
created, read back by every later run, and compared on every resume: settings that
change the trials' values (proxy, metric, aggregator, objectives, constraints, methods,
profile settings, excluded and fixed layers, minimum rank fraction, the model's weights
and the calibration data; the seed with the model proxy) must be the recorded ones.
The sampler settings and the seed (layerwise proxy) only steer the search: a resume may
change them. ``model_path`` and ``data_spec`` are informational (the CLI's inputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import optuna

from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.runtime._latency_table import LatencySettings
from lrf_optuna.search._objective import DEFAULT_OBJECTIVES, LEGACY_OBJECTIVES, Constraints, check_objectives
from lrf_optuna.search._space import DEFAULT_METHODS, SearchSpace, methods_record
from lrf_optuna.search._space_options import (
    check_min_rank_fraction,
    normalize_exclude,
    normalize_fixed,
    normalize_methods,
)
from lrf_optuna.search._study import SamplerSettings
from lrf_optuna.similarity._metrics import METRICS
from lrf_optuna.similarity._profile import ProfileSettings
from lrf_optuna.similarity._proxy import AGGREGATORS, DEFAULT_AGGREGATOR, DEFAULT_METRIC, LAYERWISE_METRICS

__all__ = [
    "DataSpec",
    "SearchSettings",
    "settings_from",
]

ATTR = "lrf_optuna:"
PROXIES = ("layerwise", "model")
# Compared on resume; the fingerprints also, when both sides know them.
COMPARED = (
    "proxy", "metric", "aggregator", "objectives", "constraints", "methods", "profile_settings",
    "exclude", "fixed", "min_rank_fraction",
)  # fmt: skip
FINGERPRINTS = {"model_fingerprint": "model weights", "data_fingerprint": "calibration data"}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the CLI's data came from: ``--data`` (a file as an absolute path), its calibration size and seed."""

    source: str = "fashion-mnist"
    calibration: int = 256
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a study's trials depend on, plus how it searches and what it was run on.

    ``methods``: as ``SearchSpace.from_analysis`` reads it (stored as ``{kind: names}``;
    None: every method). ``exclude`` / ``fixed`` / ``min_rank_fraction``: per-layer control
    (see ``lrf_optuna.search._space``). Fingerprints are SHA-256 of the model's weights and of
    the calibration inputs; ``profile_key`` is what studies recorded before fingerprints.
    """

    proxy: str = "layerwise"
    metric: str = DEFAULT_METRIC
    aggregator: str = DEFAULT_AGGREGATOR
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    constraints: Constraints = dataclasses.field(default_factory=Constraints)
    methods: Iterable[str] | Mapping[str, Iterable[str]] | None = dataclasses.field(
        default_factory=lambda: DEFAULT_METHODS
    )
    profile_settings: ProfileSettings = dataclasses.field(default_factory=ProfileSettings)
    latency_settings: LatencySettings = dataclasses.field(default_factory=LatencySettings)
    exclude: tuple[str, ...] = ()
    fixed: Mapping[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    min_rank_fraction: float = 0.0
    sampler: str = "nsga2"
    population_size: int = 50
    crossover: str = "uniform"
    seed: int = 0
    model_fingerprint: str | None = None
    data_fingerprint: str | None = None
    profile_key: str | None = None
    model_path: str | None = None
    data_spec: DataSpec | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # frozen: set once, normalized
        _check_choice("proxy", self.proxy, PROXIES)
        _check_choice("metric", self.metric, LAYERWISE_METRICS if self.proxy == "layerwise" else METRICS)
        _check_choice("aggregator", self.aggregator, AGGREGATORS)
        set_("objectives", check_objectives(self.objectives))
        set_("constraints", self.constraints or Constraints())
        set_("profile_settings", self.profile_settings or ProfileSettings())
        set_("latency_settings", self.latency_settings or LatencySettings())
        classes = (("constraints", Constraints), ("profile_settings", ProfileSettings),
                   ("latency_settings", LatencySettings))  # fmt: skip
        for name, cls in classes:
            if not isinstance(getattr(self, name), cls):
                raise TypeError(
                    f"Invalid `{name}`: expected a {cls.__name__}, received {type(getattr(self, name)).__name__}"
                )
        set_("methods", normalize_methods(self.methods))
        set_("exclude", normalize_exclude(self.exclude))
        set_("fixed", normalize_fixed(self.fixed))
        set_("min_rank_fraction", check_min_rank_fraction(self.min_rank_fraction))
        self.sampler_settings()  # validates the sampler's name, population and crossover

    @property
    def uses_latency(self) -> bool:
        return "latency" in self.objectives or self.constraints.max_latency_ms is not None

    def sampler_settings(self, *, seed: int | None = None) -> SamplerSettings:
        return SamplerSettings(
            self.sampler, self.population_size, self.crossover, self.seed if seed is None else seed
        )

    def space(self, analysis: ModelAnalysis) -> SearchSpace:
        """The search space of these settings on a model."""
        return SearchSpace.from_analysis(
            analysis,
            methods=self.methods,
            exclude=self.exclude,
            fixed=self.fixed,
            min_rank_fraction=self.min_rank_fraction,
        )

    def to_attrs(self) -> dict[str, object]:
        """JSON values, keyed by study user attribute name."""
        profile = dataclasses.asdict(self.profile_settings)
        values = {
            **{name: getattr(self, name) for name in ("proxy", "metric", "aggregator", "seed")},
            "objectives": list(self.objectives),
            "constraints": dataclasses.asdict(self.constraints),
            "methods": methods_record(self.methods),
            "profile_settings": {**profile, "methods": _list(profile["methods"])},
            "latency_settings": dataclasses.asdict(self.latency_settings),
            "exclude": list(self.exclude),
            "fixed": {layer: list(choice) for layer, choice in self.fixed.items()},
            "min_rank_fraction": self.min_rank_fraction,
            "sampler": {
                "name": self.sampler,
                "population_size": self.population_size,
                "crossover": self.crossover,
            },
            **{name: getattr(self, name) for name in (*FINGERPRINTS, "profile_key", "model_path")},
            "data_spec": None if self.data_spec is None else dataclasses.asdict(self.data_spec),
        }
        return {f"{ATTR}{name}": value for name, value in values.items()}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> SearchSettings:
        """The settings a study recorded; what older studies left out takes its meaning then.

        (Before 0.2 no methods were recorded: every method was searched.)
        """
        get = lambda name, default=None: attrs.get(f"{ATTR}{name}", default)
        profile = dict(get("profile_settings") or {})
        profile = {
            k: v for k, v in profile.items() if k in {f.name for f in dataclasses.fields(ProfileSettings)}
        }
        if profile.get("methods") is not None:
            profile["methods"] = tuple(profile["methods"])
        # Before data-aware factors every profile factorized the weights alone.
        profile.setdefault("factorization", "weights")
        sampler = get("sampler") or {}
        data_spec = get("data_spec")
        return cls(
            proxy=get("proxy") or "layerwise",
            metric=get("metric") or DEFAULT_METRIC,
            aggregator=get("aggregator") or DEFAULT_AGGREGATOR,
            objectives=tuple(get("objectives") or LEGACY_OBJECTIVES),
            constraints=Constraints(**(get("constraints") or {})),
            methods=get("methods"),
            profile_settings=ProfileSettings(**profile),
            latency_settings=LatencySettings(**(get("latency_settings") or {})),
            exclude=tuple(get("exclude") or ()),
            fixed={layer: tuple(choice) for layer, choice in (get("fixed") or {}).items()},
            min_rank_fraction=get("min_rank_fraction") or 0.0,
            sampler=sampler.get("name", "nsga2"),
            population_size=sampler.get("population_size", 50),
            crossover=sampler.get("crossover", "uniform"),
            seed=get("seed", 0),
            model_fingerprint=get("model_fingerprint"),
            data_fingerprint=get("data_fingerprint"),
            profile_key=get("profile_key"),
            model_path=get("model_path"),
            data_spec=DataSpec(**data_spec) if data_spec else None,
        )

    @classmethod
    def from_study(cls, study: optuna.Study) -> SearchSettings:
        return cls.from_attrs(study.user_attrs)

    def differences(self, wanted: SearchSettings) -> list[str]:
        """One line per setting of ``wanted`` that would make its trials incomparable with ours."""
        lines = []
        extra = (
            *(("seed",) if self.proxy == "model" else ()),
            *(("latency_settings",) if self.uses_latency else ()),
        )
        for name in (*COMPARED, *extra):
            lines += _compare(name, getattr(self, name), getattr(wanted, name))
        for name, label in FINGERPRINTS.items():
            ours, theirs = getattr(self, name), getattr(wanted, name)
            if ours and theirs and ours != theirs:
                lines.append(f"{label}: study has sha256 {ours[:12]}..., this run's has {theirs[:12]}...")
        legacy = self.model_fingerprint is None and self.profile_key and wanted.profile_key
        if legacy and self.profile_key != wanted.profile_key:
            lines.append(
                f"model weights or calibration data: study was profiled on {self.profile_key[:12]}..., "
                f"this run's give {wanted.profile_key[:12]}..."
            )
        return lines


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid `{name}`: expected one of {list(choices)}, received {value!r}")


def _list(value):
    return None if value is None else list(value)


def _shown(value: object) -> str:
    if isinstance(value, Mapping):
        return repr({k: list(v) if isinstance(v, tuple) else v for k, v in value.items()})
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _compare(name: str, ours: object, theirs: object) -> list[str]:
    if dataclasses.is_dataclass(ours):  # one line per differing field
        return [
            line
            for field in dataclasses.fields(ours)
            for line in _compare(
                f"{name}.{field.name}", getattr(ours, field.name), getattr(theirs, field.name)
            )
        ]
    if ours == theirs:
        return []
    return [f"{name}: study has {_shown(ours)}, this run asks {_shown(theirs)}"]


def settings_from(settings: SearchSettings | None, options: Mapping[str, object]) -> dict[str, object]:
    """The fields a caller asked for: every field of ``settings`` when given, then ``options``."""
    asked = (
        {} if settings is None else {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )
    names = {f.name for f in dataclasses.fields(SearchSettings)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(
            f"Invalid option {unknown[0]!r}: expected settings among {sorted(names)}, received {unknown}"
        )
    return {**asked, **options}
