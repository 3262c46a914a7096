"""The static Optuna search space: two parameters per compressible layer.

``"{layer}.method"`` is categorical (methods with at least one useful rank, plus
"none"); ``"{layer}.rank"`` is an integer with fixed bounds ``1..R`` where ``R`` is
the largest useful rank of any method of that layer. Both are suggested in every
trial, whatever the method, so NSGA-II's intersection search space holds every
parameter. A rank above the chosen method's useful range is clamped to it: the
plan stays strictly cheaper than the layer, and the trial records the rank used.

Per-layer control: ``exclude`` keeps layers whole (no parameters), ``fixed`` forces a
layer's (method, rank) (no parameters; it is in every plan), and ``min_rank_fraction``
``f`` offers a method with useful ranks ``1..U`` only the ranks ``ceil(f * U)..U``
(at least 1): the rank parameter's lower bound is the smallest of these floors, and a
rank below the chosen method's floor is raised to it, as one above ``U`` is lowered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import optuna

from lrf_optuna.core._plan import NONE
from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.search._space_options import (
    check_fixed,
    check_min_rank_fraction,
    lowest_rank,
    match_exclude,
    normalize_exclude,
    normalize_fixed,
    normalize_methods,
)

__all__ = ["DEFAULT_METHODS", "LayerChoices", "SearchSpace", "methods_record"]

# Dense layers default to SVD alone: on all three reference models, fronts that could also
# pick tensor-train or tensorized Tucker for dense layers kept less accuracy at the same
# params removed (docs/results.md). ``methods=None`` searches every method.
DEFAULT_METHODS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"conv": ("tucker2", "cp", "svd", "spatial_svd"), "dense": ("svd",)}
)


def methods_record(methods: Iterable[str] | Mapping[str, Iterable[str]] | None) -> list | dict | None:
    """``methods`` as JSON (a study user attr) that ``SearchSpace.from_analysis`` reads back."""
    methods = normalize_methods(methods)
    return None if methods is None else {kind: list(names) for kind, names in methods.items()}


@dataclasses.dataclass(frozen=True)
class LayerChoices:
    name: str
    methods: tuple[str, ...]  # searchable methods, "none" last
    useful_ranks: dict[str, int]
    lowest_ranks: dict[str, int] = dataclasses.field(default_factory=dict)  # absent: 1

    @property
    def max_rank(self) -> int:
        return max(self.useful_ranks.values())

    @property
    def min_rank(self) -> int:
        return min(self.lowest(m) for m in self.useful_ranks)

    def lowest(self, method: str) -> int:
        return self.lowest_ranks.get(method, 1)

    def ranks(self, method: str) -> range:
        """The ranks offered for ``method``."""
        return range(self.lowest(method), self.useful_ranks[method] + 1)

    def clamp(self, method: str, rank: int) -> int:
        return max(self.lowest(method), min(rank, self.useful_ranks[method]))

    @property
    def method_param(self) -> str:
        return f"{self.name}.method"

    @property
    def rank_param(self) -> str:
        return f"{self.name}.rank"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    layers: tuple[LayerChoices, ...]
    fixed: Mapping[str, tuple[str, int]] = dataclasses.field(default_factory=dict)  # in every plan

    @classmethod
    def from_analysis(
        cls,
        analysis: ModelAnalysis,
        *,
        methods: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
        exclude: str | Iterable[str] | None = (),
        fixed: Mapping[str, tuple[str, int]] | None = None,
        min_rank_fraction: float = 0.0,
    ) -> SearchSpace:
        """Every compressible layer with a useful rank, less the excluded and fixed ones.

        ``methods`` restricts the choice: method names, or ``{"conv": [...], "dense": [...]}``
        per layer kind (e.g. a single-method baseline: ``{"conv": ["cp"], "dense": ["svd"]}``).
        ``exclude``: layer names or fnmatch patterns kept whole; ``fixed``: ``{layer: (method,
        rank)}`` forced in every plan; ``min_rank_fraction``: see the module docstring.
        """
        allowed = normalize_methods(methods)
        excluded = match_exclude(normalize_exclude(exclude), analysis)
        fixed = check_fixed(normalize_fixed(fixed), analysis, excluded)
        fraction = check_min_rank_fraction(min_rank_fraction)
        layers = []
        for spec in analysis.specs.values():
            if spec.name in excluded or spec.name in fixed:
                continue
            useful = {
                m: r
                for m, r in spec.useful_ranks.items()
                if r > 0 and (allowed is None or m in allowed[spec.kind])
            }
            if useful:
                lowest = {m: lowest_rank(fraction, r) for m, r in useful.items()}
                layers.append(LayerChoices(spec.name, (*useful, NONE), useful, lowest))
        if not layers:
            kept = f" once {sorted(excluded | set(fixed))} are excluded or fixed" if excluded or fixed else ""
            raise ValueError(
                "Invalid model for search: expected at least one layer that a method can make "
                f"cheaper{kept}, received layers {list(analysis.specs)} (refused: {analysis.refused})"
            )
        return cls(tuple(layers), fixed)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        result = {}
        for layer in self.layers:
            result[layer.method_param] = optuna.distributions.CategoricalDistribution(layer.methods)
            result[layer.rank_param] = optuna.distributions.IntDistribution(layer.min_rank, layer.max_rank)
        return result

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, tuple[str, int]]:
        """The plan of ``trial`` (a Trial or a FixedTrial): only the factorized layers."""
        plan = dict(self.fixed)
        for layer in self.layers:
            method = trial.suggest_categorical(layer.method_param, layer.methods)
            rank = trial.suggest_int(layer.rank_param, layer.min_rank, layer.max_rank)
            if method != NONE:
                plan[layer.name] = (method, layer.clamp(method, rank))
        return plan

    def plan_of(self, trial: optuna.trial.FrozenTrial | optuna.trial.BaseTrial) -> dict[str, tuple[str, int]]:
        """Replay: the same plan a finished trial scored, through a FixedTrial."""
        if isinstance(trial, optuna.trial.FrozenTrial):
            self._check_trial(trial)
            trial = optuna.trial.FixedTrial(trial.params, trial.number)
        return self.suggest(trial)

    def _check_trial(self, trial: optuna.trial.FrozenTrial) -> None:
        """A trial of another space would replay as another plan: refuse it."""
        expected = self.distributions()
        missing = sorted(set(expected) - set(trial.params))
        extra = sorted(set(trial.params) - set(expected))
        hint = (
            "Replay it with its study's settings (plan_from_trial(model, trial, study=study)); "
            "was the study made for another model?"
        )
        if missing or extra:
            names = missing or extra
            raise ValueError(
                f"Invalid trial {trial.number}: expected parameters for exactly the searched layers of "
                f"this space, {'missing' if missing else 'received the unsearched'} "
                f"{names[:5]}{'...' if len(names) > 5 else ''}. {hint}"
            )
        for name, distribution in expected.items():
            value = trial.params[name]
            recorded = trial.distributions.get(name)
            floor_moved = (
                name.endswith(".rank") and getattr(recorded, "low", distribution.low) != distribution.low
            )
            if floor_moved or not _offers(distribution, value):
                raise ValueError(
                    f"Invalid trial {trial.number}: its {name} = {value!r} (searched over "
                    f"{recorded!r}) is not of this space ({distribution!r}). {hint}"
                )

    def uniform_params(self, method: str, fraction: float, fallback: str = "svd") -> dict[str, object]:
        """Params giving every layer ``method`` (else ``fallback``, else none) at a rank fraction."""
        params: dict[str, object] = {}
        for layer in self.layers:
            chosen = method if method in layer.useful_ranks else fallback
            if chosen not in layer.useful_ranks:
                chosen = NONE
            rank = layer.min_rank
            if chosen != NONE:
                rank = layer.clamp(chosen, max(1, round(fraction * layer.useful_ranks[chosen])))
            params[layer.method_param] = chosen
            params[layer.rank_param] = rank
        return params


def _offers(distribution: optuna.distributions.BaseDistribution, value: object) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high
