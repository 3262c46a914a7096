"""Spatial SVD: a kh x 1 conv then a 1 x kw conv (Jaderberg et al. 2014, as in AIMET)."""

from __future__ import annotations

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    balanced_svd,
    compose_chain,
    conv_stages,
    pointwise_reason,
    split_groups,
    stack_groups,
)
from lrf_optuna.geometry import LayerGeometry


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

    def prepare(self, kernel, geom, *, seed):
        kh, kw = geom.kernel_size
        factors = []
        for part in split_groups(kernel, geom.groups):
            cin, cout = part.shape[-2:]
            matrix = part.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
            factors.append(balanced_svd(matrix))
        return factors

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        kh, kw = geom.kernel_size
        per_group = []
        for left, right in prepared:
            vertical = left[:, :r].reshape(kh, 1, -1, r)
            horizontal = right[:r].reshape(r, kw, -1).transpose(1, 0, 2)[None]
            per_group.append([vertical, horizontal])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)
