"""CP: 1x1 conv -> depthwise spatial conv -> 1x1 conv (Lebedev et al. 2015).

CP of each group's (spatial, Cin, Cout) tensor by ALS (``cp_als``), started from
the unfoldings' singular vectors, which ``prepare`` computes once for every rank.
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
from lrf_optuna.factorizers.cp_als import cp_als, svd_init
from lrf_optuna.factorizers.data_aware import fit_last, output_error, regularized, sqrt_and_inverse

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
        if geom.spatial_rank == 3:
            # benchmarks/results/stage_layers.txt: a grouped Conv3D with one channel per group
            # runs several times slower than the full Conv3D it would replace
            return (
                "CP needs a depthwise 3-D convolution for its spatial factor; Keras has none, and "
                "the grouped Conv3D standing in for it is slower than the layer it replaces"
            )
        return pointwise_reason(geom)

    def full_rank(self, geom: LayerGeometry) -> int:
        # CP has no finite "exact" rank in general; the channel bound keeps one
        # integer range per layer shared with the other methods.
        return max(geom.in_per_group, geom.out_per_group)

    def stages(self, geom, rank):
        r, g = min(rank, self.full_rank(geom)), geom.groups
        return conv_stages(geom, (r * g, g, "none"), (r * g, r * g, "all"), (geom.out_channels, g, "none"))

    def prepare(self, kernel, geom, *, seed, stats=None):
        spatial = math.prod(geom.kernel_size)
        parts = split_groups(kernel.astype(np.float64), geom.groups)
        tensors = [p.reshape(spatial, *p.shape[-2:]) for p in parts]
        full = self.full_rank(geom)
        if stats is None:
            return [(t, svd_init(t, full, seed)) for t in tensors]
        channels = stats.channel_moments(spatial)
        return [_AwareGroup.of(t, m, c, full, seed) for t, m, c in zip(tensors, stats.moments, channels)]

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        ones = (1,) * geom.spatial_rank
        per_group = []
        for group in prepared:
            if isinstance(group, _AwareGroup):
                a_spatial, a_in, last = group.at_rank(r, seed)
            else:
                tensor, init = group
                start = [f[:, :r] for f in init]
                a_spatial, a_in, a_out = cp_als(tensor, r, iterations=ALS_ITERATIONS, init=start, seed=seed)
                last = a_out.T
            first = a_in.reshape(ones + a_in.shape)
            depthwise = a_spatial.reshape(geom.kernel_size + (1, r))
            per_group.append([first, depthwise, last.reshape(ones + last.shape)])
        return stack_groups(per_group)

    def reconstruct(self, kernels, geom, rank):
        return compose_chain(kernels, self.stages(geom, rank), geom)


@dataclasses.dataclass(frozen=True)
class _AwareGroup:
    """One group's data-aware CP.

    Two CP fits are tried: of the kernel, and of the kernel whitened by the input
    channels' moment ``S = C_ch^(1/2)`` (CP of ``S W``; the first 1x1 conv absorbs
    ``S^-1``, so the chain is unchanged). Each keeps its input and spatial factors and
    gets the least-squares last 1x1 conv under the patch moment; the smaller output
    error wins.
    """

    kernel: np.ndarray  # (D, cout)
    moment: np.ndarray
    base: float
    # (tensor, ALS start, map of the fitted input factor to the first stage's matrix)
    candidates: tuple[tuple[np.ndarray, list[np.ndarray], np.ndarray], ...]

    @classmethod
    def of(cls, tensor: np.ndarray, moment: np.ndarray, channels: np.ndarray, full: int, seed: int):
        moment = regularized(moment)
        flat = tensor.reshape(-1, tensor.shape[-1])
        root, inverse_root = sqrt_and_inverse(regularized(channels))
        whitened = root @ tensor
        candidates = (
            (tensor, svd_init(tensor, full, seed), np.eye(len(root))),
            (whitened, svd_init(whitened, full, seed), inverse_root),
        )
        return cls(flat, moment, output_error(flat, np.zeros_like(flat), moment), candidates)

    def at_rank(self, r: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        best = None
        for tensor, init, to_first in self.candidates:
            start = [f[:, :r] for f in init]
            a_spatial, a_in, _ = cp_als(tensor, r, iterations=ALS_ITERATIONS, init=start, seed=seed)
            a_in = to_first @ a_in
            design = np.einsum("kr,cr->kcr", a_spatial, a_in).reshape(-1, r)
            last, error = fit_last(design, self.moment, self.kernel, base=self.base)
            if best is None or error < best[0]:
                best = (error, a_spatial, a_in, last)
        return best[1:]
