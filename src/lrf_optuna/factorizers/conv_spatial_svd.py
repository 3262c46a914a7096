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
from lrf_optuna.factorizers.data_aware import fit_last, output_error, regularized, whitened_svd


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
        return [
            _AwareGroup.of(part, moment, weight_left)
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
    """

    kernel: np.ndarray  # (D, cout), patch order (kh, kw, cin)
    moment: np.ndarray  # regularized C
    base: float
    lefts: tuple[np.ndarray, ...]
    shape: tuple[int, int, int, int]

    @classmethod
    def of(cls, part: np.ndarray, moment: np.ndarray, weight_left: np.ndarray) -> _AwareGroup:
        kh, kw, cin, cout = part.shape
        moment = regularized(moment)
        flat = part.astype(np.float64).reshape(-1, cout)
        rows = moment.reshape(kh, kw, cin, kh, kw, cin)
        row_moment = np.einsum("ajbcjd->abcd", rows).reshape(kh * cin, kh * cin) / kw
        matrix = part.astype(np.float64).transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
        aware_left, _ = whitened_svd(matrix, regularized(row_moment))
        base = output_error(flat, np.zeros_like(flat), moment)
        return cls(flat, moment, base, (weight_left, aware_left), (kh, kw, cin, cout))

    def at_rank(self, r: int) -> list[np.ndarray]:
        kh, kw, cin, cout = self.shape
        best = None
        for left in self.lefts:
            vertical = left[:, :r].reshape(kh, cin, r)
            # Patch (i, j, c) -> intermediate channel r at kernel column j.
            design = np.einsum("icr,jk->ijckr", vertical, np.eye(kw)).reshape(-1, kw * r)
            last, error = fit_last(design, self.moment, self.kernel, base=self.base)
            if best is None or error < best[0]:
                best = (error, vertical, last)
        _, vertical, last = best
        return [vertical.reshape(kh, 1, cin, r), last.reshape(kw, r, cout)[None]]
