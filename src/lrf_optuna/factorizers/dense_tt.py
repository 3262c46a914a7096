"""Tensor-train matrix (TT-SVD, Oseledets 2011; TT layers of Novikov et al. 2015)."""

from __future__ import annotations

import math

import numpy as np

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.stages import TTStage
from lrf_optuna.factorizers.tensorize import balanced_modes
from lrf_optuna.geometry import LayerGeometry

TT_CORES = 3


def tt_modes(geom: LayerGeometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n_in, n_out = geom.kernel_shape
    return balanced_modes(n_in, TT_CORES), balanced_modes(n_out, TT_CORES)


def bond_bounds(in_modes: tuple[int, ...], out_modes: tuple[int, ...]) -> list[int]:
    """Largest useful rank of each inner bond: the smaller side of that cut."""
    sizes = [i * o for i, o in zip(in_modes, out_modes)]
    return [min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)]


def _to_tt_order(kernel: np.ndarray, in_modes, out_modes) -> np.ndarray:
    """(in, out) -> (i1*o1, i2*o2, ...) so that each core holds one (i_k, o_k) pair."""
    d = len(in_modes)
    tensor = kernel.reshape(in_modes + out_modes)
    order = [axis for k in range(d) for axis in (k, d + k)]
    return tensor.transpose(order).reshape([i * o for i, o in zip(in_modes, out_modes)])


@register
class TensorTrain(Factorizer):
    name = "tt"
    kinds = ("dense",)

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        in_modes, out_modes = tt_modes(geom)
        if max(bond_bounds(in_modes, out_modes)) <= 1:
            return f"its {geom.kernel_shape} kernel has too few factors to form a tensor train"
        return None

    def full_rank(self, geom: LayerGeometry) -> int:
        return max(bond_bounds(*tt_modes(geom)))

    def stages(self, geom, rank):
        in_modes, out_modes = tt_modes(geom)
        inner = tuple(min(rank, bound) for bound in bond_bounds(in_modes, out_modes))
        return (TTStage(in_modes, out_modes, (1,) + inner + (1,)),)

    def prepare(self, kernel, geom, *, seed):
        # TT-SVD is sequential: the SVD of step k depends on the ranks before it,
        # so nothing is shared across ranks.
        return kernel.astype(np.float64)

    def at_rank(self, prepared, geom, rank, *, seed):
        (stage,) = self.stages(geom, rank)
        tensor = _to_tt_order(prepared, stage.in_modes, stage.out_modes)
        cores, remainder = [], tensor
        for r0, i, o, r1 in stage.core_shapes()[:-1]:
            u, s, vt = np.linalg.svd(remainder.reshape(r0 * i * o, -1), full_matrices=False)
            cores.append(u[:, :r1].reshape(r0, i, o, r1))
            remainder = s[:r1, None] * vt[:r1]
        cores.append(remainder.reshape(stage.core_shapes()[-1]))
        return cores

    def reconstruct(self, kernels, geom, rank):
        (stage,) = self.stages(geom, rank)
        full = kernels[0]
        for core in kernels[1:]:
            full = np.tensordot(full, core, axes=([-1], [0]))
        d = len(stage.in_modes)
        full = full.reshape([n for pair in zip(stage.in_modes, stage.out_modes) for n in pair])
        order = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
        return full.transpose(order).reshape(geom.kernel_shape)
