"""The static Optuna search space: two parameters per compressible layer.

``"{layer}.method"`` is categorical (methods with at least one useful rank, plus
"none"); ``"{layer}.rank"`` is an integer with fixed bounds ``1..R`` where ``R`` is
the largest useful rank of any method of that layer. Both are suggested in every
trial, whatever the method, so NSGA-II's intersection search space holds every
parameter. A rank above the chosen method's useful range is clamped to it: the
plan stays strictly cheaper than the layer, and the trial records the rank used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import optuna

from lrf_optuna.analysis import ModelAnalysis
from lrf_optuna.plan import NONE

__all__ = ["DEFAULT_METHODS", "LayerChoices", "SearchSpace", "methods_record"]

# Dense layers default to SVD alone: on all three reference models, fronts that could also
# pick tensor-train or tensorized Tucker for dense layers kept less accuracy at the same
# params removed (README, "Measured results"). ``methods=None`` searches every method.
DEFAULT_METHODS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"conv": ("tucker2", "cp", "svd", "spatial_svd"), "dense": ("svd",)}
)


def methods_record(methods: Iterable[str] | Mapping[str, Iterable[str]] | None) -> list | dict | None:
    """``methods`` as JSON (a study user attr) that ``SearchSpace.from_analysis`` reads back."""
    if methods is None:
        return None
    if isinstance(methods, Mapping):
        return {kind: list(names) for kind, names in methods.items()}
    return list(methods)


def _allowed(methods, kind: str) -> set[str] | None:
    if methods is None:
        return None
    if isinstance(methods, Mapping):
        return set(methods.get(kind, ()))
    return set(methods)


@dataclasses.dataclass(frozen=True)
class LayerChoices:
    name: str
    methods: tuple[str, ...]  # searchable methods, "none" last
    useful_ranks: dict[str, int]

    @property
    def max_rank(self) -> int:
        return max(self.useful_ranks.values())

    @property
    def method_param(self) -> str:
        return f"{self.name}.method"

    @property
    def rank_param(self) -> str:
        return f"{self.name}.rank"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    layers: tuple[LayerChoices, ...]

    @classmethod
    def from_analysis(
        cls, analysis: ModelAnalysis, *, methods: Iterable[str] | Mapping[str, Iterable[str]] | None = None
    ) -> SearchSpace:
        """Every compressible layer with a useful rank.

        ``methods`` restricts the choice: method names, or ``{"conv": [...], "dense": [...]}``
        per layer kind (e.g. a single-method baseline: ``{"conv": ["cp"], "dense": ["svd"]}``).
        """
        layers = []
        for spec in analysis.specs.values():
            allowed = _allowed(methods, spec.kind)
            useful = {
                m: r for m, r in spec.useful_ranks.items() if r > 0 and (allowed is None or m in allowed)
            }
            if useful:
                layers.append(LayerChoices(spec.name, (*useful, NONE), useful))
        if not layers:
            raise ValueError(
                "Invalid model for search: expected at least one layer that a method can make "
                f"cheaper, received layers {list(analysis.specs)} (refused: {analysis.refused})"
            )
        return cls(tuple(layers))

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        result = {}
        for layer in self.layers:
            result[layer.method_param] = optuna.distributions.CategoricalDistribution(layer.methods)
            result[layer.rank_param] = optuna.distributions.IntDistribution(1, layer.max_rank)
        return result

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, tuple[str, int]]:
        """The plan of ``trial`` (a Trial or a FixedTrial): only the factorized layers."""
        plan = {}
        for layer in self.layers:
            method = trial.suggest_categorical(layer.method_param, layer.methods)
            rank = trial.suggest_int(layer.rank_param, 1, layer.max_rank)
            if method != NONE:
                plan[layer.name] = (method, min(rank, layer.useful_ranks[method]))
        return plan

    def plan_of(self, trial: optuna.trial.FrozenTrial | optuna.trial.BaseTrial) -> dict[str, tuple[str, int]]:
        """Replay: the same plan a finished trial scored, through a FixedTrial."""
        if isinstance(trial, optuna.trial.FrozenTrial):
            missing = sorted(set(self.distributions()) - set(trial.params))
            if missing:
                raise ValueError(
                    f"Invalid trial {trial.number}: expected parameters for every layer of this "
                    f"model, missing {missing[:5]}{'...' if len(missing) > 5 else ''}. "
                    "Was the study made for another model?"
                )
            trial = optuna.trial.FixedTrial(trial.params, trial.number)
        return self.suggest(trial)

    def uniform_params(self, method: str, fraction: float, fallback: str = "svd") -> dict[str, object]:
        """Params giving every layer ``method`` (else ``fallback``, else none) at a rank fraction."""
        params: dict[str, object] = {}
        for layer in self.layers:
            chosen = method if method in layer.useful_ranks else fallback
            if chosen not in layer.useful_ranks:
                chosen = NONE
            top = layer.useful_ranks.get(chosen, 1)
            params[layer.method_param] = chosen
            params[layer.rank_param] = max(1, round(fraction * top))
        return params
