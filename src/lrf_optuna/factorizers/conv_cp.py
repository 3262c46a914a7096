"""CP: 1x1 conv -> depthwise spatial conv -> 1x1 conv (Lebedev et al. 2015).

CP of the (spatial, Cin, Cout) tensor by TensorLy's ALS on the NumPy backend.
"""

from __future__ import annotations

import math

import numpy as np
import tensorly as tl
from tensorly.decomposition import parafac

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    compose_chain,
    conv_stages,
    split_groups,
    stack_groups,
)
from lrf_optuna.geometry import LayerGeometry

ALS_ITERATIONS = 100
ALS_TOLERANCE = 1e-9


def cp_factors(tensor: np.ndarray, rank: int, seed: int) -> list[np.ndarray]:
    """CP factors of a 3-way tensor, the weights folded into the last factor."""
    with tl.backend_context("numpy"):
        weights, factors = parafac(
            tensor,
            rank,
            n_iter_max=ALS_ITERATIONS,
            init="svd",
            tol=ALS_TOLERANCE,
            random_state=seed,
        )
    first, second, third = (np.asarray(f, dtype=np.float64) for f in factors)
    return [first, second, third * np.asarray(weights)[None, :]]


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
        return None

    def full_rank(self, geom: LayerGeometry) -> int:
        # CP has no finite "exact" rank in general; the channel bound keeps one
        # integer range per layer shared with the other methods.
        return max(geom.in_per_group, geom.out_per_group)

    def stages(self, geom, rank):
        r, g = min(rank, self.full_rank(geom)), geom.groups
        return conv_stages(geom, (r * g, g, "none"), (r * g, r * g, "all"), (geom.out_channels, g, "none"))

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        spatial = math.prod(geom.kernel_size)
        ones = (1,) * geom.spatial_rank
        per_group = []
        for part in split_groups(np.asarray(prepared, np.float64), geom.groups):
            cin, cout = part.shape[-2:]
            a_spatial, a_in, a_out = cp_factors(part.reshape(spatial, cin, cout), r, seed)
            per_group.append(
                [
                    a_in.reshape(ones + (cin, r)),
                    a_spatial.reshape(geom.kernel_size + (1, r)),
                    a_out.T.reshape(ones + (r, cout)),
                ]
            )
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)
