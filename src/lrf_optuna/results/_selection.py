"""Pick one trial of a finished search: the Pareto knee by default."""

from __future__ import annotations

import numpy as np
import optuna

from lrf_optuna.search._objective import trial_metrics
from lrf_optuna.search._study import FINETUNED_FROM

__all__ = ["feasible_trials", "pareto_trials", "select_trial", "spread_trials"]


def _is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(value <= 0.0 for value in trial.constraints.values())


def feasible_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE, feasible search trials (fine-tuning records excluded)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [t for t in trials if _is_feasible(t) and FINETUNED_FROM not in t.user_attrs]


def _by_cost(metrics: dict[str, float]) -> tuple[float, float]:
    return (metrics["params"], metrics["flops"])


def _non_dominated(points: np.ndarray) -> list[bool]:
    """Which rows no other row beats (<= in every column, < in one; every column minimized)."""
    return [not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1)) for p in points]


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated feasible trials on the study's objectives, by params then FLOPs."""
    trials = feasible_trials(study)
    signs = np.array([1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions])
    points = np.array([t.values for t in trials], dtype=float).reshape(len(trials), -1) * signs
    front = [t for t, kept in zip(trials, _non_dominated(points), strict=True) if kept]
    return sorted(front, key=lambda t: _by_cost(trial_metrics(t, study.metric_names)))


def spread_trials(
    trials: list[optuna.trial.FrozenTrial], count: int, *, metric_names: list[str] | None = None
) -> list[optuna.trial.FrozenTrial]:
    """At most ``count`` trials evenly spaced along ``trials`` sorted by params, both ends kept.

    ``metric_names``: their study's (``study.metric_names``).
    """
    if count < 1:
        raise ValueError(f"Invalid `count`: expected >= 1, received {count}")
    ordered = sorted(trials, key=lambda t: _by_cost(trial_metrics(t, metric_names)))
    picks = np.unique(np.linspace(0, len(ordered) - 1, min(count, len(ordered))).round().astype(int))
    return [ordered[i] for i in picks]


def _knee_cost(metric_names) -> str:
    """The knee's cost axis: ``latency`` when the study searched it (what the user asked to
    reduce), else ``params`` (every other study, as before)."""
    return "latency" if "latency" in (metric_names or ()) else "params"


def _knee(front: list[optuna.trial.FrozenTrial], metric_names) -> optuna.trial.FrozenTrial:
    """Kneedle on (cost, similarity), cost as ``_knee_cost`` says: the point farthest above the
    chord joining the cheapest and the most similar ends of the front (diminishing returns start).

    Only trials that no other trial beats on both cost and similarity count: a trial of the
    search's front can be there for another objective (fewer params) while another is both
    cheaper and more similar (a factorized plan slower than the original, in a latency search).
    Such a trial is never the knee, and it must not be the chord's costly end either.
    """
    cost = _knee_cost(metric_names)
    metrics = {t.number: trial_metrics(t, metric_names) for t in front}
    points = np.array([[metrics[t.number][cost], -metrics[t.number]["similarity"]] for t in front])
    front = [t for t, kept in zip(front, _non_dominated(points), strict=True) if kept]
    ordered = sorted(front, key=lambda t: (metrics[t.number][cost], metrics[t.number]["params"]))
    if len(ordered) < 3:
        return ordered[-1]
    points = np.array([[metrics[t.number][cost], metrics[t.number]["similarity"]] for t in ordered])
    span = np.ptp(points, axis=0)
    x, y = ((points - points.min(axis=0)) / np.where(span > 0, span, 1.0)).T
    chord = y[0] + (y[-1] - y[0]) * (x - x[0]) / max(x[-1] - x[0], 1e-12)
    return ordered[int(np.argmax(y - chord))]


def select_trial(
    study: optuna.Study,
    *,
    trial_number: int | None = None,
    min_similarity: float | None = None,
    max_params: int | None = None,
) -> optuna.trial.FrozenTrial:
    """The knee of the Pareto front, or: a trial number; the cheapest trial with similarity >=
    ``min_similarity``; the most similar with params <= ``max_params``.

    Cost is the predicted latency when latency is one of the study's objectives, else params
    (then FLOPs).
    """
    chosen = [o for o in (trial_number, min_similarity, max_params) if o is not None]
    if len(chosen) > 1:
        raise ValueError(
            "Invalid selection: expected at most one of trial_number, min_similarity, max_params"
        )
    trials = feasible_trials(study)
    if not trials:
        raise ValueError(
            f"Invalid study '{study.study_name}': expected at least one complete feasible trial, "
            "received none. Run the search first (lrf-optuna search)."
        )
    if trial_number is not None:
        match = [t for t in trials if t.number == trial_number]
        if not match:
            numbers = sorted(t.number for t in trials)
            raise ValueError(
                f"Invalid `trial_number`: expected a complete feasible trial "
                f"({numbers[0]}..{numbers[-1]}, see the dashboard), received {trial_number}"
            )
        return match[0]
    metrics = {t.number: trial_metrics(t, study.metric_names) for t in trials}
    if min_similarity is not None:
        ok = [t for t in trials if metrics[t.number]["similarity"] >= min_similarity]
        best = max(m["similarity"] for m in metrics.values())
        if not ok:
            raise ValueError(
                f"Invalid `min_similarity`: expected <= {best:.4f} (best found), received {min_similarity}"
            )
        cost = _knee_cost(study.metric_names)  # the cheapest by what the search reduced
        return min(
            ok,
            key=lambda t: (
                metrics[t.number][cost],
                *_by_cost(metrics[t.number]),
                -metrics[t.number]["similarity"],
            ),
        )
    if max_params is not None:
        ok = [t for t in trials if metrics[t.number]["params"] <= max_params]
        if not ok:
            smallest = min(int(m["params"]) for m in metrics.values())
            raise ValueError(
                f"Invalid `max_params`: expected >= {smallest} (smallest found), received {max_params}"
            )
        return max(ok, key=lambda t: (metrics[t.number]["similarity"], -metrics[t.number]["params"]))
    return _knee(pareto_trials(study), study.metric_names)
