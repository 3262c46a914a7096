"""Baseline plan builders: VBMF ranks (Kim et al. 2016 / MUSCO recipe).

Empirical variational Bayes matrix factorization (EVBMF, Nakajima et al. 2013) gives
the rank of the "signal" part of each unfolding analytically, with the noise
variance chosen by a 1-D bounded search. Tucker-2 on every conv (SVD on 1x1 convs)
and SVD on every Dense layer, at those ranks; a layer that its rank would not make
cheaper stays whole. MUSCO's "weakened" ranks (Gusak et al. 2019) move each rank back
towards the full one.
"""

from __future__ import annotations

import math

import numpy as np

from lrf_optuna.factorizers.conv_common import split_groups
from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.model._layer_specs import canonical_kernel

__all__ = ["evbmf_rank", "vbmf_plan", "weakened_rank"]

_TAU_BAR_FACTOR = 2.5129  # threshold constant of Nakajima et al. (2013), Eq. (21)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    shifted = x - (1 + alpha)
    return 0.5 * (shifted + np.sqrt(shifted**2 - 4 * alpha))


def _free_energy(sigma2: float, rows: int, cols: int, s: np.ndarray, residual: float, x_bar: float) -> float:
    alpha = rows / cols
    x = s**2 / (cols * sigma2)
    above, below = x[x > x_bar], x[x <= x_bar]
    tau_above = _tau(above, alpha)
    value = np.sum(below - np.log(below))
    value += np.sum(above - tau_above) + np.sum(np.log((tau_above + 1) / above))
    value += alpha * np.sum(np.log(tau_above / alpha + 1))
    return float(value + residual / (cols * sigma2) + (rows - len(s)) * np.log(sigma2))


def _golden_section(f, low: float, high: float, iterations: int = 100) -> float:
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(iterations):
        if f(c) < f(d):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    return (a + b) / 2


def evbmf_rank(matrix: np.ndarray) -> int:
    """Number of singular values EVBMF keeps as signal (0 when all look like noise)."""
    y = np.asarray(matrix, np.float64)
    if y.shape[0] > y.shape[1]:
        y = y.T
    rows, cols = y.shape
    s = np.linalg.svd(y, compute_uv=False)
    alpha = rows / cols
    tau_bar = _TAU_BAR_FACTOR * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    bound_index = int(min(math.ceil(rows / (1 + alpha)) - 1, rows)) - 1
    upper = float(np.sum(s**2)) / (rows * cols)
    tail = s[bound_index + 1 :] if bound_index + 1 < len(s) else s[-1:]
    lower = max(tail[0] ** 2 / (cols * x_bar), float(np.mean(tail**2)) / cols)
    if not 0 < lower < upper:
        return len(s) if upper > 0 else 0
    sigma2 = _golden_section(lambda v: _free_energy(v, rows, cols, s, 0.0, x_bar), lower, upper)
    threshold = math.sqrt(cols * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    return int(np.sum(s > threshold))


def weakened_rank(matrix: np.ndarray, weakening: float) -> int:
    """``full - weakening * (full - evbmf)``, floored (MUSCO): 1 gives the EVBMF rank, 0 the full one."""
    full = min(np.shape(matrix))
    return int(full - weakening * (full - evbmf_rank(matrix)))


def _conv_rank(kernel: np.ndarray, groups: int, weakening: float) -> int:
    ranks = []
    for part in split_groups(kernel, groups):
        cin, cout = part.shape[-2:]
        ranks.append(weakened_rank(np.moveaxis(part, -2, 0).reshape(cin, -1), weakening))
        ranks.append(weakened_rank(np.moveaxis(part, -1, 0).reshape(cout, -1), weakening))
    return max(ranks)


def vbmf_plan(analysis: ModelAnalysis, *, weakening: float = 1.0) -> dict[str, tuple[str, int]]:
    """Tucker-2 (SVD on 1x1 convs and Dense) at EVBMF ranks (at least 1).

    ``weakening`` < 1 keeps more of each rank (``weakened_rank``). As in MUSCO, a layer
    whose rank is above its useful range (the factorized layer would not be cheaper)
    stays as it is. Clamping such ranks down instead gave plans that remove almost nothing
    and still lose accuracy (LeNet-5, weakening 0.125: 0.6 % of the params removed, accuracy
    0.90 -> 0.66 before fine-tuning).
    """
    if not 0.0 <= weakening <= 1.0:
        raise ValueError(
            f"Invalid `weakening`: expected a number in [0, 1] (1: the EVBMF ranks, 0: full ranks), "
            f"received {weakening}"
        )
    plan = {}
    for name, spec in analysis.specs.items():
        geom = spec.geometry
        kernel = canonical_kernel(analysis.layers[name], geom)
        method = "tucker2" if "tucker2" in spec.methods else "svd"
        if method not in spec.methods or spec.useful_ranks.get(method, 0) == 0:
            continue
        rank = (
            _conv_rank(kernel, geom.groups, weakening)
            if geom.kind == "conv" and method == "tucker2"
            else weakened_rank(kernel.reshape(-1, kernel.shape[-1]), weakening)
        )
        if max(rank, 1) <= spec.useful_ranks[method]:
            plan[name] = (method, max(rank, 1))
    return plan
