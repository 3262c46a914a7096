"""The three-objective function: params (min), MACs (min), similarity (max)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable

import optuna

from lrf_optuna.analysis import ModelAnalysis
from lrf_optuna.cost import Cost
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.search_space import SearchSpace

__all__ = ["METRIC_NAMES", "Constraints", "Objective"]

METRIC_NAMES = ["params", "macs", "similarity"]
DIRECTIONS = ["minimize", "minimize", "maximize"]


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Feasibility limits; a trial violating one is infeasible (NSGA-II ranks it last)."""

    max_params: int | None = None
    max_macs: int | None = None
    min_similarity: float | None = None

    def values(self, cost: Cost, similarity: float) -> dict[str, float]:
        """Named constraint values, feasible when <= 0 (Optuna's convention)."""
        result = {}
        if self.max_params is not None:
            result["max_params"] = float(cost.params - self.max_params)
        if self.max_macs is not None:
            result["max_macs"] = float(cost.macs - self.max_macs)
        if self.min_similarity is not None:
            result["min_similarity"] = float(self.min_similarity - similarity)
        return result


class Objective:
    """Callable for ``study.optimize``; ``evaluate`` scores a plan without Optuna."""

    def __init__(
        self,
        analysis: ModelAnalysis,
        space: SearchSpace,
        proxy: Callable[[dict[str, tuple[str, int]]], float],
        *,
        constraints: Constraints | None = None,
    ):
        self.analysis, self.space, self.proxy = analysis, space, proxy
        self.constraints = constraints or Constraints()
        self._deltas: dict[tuple[str, str, int], Cost] = {}

    def _delta(self, layer: str, method: str, rank: int) -> Cost:
        key = (layer, method, rank)
        if key not in self._deltas:
            spec = self.analysis.specs[layer]
            new = get_factorizer(spec.geometry.kind, method).cost(spec.geometry, rank)
            self._deltas[key] = new - spec.cost
        return self._deltas[key]

    def cost(self, plan: dict[str, tuple[str, int]]) -> Cost:
        total = self.analysis.cost
        for layer, (method, rank) in plan.items():
            total = total + self._delta(layer, method, rank)
        return total

    def evaluate(self, plan: dict[str, tuple[str, int]]) -> tuple[int, int, float]:
        cost = self.cost(plan)
        return cost.params, cost.macs, float(self.proxy(plan))

    def __call__(self, trial: optuna.Trial) -> tuple[int, int, float]:
        plan = self.space.suggest(trial)
        params, macs, similarity = self.evaluate(plan)
        base = self.analysis.cost
        trial.set_user_attr("params_ratio", base.params / params)
        trial.set_user_attr("macs_ratio", base.macs / max(macs, 1))
        trial.set_user_attr("params_removed", 1.0 - params / base.params)
        trial.set_user_attr("methods", dict(Counter(m for m, _ in plan.values())))
        trial.set_user_attr("plan", json.dumps({k: f"{m}:{r}" for k, (m, r) in plan.items()}))
        constraints = self.constraints.values(Cost(params, macs), similarity)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        if constraints:
            # optuna-dashboard 0.21 reads only the legacy list; mirror it so feasibility
            # shows there. Same values, so Optuna's feasibility is unchanged.
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(constraints.values()))
        return params, macs, similarity
