"""The objective function: 2 to 4 of params, FLOPs, latency (min) and similarity (max).

FLOPs are counted as 2 x MACs (one multiply and one add per multiply-accumulate), the
convention of the paper and of most model-compression tables. Every trial records the
metrics it can compute that are not objectives as user attributes (``params``, ``flops``,
``similarity``, ``latency_ms``), so ``trial_metrics`` compares trials on any metric. Studies made before ``flops`` searched ``("params", "macs", "similarity")``: they
resume and report as they were (``macs`` stays a valid objective).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import optuna

from lrf_optuna.core._cost import Cost
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.search._space import SearchSpace

__all__ = [
    "DEFAULT_OBJECTIVES",
    "LEGACY_OBJECTIVES",
    "OBJECTIVES",
    "Constraints",
    "Objective",
    "check_objectives",
    "directions",
    "trial_metrics",
]

# Objective name -> Optuna direction. "macs": what studies searched before "flops".
OBJECTIVES = {"params": "minimize", "flops": "minimize", "latency": "minimize", "similarity": "maximize",
              "macs": "minimize"}  # fmt: skip
DEFAULT_OBJECTIVES = ("params", "flops", "similarity")
LEGACY_OBJECTIVES = ("params", "macs", "similarity")
USER_ATTR = {"latency": "latency_ms"}  # user attribute of each metric, where it differs
RECORDED = ("params", "flops", "similarity", "latency")  # MACs follow from FLOPs


def check_objectives(objectives: Iterable[str]) -> tuple[str, ...]:
    """``objectives`` as a tuple, or a ValueError naming what is wrong and the choices."""
    if isinstance(objectives, str):
        objectives = (objectives,)
    chosen = tuple(objectives)
    unknown = [name for name in chosen if name not in OBJECTIVES]
    valid = [name for name in OBJECTIVES if name != "macs"]
    if unknown:
        raise ValueError(f"Invalid `objectives`: expected names among {valid}, received unknown {unknown}")
    if not 2 <= len(chosen) <= 4 or len(set(chosen)) != len(chosen) or {"flops", "macs"} <= set(chosen):
        raise ValueError(
            f"Invalid `objectives`: expected 2 to 4 distinct names among {valid}, received {list(chosen)}"
        )
    return chosen


def directions(objectives: Sequence[str]) -> list[str]:
    return [OBJECTIVES[name] for name in objectives]


def trial_metrics(trial: optuna.trial.FrozenTrial, metric_names: Sequence[str] | None) -> dict[str, float]:
    """Params, FLOPs, MACs, similarity (and latency) of a COMPLETE trial, objectives or not.

    ``metric_names``: the study's (``study.metric_names``; None: a study made before names).
    """
    names = list(metric_names or LEGACY_OBJECTIVES)
    metrics = dict(zip(names, trial.values))
    for name in ("params", "flops", "macs", "similarity", "latency"):
        attr = USER_ATTR.get(name, name)
        if name not in metrics and attr in trial.user_attrs:
            metrics[name] = trial.user_attrs[attr]
    if "macs" in metrics and "flops" not in metrics:
        metrics["flops"] = 2 * metrics["macs"]
    if "flops" in metrics and "macs" not in metrics:
        metrics["macs"] = metrics["flops"] / 2
    return metrics


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Feasibility limits; a trial violating one is infeasible (NSGA-II ranks it last)."""

    max_params: int | None = None
    max_macs: int | None = None
    min_similarity: float | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def values(self, metrics: dict[str, float]) -> dict[str, float]:
        """Named constraint values, feasible when <= 0 (Optuna's convention)."""
        limits = {
            "max_params": ("params", 1), "max_macs": ("macs", 1), "max_flops": ("flops", 1),
            "max_latency_ms": ("latency", 1), "min_similarity": ("similarity", -1),
        }  # fmt: skip
        result = {}
        for name, (metric, sign) in limits.items():
            limit = getattr(self, name)
            if limit is not None:
                result[name] = float(sign * (metrics[metric] - limit))
        return result


class Objective:
    """Callable for ``study.optimize``; ``evaluate`` scores a plan without Optuna.

    ``latency``: anything with ``predict(plan) -> ms`` (a ``LatencyTable``), needed when
    ``objectives`` or ``constraints`` use latency.
    """

    def __init__(
        self,
        analysis: ModelAnalysis,
        space: SearchSpace,
        proxy: Callable[[dict[str, tuple[str, int]]], float],
        *,
        constraints: Constraints | None = None,
        objectives: Sequence[str] = DEFAULT_OBJECTIVES,
        latency=None,
    ):
        self.analysis, self.space, self.proxy = analysis, space, proxy
        self.constraints = constraints or Constraints()
        self.objectives = check_objectives(objectives)
        self.latency = latency
        if latency is None and ("latency" in self.objectives or self.constraints.max_latency_ms is not None):
            raise ValueError(
                "Invalid objective: expected a latency table for the `latency` objective or the "
                "`max_latency_ms` constraint, received none. Let run_study / make_objective build it."
            )
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

    def metrics(self, plan: dict[str, tuple[str, int]]) -> dict[str, float]:
        """Every metric of ``plan``: params, flops, macs, similarity, and latency with a table."""
        cost = self.cost(plan)
        metrics = {"params": cost.params, "flops": 2 * cost.macs, "macs": cost.macs}
        metrics["similarity"] = float(self.proxy(plan))
        if self.latency is not None:
            metrics["latency"] = float(self.latency.predict(plan))
        return metrics

    def evaluate(self, plan: dict[str, tuple[str, int]]) -> tuple[float, ...]:
        """The objective values of ``plan``, in the order of ``objectives``."""
        metrics = self.metrics(plan)
        return tuple(metrics[name] for name in self.objectives)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        plan = self.space.suggest(trial)
        metrics = self.metrics(plan)
        base = self.analysis.cost
        for name in RECORDED:  # the metrics that are not objectives (each attribute is a storage write)
            if name in metrics and name not in self.objectives:
                trial.set_user_attr(USER_ATTR.get(name, name), metrics[name])
        trial.set_user_attr("params_ratio", base.params / metrics["params"])
        trial.set_user_attr("macs_ratio", base.macs / max(metrics["macs"], 1))
        trial.set_user_attr("params_removed", 1.0 - metrics["params"] / base.params)
        trial.set_user_attr("methods", dict(Counter(m for m, _ in plan.values())))
        trial.set_user_attr("plan", json.dumps({k: f"{m}:{r}" for k, (m, r) in plan.items()}))
        constraints = self.constraints.values(metrics)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        if constraints:
            # optuna-dashboard 0.21 reads only the legacy list; mirror it so feasibility
            # shows there. Same values, so Optuna's feasibility is unchanged.
            trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(constraints.values()))
        return tuple(metrics[name] for name in self.objectives)
