"""Tucker (truncated HOSVD) of a Dense kernel tensorized as (i1, i2, o1, o2).

Own NumPy, not TensorLy's ``tucker(n_iter_max=0)`` (same reconstruction): the mode bases are
computed once for every rank; TensorLy's per-rank SVDs ran 45-57x slower over the profile's grid
on 1024x512 and 3136x256 kernels (benchmarks/results/tensorly_speed.txt).
"""

from __future__ import annotations

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import TuckerStage
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_tucker2 import mode_basis
from lrf_optuna.factorizers.data_aware import fit_last, output_error, regularized
from lrf_optuna.factorizers.tensorize import balanced_modes

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

    def prepare(self, kernel, geom, *, seed, stats=None):
        in_modes, out_modes = _modes(geom)
        tensor = kernel.astype(np.float64).reshape(in_modes + out_modes)
        bases = [mode_basis(tensor, axis) for axis in range(tensor.ndim)]
        if stats is None:
            return tensor, bases, None
        moment = regularized(stats.moments[0])
        flat = tensor.reshape(kernel.shape)
        # Output modes of C^(1/2) W: their Gram matrices come from W^T C W.
        gram = (flat.T @ moment @ flat).reshape(out_modes + out_modes)
        aware = [
            np.linalg.eigh(g)[1][:, ::-1] for g in (np.einsum("abcb->ac", gram), np.einsum("abad->bd", gram))
        ]
        return tensor, bases, (moment, [*bases[:2], *aware])

    def at_rank(self, prepared, geom, rank, *, seed):
        tensor, bases, aware = prepared
        (stage,) = self.stages(geom, rank)
        ranks = stage.in_ranks + stage.out_ranks
        if aware is not None:
            return _fitted(tensor, [bases, aware[1]], aware[0], ranks)
        factors = [b[:, :r] for b, r in zip(bases, ranks)]
        core = np.einsum("abcd,ai,bj,ck,dl->ijkl", tensor, *factors, optimize=True)
        return [*factors[:2], core, *factors[2:]]

    def reconstruct(self, kernels, geom, rank):
        u1, u2, core, v1, v2 = kernels
        return np.einsum("ijkl,ai,bj,ck,dl->abcd", core, u1, u2, v1, v2, optimize=True).reshape(
            geom.kernel_shape
        )


def _fitted(tensor: np.ndarray, candidates: list, moment: np.ndarray, ranks: tuple[int, ...]) -> list:
    """Data-aware Tucker: for the HOSVD factors and for the output factors of ``C^(1/2) W``
    (output PCA per output mode), the core that minimizes the output error under ``C``
    given the factors (least squares); the smaller error wins. Orthonormal output factors
    ``V`` make that ``argmin ||C^(1/2) (W V - Q G)||`` with ``Q = U1 (x) U2``."""
    i1, i2, o1, o2 = tensor.shape
    kernel = tensor.reshape(i1 * i2, o1 * o2)
    best = None
    for bases in candidates:
        factors = [b[:, :r] for b, r in zip(bases, ranks)]
        design = np.kron(factors[0], factors[1])
        outputs = np.kron(factors[2], factors[3])
        core, _ = fit_last(design, moment, kernel @ outputs)
        error = output_error(kernel, design @ core @ outputs.T, moment)
        if best is None or error < best[0]:
            best = (error, factors, core.reshape(ranks))
    _, factors, core = best
    return [*factors[:2], core, *factors[2:]]
