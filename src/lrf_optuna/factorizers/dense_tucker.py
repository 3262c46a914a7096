"""Tucker (truncated HOSVD) of a Dense kernel tensorized as (i1, i2, o1, o2)."""

from __future__ import annotations

import numpy as np

from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_tucker2 import mode_basis
from lrf_optuna.factorizers.stages import TuckerStage
from lrf_optuna.factorizers.tensorize import balanced_modes
from lrf_optuna.geometry import LayerGeometry

MODES_PER_SIDE = 2


def _modes(geom: LayerGeometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n_in, n_out = geom.kernel_shape
    return balanced_modes(n_in, MODES_PER_SIDE), balanced_modes(n_out, MODES_PER_SIDE)


@register
class TensorizedTucker(Factorizer):
    name = "tucker"
    kinds = ("dense",)

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        in_modes, out_modes = _modes(geom)
        if max(in_modes + out_modes) == 1:
            return f"its {geom.kernel_shape} kernel cannot be tensorized"
        return None

    def full_rank(self, geom: LayerGeometry) -> int:
        in_modes, out_modes = _modes(geom)
        return max(in_modes + out_modes)

    def stages(self, geom, rank):
        in_modes, out_modes = _modes(geom)
        clamp = lambda modes: tuple(min(rank, m) for m in modes)
        return (TuckerStage(in_modes, out_modes, clamp(in_modes), clamp(out_modes)),)

    def prepare(self, kernel, geom, *, seed):
        in_modes, out_modes = _modes(geom)
        tensor = kernel.astype(np.float64).reshape(in_modes + out_modes)
        return tensor, [mode_basis(tensor, axis) for axis in range(tensor.ndim)]

    def at_rank(self, prepared, geom, rank, *, seed):
        tensor, bases = prepared
        (stage,) = self.stages(geom, rank)
        factors = [b[:, :r] for b, r in zip(bases, stage.in_ranks + stage.out_ranks)]
        core = np.einsum("abcd,ai,bj,ck,dl->ijkl", tensor, *factors, optimize=True)
        return [*factors[:2], core, *factors[2:]]

    def reconstruct(self, kernels, geom, rank):
        u1, u2, core, v1, v2 = kernels
        return np.einsum("ijkl,ai,bj,ck,dl->abcd", core, u1, u2, v1, v2, optimize=True).reshape(
            geom.kernel_shape
        )
