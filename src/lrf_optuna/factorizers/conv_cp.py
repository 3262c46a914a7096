"""CP: 1x1 conv -> depthwise spatial conv -> 1x1 conv (Lebedev et al. 2015).

CP of each group's (spatial, Cin, Cout) tensor by ALS (``cp_als``), started from
the unfoldings' singular vectors, which ``prepare`` computes once for every rank.
"""

from __future__ import annotations

import math

import numpy as np

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    compose_chain,
    conv_stages,
    pointwise_reason,
    split_groups,
    stack_groups,
)
from lrf_optuna.factorizers.cp_als import cp_als, svd_init
from lrf_optuna.geometry import LayerGeometry

ALS_ITERATIONS = 25  # fixed budget: keeps profiling fast; the ALS stops earlier once converged


@register
class CP(Factorizer):
    name = "cp"
    kinds = ("conv",)

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        if geom.transposed:
            return (
                "CP needs a depthwise transposed convolution for its spatial factor, "
                "and Keras has no such stock layer"
            )
        return pointwise_reason(geom)

    def full_rank(self, geom: LayerGeometry) -> int:
        # CP has no finite "exact" rank in general; the channel bound keeps one
        # integer range per layer shared with the other methods.
        return max(geom.in_per_group, geom.out_per_group)

    def stages(self, geom, rank):
        r, g = min(rank, self.full_rank(geom)), geom.groups
        return conv_stages(geom, (r * g, g, "none"), (r * g, r * g, "all"), (geom.out_channels, g, "none"))

    def prepare(self, kernel, geom, *, seed):
        spatial = math.prod(geom.kernel_size)
        parts = split_groups(kernel.astype(np.float64), geom.groups)
        tensors = [p.reshape(spatial, *p.shape[-2:]) for p in parts]
        full = self.full_rank(geom)
        return [(t, svd_init(t, full, seed)) for t in tensors]

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        ones = (1,) * geom.spatial_rank
        per_group = []
        for tensor, init in prepared:
            _, cin, cout = tensor.shape
            start = [f[:, :r] for f in init]
            a_spatial, a_in, a_out = cp_als(tensor, r, iterations=ALS_ITERATIONS, init=start, seed=seed)
            first = a_in.reshape(ones + (cin, r))
            depthwise = a_spatial.reshape(geom.kernel_size + (1, r))
            per_group.append([first, depthwise, a_out.T.reshape(ones + (r, cout))])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)
