"""Seed plans for the search: the hull of the layerwise proxy's front, found per layer.

With the layerwise proxy, similarity is an aggregate of per-layer scores (a sum, up to a
monotone map, for the "mean", "weighted" and "product" aggregators) and params and MACs
are sums over layers. So for a price ``mu`` on cost, the plan maximizing
``similarity - mu * cost`` is found one layer at a time (Lagrangian relaxation), and
sweeping ``mu`` walks the convex hull of the exact Pareto front in milliseconds, every
method and rank of every layer considered. NSGA-II then fills in between these plans.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lrf_optuna.core._plan import NONE
from lrf_optuna.search._objective import Objective
from lrf_optuna.similarity._proxy import LayerwiseProxy

__all__ = ["hull_params"]

# Cost = share * params / base params + (1 - share) * MACs / base MACs: the front's two ends
# and its middle, so the seeds cover the 3-D front rather than one of its edges.
COST_SHARES = (1.0, 0.5, 0.0)


@dataclasses.dataclass(frozen=True)
class _Candidates:
    """One layer's choices: (method, rank), its per-layer score and its cost savings."""

    choices: list[tuple[str, int]]
    score: np.ndarray
    params_saved: np.ndarray
    macs_saved: np.ndarray


def _score_map(aggregator: str, weights: np.ndarray):
    """Per-layer terms whose sum orders plans as the aggregate does (None: not separable)."""
    if aggregator == "mean":
        return lambda s, i: s
    if aggregator == "weighted":
        return lambda s, i: s * weights[i] / weights.sum()
    if aggregator == "product":
        return lambda s, i: np.log(np.maximum(s, 1e-12))
    return None


def _layer_candidates(objective: Objective, proxy: LayerwiseProxy, index: int, to_term) -> _Candidates:
    choices = objective.space.layers[index]
    name, base = choices.name, objective.analysis.cost
    rows = [(NONE, 0)] + [(m, r) for m in choices.useful_ranks for r in choices.ranks(m)]
    scores, params, macs = [1.0], [0.0], [0.0]
    for method, rank in rows[1:]:
        saved = base - objective.cost({name: (method, rank)})
        scores.append(proxy.layer_similarity(name, method, rank))
        params.append(saved.params / base.params)
        macs.append(saved.macs / max(base.macs, 1))
    layer = proxy.layers.index(name)
    return _Candidates(rows, to_term(np.array(scores), layer), np.array(params), np.array(macs))


def hull_params(objective: Objective, *, count: int = 32) -> list[dict[str, object]]:
    """Trial params (for ``study.enqueue_trial``) of up to ``count`` plans per cost share.

    Empty when the proxy has no per-layer scores (the model proxy) or they do not add up
    (the "min" aggregator).
    """
    proxy = objective.proxy
    if not isinstance(proxy, LayerwiseProxy):
        return []
    to_term = _score_map(proxy.aggregator, proxy.weights)
    if to_term is None:
        return []
    layers = [_layer_candidates(objective, proxy, i, to_term) for i in range(len(objective.space.layers))]
    seen, found = set(), []
    for share in COST_SHARES:
        for price in _prices(layers, share, count):
            plan = tuple(_best(layer, share, price) for layer in layers)
            if plan not in seen and any(method != NONE for method, _ in plan):  # all-"none" is an anchor
                seen.add(plan)
                found.append(_params(objective, plan))
    return found


def _gain(layer: _Candidates, share: float) -> np.ndarray:
    return share * layer.params_saved + (1.0 - share) * layer.macs_saved


def _best(layer: _Candidates, share: float, price: float) -> tuple[str, int]:
    return layer.choices[int(np.argmax(layer.score + price * _gain(layer, share)))]


def _prices(layers: list[_Candidates], share: float, count: int) -> np.ndarray:
    """``count`` prices spread (log scale) over those at which some layer changes its choice."""
    ratios = []
    for layer in layers:
        gain, loss = _gain(layer, share)[1:], layer.score[0] - layer.score[1:]
        useful = (gain > 0) & (loss > 0)
        ratios.extend((loss[useful] / gain[useful]).tolist())
    if not ratios:
        return np.array([])
    low, high = min(ratios), max(ratios)
    return np.geomspace(low, high * (1 + 1e-9), count) if high > low else np.array([low])


def _params(objective: Objective, plan: tuple[tuple[str, int], ...]) -> dict[str, object]:
    params: dict[str, object] = {}
    for choices, (method, rank) in zip(objective.space.layers, plan):
        params[choices.method_param] = method
        params[choices.rank_param] = rank if method != NONE else choices.min_rank
    return params
