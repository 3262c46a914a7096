"""Calibration statistics of a layer's inputs and the NumPy algebra of data-aware factors.

A layer multiplies each input vector ``p`` (a conv patch in the ``(*kernel_size, cin_g)``
order of the reshaped canonical kernel, or a Dense input) by its kernel ``W`` (``D x cout``).
On calibration data with second moment ``C = E[p p^T]`` the output error of an
approximation ``W'`` is ``E||(W - W')^T p||^2 = tr((W - W')^T C (W - W'))``: the weight
error weighted by ``C``. The data-aware factorizers minimize that instead of
``||W - W'||^2``, keeping the very same chain of stages (so the cost is unchanged):

- whitening: with ``S = C^(1/2)`` the error is ``||S W - S W'||^2``; a truncated SVD of
  ``S W`` mapped back (``W V_r V_r^T``, ``V_r`` the top eigenvectors of ``W^T C W``:
  output PCA) is the closed-form optimum for any SVD-type chain;
- least squares: when the rest of the chain is fixed, the last stage that minimizes the
  error is a linear least-squares solution (``fit_last``).

``C`` is regularized (``regularized``) to ``C + RIDGE * trace(C)/D * I``: singular
moments (dead ReLU channels, fewer vectors than ``D``) stay safe, and in directions the
calibration data never excites the fit falls back to keeping the weights.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "RIDGE",
    "ColumnFits",
    "LayerStatistics",
    "fit_last",
    "output_error",
    "output_pca",
    "regularized",
    "sqrt_and_inverse",
    "whitened_svd",
]

# Relative ridge: small against the mean eigenvalue of C, large enough that eigh/solve
# never meet an exactly singular matrix (float64).
RIDGE = 1e-3


@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """Uncentered second moment of the vectors a layer's kernel multiplies, per group.

    ``moments[g]`` is ``D x D`` with ``D = prod(kernel_size) * in_per_group`` for
    convolutions (patch order ``(*kernel_size, cin_g)``, as the canonical kernel
    reshaped to ``(D, cout)``) and ``D = in`` for Dense kernels and separable pointwise
    kernels; ``vectors`` is how many vectors were averaged, ``shrinkage`` the weight (per
    group) of the identity already mixed into the moments
    (``lrf_optuna.model._statistics.ledoit_wolf``).
    """

    moments: np.ndarray
    vectors: int
    shrinkage: tuple[float, ...] = ()

    def __post_init__(self):
        if self.moments.ndim != 3 or self.moments.shape[1] != self.moments.shape[2]:
            raise ValueError(
                f"Invalid `moments`: expected an array (groups, D, D), received shape {self.moments.shape}"
            )
        if not np.isfinite(self.moments).all():
            raise ValueError("Invalid `moments`: expected finite values, received NaN or Inf")

    def channel_moments(self, kernel_positions: int) -> np.ndarray:
        """``(groups, cin_g, cin_g)``: the input channels' moment, averaged over kernel offsets."""
        groups, dim, _ = self.moments.shape
        cin = dim // kernel_positions
        blocks = self.moments.reshape(groups, kernel_positions, cin, kernel_positions, cin)
        return np.einsum("gkakb->gab", blocks) / kernel_positions


def regularized(moment: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """``moment + ridge * trace/D * I`` in float64 (identity when the moment is zero)."""
    moment = np.asarray(moment, np.float64)
    dim = moment.shape[0]
    scale = float(np.trace(moment)) / dim
    return moment + (ridge * scale if scale > 0 else 1.0) * np.eye(dim)


def sqrt_and_inverse(moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C^(1/2), C^(-1/2))`` of a regularized (positive definite) moment."""
    values, vectors = np.linalg.eigh(moment)
    root = np.sqrt(np.maximum(values, values.max() * 1e-15))
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def output_pca(kernel: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Eigenvectors of ``W^T C W``, strongest first: ``W V_r V_r^T`` is the best rank-r
    kernel for the output error under ``C`` (the SVD of ``C^(1/2) W`` mapped back)."""
    _, vectors = np.linalg.eigh(kernel.T @ moment @ kernel)
    return vectors[:, ::-1]


def fit_last(
    design: np.ndarray, moment: np.ndarray, kernel: np.ndarray, *, base: float | None = None
) -> tuple[np.ndarray, float]:
    """``(L, error)``: ``L`` minimizes ``tr((W - X L)^T C (W - X L))`` for a fixed ``design`` ``X``.

    ``X`` (D x m) is the linear map the chain computes before its last stage and ``L``
    (m x cout) that stage's matrix; ``error`` is the minimum, from ``base = tr(W^T C W)``
    (computed when not given). ``C`` must be regularized, so the solve is well posed
    whenever ``X`` has full column rank (lstsq otherwise).
    """
    weighted = moment @ design
    gram, cross = design.T @ weighted, weighted.T @ kernel
    if base is None:
        base = output_error(kernel, np.zeros_like(kernel, np.float64), moment)
    return _solve_fit(gram, cross, base)


def _solve_fit(gram: np.ndarray, cross: np.ndarray, base: float) -> tuple[np.ndarray, float]:
    """``(L, error)`` of the normal equations ``gram L = cross`` (lstsq when singular)."""
    try:
        last = np.linalg.solve(gram, cross)
    except np.linalg.LinAlgError:
        last = np.linalg.lstsq(gram, cross, rcond=None)[0]
    error = base - 2 * float(np.sum(last * cross)) + float(np.sum(last * (gram @ last)))
    return last, error


@dataclasses.dataclass(frozen=True)
class ColumnFits:
    """``fit_last`` for every design made of columns of one full design ``X``.

    ``X^T C X`` and ``X^T C W`` are computed once (``D^2 x m`` work, in ``prepare``); each
    rank's fit then slices them and solves a small system, instead of redoing ``C @ design``
    per rank (the bulk of a 3x3x512x512 layer's profile time). Same normal equations, so the
    same ``(L, error)`` as ``fit_last`` up to float rounding.
    """

    gram: np.ndarray  # X^T C X
    cross: np.ndarray  # X^T C W
    base: float  # tr(W^T C W)

    @classmethod
    def of(cls, design: np.ndarray, moment: np.ndarray, kernel: np.ndarray, weighted_kernel: np.ndarray):
        """``weighted_kernel`` is ``C @ W`` (shared by the candidates of one layer)."""
        gram = design.T @ (moment @ design)
        return cls(gram, design.T @ weighted_kernel, float(np.sum(kernel * weighted_kernel)))

    def fit(self, columns: np.ndarray) -> tuple[np.ndarray, float]:
        """``fit_last`` of the design ``X[:, columns]``."""
        return _solve_fit(self.gram[np.ix_(columns, columns)], self.cross[columns], self.base)


def whitened_svd(kernel: np.ndarray, moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)`` like ``balanced_svd`` but optimal for the output error under ``C``.

    ``left[:, :r] @ right[:r] = W V_r V_r^T`` (``output_pca``); columns are scaled so
    that both factors of a rank-one term have the same norm, as in ``balanced_svd``.
    """
    kernel = np.asarray(kernel, np.float64)
    vectors = output_pca(kernel, moment)
    left = kernel @ vectors
    norms = np.linalg.norm(left, axis=0)
    scale = np.sqrt(np.where(norms > 0, norms, 1.0))
    return left / scale, scale[:, None] * vectors.T


def output_error(kernel: np.ndarray, approx: np.ndarray, moment: np.ndarray) -> float:
    """``tr((W - W')^T C (W - W'))``: the mean squared output error under ``C``."""
    delta = np.asarray(kernel, np.float64) - approx
    return float(np.sum(delta * (moment @ delta)))
