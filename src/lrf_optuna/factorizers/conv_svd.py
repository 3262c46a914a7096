"""Channel SVD: a k-conv to ``rank`` filters, then a 1x1 conv (Zhang et al. 2016)."""

from __future__ import annotations

import math

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    balanced_svd,
    compose_chain,
    conv_stages,
    split_groups,
    stack_groups,
)
from lrf_optuna.factorizers.data_aware import regularized, whitened_svd


@register
class ChannelSVD(Factorizer):
    name = "svd"
    kinds = ("conv",)

    def full_rank(self, geom: LayerGeometry) -> int:
        return min(math.prod(geom.kernel_size) * geom.in_per_group, geom.out_per_group)

    def stages(self, geom, rank):
        r, g = min(rank, self.full_rank(geom)), geom.groups
        return conv_stages(geom, (r * g, g, "all"), (geom.out_channels, g, "none"))

    def prepare(self, kernel, geom, *, seed, stats=None):
        parts = [p.reshape(-1, p.shape[-1]) for p in split_groups(kernel, geom.groups)]
        if stats is None:
            return [balanced_svd(p) for p in parts]
        # Output PCA (closed-form optimum of the output error): same slicing per rank.
        return [whitened_svd(p, regularized(m)) for p, m in zip(parts, stats.moments)]

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        core_shape = geom.kernel_size + (geom.in_per_group, r)
        ones = (1,) * geom.spatial_rank
        per_group = [
            [left[:, :r].reshape(core_shape), right[:r].reshape(ones + (r, -1))] for left, right in prepared
        ]
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)
