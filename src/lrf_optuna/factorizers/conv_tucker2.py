"""Tucker-2: 1x1 conv -> k-conv core -> 1x1 conv (Kim et al. 2016).

Factors come from a truncated HOSVD of the two channel modes: exact at full rank,
deterministic, and one SVD per mode serves every rank. Own NumPy, not TensorLy's
``partial_tucker(n_iter_max=0)`` (same reconstruction): an eigh of each mode's Gram matrix,
computed once per layer, ran 10x faster at one rank and 40x over the profile's grid of ranks
on a 3x3x256x256 kernel (benchmarks/results/tensorly_speed.txt).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import (
    compose_chain,
    conv_stages,
    pointwise_reason,
    split_groups,
    stack_groups,
)
from lrf_optuna.factorizers.data_aware import (
    fit_last,
    output_error,
    output_pca,
    regularized,
    sqrt_and_inverse,
)


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

    def prepare(self, kernel, geom, *, seed, stats=None):
        parts = split_groups(kernel.astype(np.float64), geom.groups)
        if stats is None:
            return [(part, mode_basis(part, -2), mode_basis(part, -1)) for part in parts]
        spatial = math.prod(geom.kernel_size)
        channels = stats.channel_moments(spatial)
        return [_AwareGroup.of(p, m, c) for p, m, c in zip(parts, stats.moments, channels)]

    def at_rank(self, prepared, geom, rank, *, seed):
        r_in, r_out = self._ranks(geom, rank)
        ones = (1,) * geom.spatial_rank
        per_group = []
        for group in prepared:
            if isinstance(group, _AwareGroup):
                first, core, last = group.at_rank(r_in, r_out)
                per_group.append(
                    [
                        first.reshape(ones + first.shape),
                        core.reshape(geom.kernel_size + core.shape[1:]),
                        last.reshape(ones + last.shape),
                    ]
                )
                continue
            part, u_in, u_out = group
            u_in, u_out = u_in[:, :r_in], u_out[:, :r_out]
            core = u_in.T @ (part @ u_out)  # broadcasts over the spatial axes
            per_group.append([u_in.reshape(ones + u_in.shape), core, u_out.T.reshape(ones + (r_out, -1))])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)


@dataclasses.dataclass(frozen=True)
class _AwareGroup:
    """One group's data-aware Tucker-2.

    Two (input, output) factor pairs are tried: the HOSVD's, and a data-aware pair: the
    input factor is the HOSVD input factor of the kernel whitened by the input channels'
    moment ``S = C_ch^(1/2)`` (the first 1x1 conv computes ``U_r^T S^-1 x``, the core
    takes ``U_r^T S W``), the output factor the output PCA under the patch moment. The
    core is the projection of the kernel, the last 1x1 conv the least-squares fit under
    the patch moment, and the pair with the smaller output error wins.
    """

    kernel: np.ndarray  # (D, cout)
    moment: np.ndarray  # regularized patch moment
    base: float
    # (first-stage basis F, input basis U, tensor P, output basis V): core = U_r^T P V_r.
    candidates: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]

    @classmethod
    def of(cls, part: np.ndarray, moment: np.ndarray, channels: np.ndarray) -> _AwareGroup:
        cin, cout = part.shape[-2:]
        tensor = part.reshape(-1, cin, cout)
        moment = regularized(moment)
        flat = tensor.reshape(-1, cout)
        root, inverse_root = sqrt_and_inverse(regularized(channels))
        whitened = root @ tensor
        basis = mode_basis(whitened, -2)
        input_basis = mode_basis(tensor, -2)
        weight = (input_basis, input_basis, tensor, mode_basis(tensor, -1))
        aware = (inverse_root @ basis, basis, whitened, output_pca(flat, moment))
        base = output_error(flat, np.zeros_like(flat), moment)
        return cls(flat, moment, base, (weight, aware))

    def at_rank(self, r_in: int, r_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        best = None
        for first_basis, basis, tensor, out_basis in self.candidates:
            first = first_basis[:, :r_in]
            # BLAS matmuls broadcast over the spatial axis (a 3-operand einsum ran unoptimized:
            # minutes on VGG16's 512-channel layers)
            core = basis[:, :r_in].T @ tensor @ out_basis[:, :r_out]
            design = (first @ core).reshape(-1, r_out)
            last, error = fit_last(design, self.moment, self.kernel, base=self.base)
            if best is None or error < best[0]:
                best = (error, first, core, last)
        return best[1:]
