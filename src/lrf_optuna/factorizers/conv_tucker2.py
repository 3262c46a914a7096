"""Tucker-2: 1x1 conv -> k-conv core -> 1x1 conv (Kim et al. 2016).

Factors come from a truncated HOSVD of the two channel modes: exact at full rank,
deterministic, and one SVD per mode serves every rank.
"""

from __future__ import annotations

import numpy as np

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    compose_chain,
    conv_stages,
    pointwise_reason,
    split_groups,
    stack_groups,
)
from lrf_optuna.geometry import LayerGeometry


def mode_basis(tensor: np.ndarray, axis: int) -> np.ndarray:
    """Left singular vectors of the mode-``axis`` unfolding, strongest first.

    Computed as eigenvectors of the unfolding's Gram matrix: that matrix is only
    (mode size)^2, so this is much cheaper than an SVD of the wide unfolding.
    """
    unfolding = np.moveaxis(tensor, axis, 0).reshape(tensor.shape[axis], -1).astype(np.float64)
    _, vectors = np.linalg.eigh(unfolding @ unfolding.T)
    return vectors[:, ::-1]


@register
class Tucker2(Factorizer):
    name = "tucker2"
    kinds = ("conv",)

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        return pointwise_reason(geom)

    def full_rank(self, geom: LayerGeometry) -> int:
        return max(geom.in_per_group, geom.out_per_group)

    def _ranks(self, geom: LayerGeometry, rank: int) -> tuple[int, int]:
        return min(rank, geom.in_per_group), min(rank, geom.out_per_group)

    def stages(self, geom, rank):
        (r_in, r_out), g = self._ranks(geom, rank), geom.groups
        return conv_stages(geom, (r_in * g, g, "none"), (r_out * g, g, "all"), (geom.out_channels, g, "none"))

    def prepare(self, kernel, geom, *, seed):
        parts = split_groups(kernel.astype(np.float64), geom.groups)
        return [(part, mode_basis(part, -2), mode_basis(part, -1)) for part in parts]

    def at_rank(self, prepared, geom, rank, *, seed):
        r_in, r_out = self._ranks(geom, rank)
        ones = (1,) * geom.spatial_rank
        per_group = []
        for part, u_in, u_out in prepared:
            u_in, u_out = u_in[:, :r_in], u_out[:, :r_out]
            core = u_in.T @ (part @ u_out)  # broadcasts over the spatial axes
            per_group.append([u_in.reshape(ones + u_in.shape), core, u_out.T.reshape(ones + (r_out, -1))])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)
