"""Spatial SVD: a kh x 1 conv then a 1 x kw conv (Jaderberg et al. 2014, as in AIMET)."""

from __future__ import annotations

import dataclasses

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    balanced_svd,
    compose_chain,
    conv_stages,
    pointwise_reason,
    split_groups,
    stack_groups,
)
from lrf_optuna.factorizers.data_aware import ColumnFits, fit_last, regularized, whitened_svd


@register
class SpatialSVD(Factorizer):
    name = "spatial_svd"
    kinds = ("conv",)

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        if geom.spatial_rank != 2:
            return (
                "spatial SVD splits a 2-D kernel into kh x 1 and 1 x kw; "
                f"this layer has {geom.spatial_rank} spatial dimension(s)"
            )
        return pointwise_reason(geom)

    def full_rank(self, geom: LayerGeometry) -> int:
        kh, kw = geom.kernel_size
        return min(kh * geom.in_per_group, kw * geom.out_per_group)

    def stages(self, geom, rank):
        r, g = min(rank, self.full_rank(geom)), geom.groups
        return conv_stages(geom, (r * g, g, "axis0"), (geom.out_channels, g, "axis1"))

    def prepare(self, kernel, geom, *, seed, stats=None):
        kh, kw = geom.kernel_size
        factors = []
        for part in split_groups(kernel, geom.groups):
            cin, cout = part.shape[-2:]
            matrix = part.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
            factors.append(balanced_svd(matrix))
        if stats is None:
            return factors
        # the profile's ranks never pass the useful maximum: fits up to it are precomputed
        bound = max(1, min(self.useful_max_rank(geom), self.full_rank(geom)))
        return [
            _AwareGroup.of(part, moment, weight_left, bound)
            for part, moment, (weight_left, _) in zip(
                split_groups(kernel, geom.groups), stats.moments, factors
            )
        ]

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        kh, kw = geom.kernel_size
        per_group = []
        for group in prepared:
            if isinstance(group, _AwareGroup):
                per_group.append(group.at_rank(r))
                continue
            left, right = group
            vertical = left[:, :r].reshape(kh, 1, -1, r)
            horizontal = right[:r].reshape(r, kw, -1).transpose(1, 0, 2)[None]
            per_group.append([vertical, horizontal])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)


@dataclasses.dataclass(frozen=True)
class _AwareGroup:
    """One group's data-aware spatial SVD.

    The output error under the patch moment ``C`` has no closed form for this chain, so
    two vertical factors are tried: the weight SVD's, and the whitened SVD of the
    (kh*cin, kw*cout) matrix under the patch moment averaged over kernel columns; each
    gets the least-squares horizontal factor under the full ``C`` and the smaller
    error wins (never worse than the weight SVD with its own horizontal factor).
    A rank's design is a column subset of the design at rank ``bound`` (the leading
    vertical columns at each kernel column), so its fit comes from ``ColumnFits``.
    """

    kernel: np.ndarray  # (D, cout), patch order (kh, kw, cin)
    moment: np.ndarray  # regularized C
    base: float
    lefts: tuple[np.ndarray, ...]
    fits: tuple[ColumnFits, ...]  # one per left, designs up to rank ``bound``
    bound: int
    shape: tuple[int, int, int, int]

    @classmethod
    def of(cls, part: np.ndarray, moment: np.ndarray, weight_left: np.ndarray, bound: int) -> _AwareGroup:
        kh, kw, cin, cout = part.shape
        moment = regularized(moment)
        flat = part.astype(np.float64).reshape(-1, cout)
        rows = moment.reshape(kh, kw, cin, kh, kw, cin)
        row_moment = np.einsum("ajbcjd->abcd", rows).reshape(kh * cin, kh * cin) / kw
        matrix = part.astype(np.float64).transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
        aware_left, _ = whitened_svd(matrix, regularized(row_moment))
        weighted = moment @ flat
        lefts = (weight_left, aware_left)
        fits = tuple(_fits(left[:, :bound], moment, flat, weighted, kh, kw) for left in lefts)
        return cls(flat, moment, fits[0].base, lefts, fits, bound, (kh, kw, cin, cout))

    def at_rank(self, r: int) -> list[np.ndarray]:
        kh, kw, cin, cout = self.shape
        columns = (np.arange(kw)[:, None] * self.bound + np.arange(r)).ravel()
        best = None
        for left, fits in zip(self.lefts, self.fits):
            if r <= self.bound:
                last, error = fits.fit(columns)
            else:  # past the precomputed ranks (never in the profile): the direct fit
                last, error = fit_last(_design(left, r, kh, kw), self.moment, self.kernel, base=self.base)
            if best is None or error < best[0]:
                best = (error, left[:, :r].reshape(kh, cin, r), last)
        _, vertical, last = best
        return [vertical.reshape(kh, 1, cin, r), last.reshape(kw, r, cout)[None]]


def _fits(
    left: np.ndarray, moment: np.ndarray, kernel: np.ndarray, weighted: np.ndarray, kh: int, kw: int
) -> ColumnFits:
    """``ColumnFits`` of ``_design(left, r, kh, kw)`` at ``r = left.shape[1]``, using its block
    structure: column (j, r) only reads the patch entries at kernel column j (a third of
    the dense products' work for 3x3 kernels)."""
    dim, r = moment.shape[0], left.shape[1]
    kh_cin = left.shape[0]
    blocks = moment.reshape(dim, kh, kw, -1)
    # C X: for each kernel column j, C restricted to the patch entries (i, j, c) times V
    weighted_design = np.concatenate(
        [blocks[:, :, j, :].reshape(dim, kh_cin) @ left for j in range(kw)], axis=1
    ).reshape(kh, kw, -1, kw * r)
    gram = np.concatenate([left.T @ weighted_design[:, j].reshape(kh_cin, -1) for j in range(kw)])
    rows = weighted.reshape(kh, kw, -1, weighted.shape[1])
    cross = np.concatenate([left.T @ rows[:, j].reshape(kh_cin, -1) for j in range(kw)])
    return ColumnFits(gram, cross, float(np.sum(kernel * weighted)))


def _design(left: np.ndarray, r: int, kh: int, kw: int) -> np.ndarray:
    """The chain's map before its last stage: patch (i, j, c) -> channel (j, r) at rank ``r``."""
    vertical = left[:, :r].reshape(kh, -1, r)
    return np.einsum("icr,jk->ijckr", vertical, np.eye(kw)).reshape(-1, kw * r)
