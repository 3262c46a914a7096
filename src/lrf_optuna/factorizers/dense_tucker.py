"""Tucker (truncated HOSVD) of a Dense kernel tensorized as (i1, i2, o1, o2).

Own NumPy, not TensorLy's ``tucker(n_iter_max=0)`` (same reconstruction): the mode bases are
computed once for every rank; TensorLy's per-rank SVDs ran 45-57x slower over the profile's grid
on 1024x512 and 3136x256 kernels (benchmarks/results/tensorly_speed.txt).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import TuckerStage
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_tucker2 import mode_basis
from lrf_optuna.factorizers.data_aware import regularized
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
        weighted = moment @ flat
        # Output modes of C^(1/2) W: their Gram matrices come from W^T C W.
        gram = (flat.T @ weighted).reshape(out_modes + out_modes)
        aware = [
            np.linalg.eigh(g)[1][:, ::-1] for g in (np.einsum("abcb->ac", gram), np.einsum("abad->bd", gram))
        ]
        return tensor, bases, _Fits.of(moment, flat, weighted, bases[:2], [bases[2:], aware])

    def at_rank(self, prepared, geom, rank, *, seed):
        tensor, bases, aware = prepared
        (stage,) = self.stages(geom, rank)
        ranks = stage.in_ranks + stage.out_ranks
        if aware is not None:
            return aware.at_rank(ranks)
        factors = [b[:, :r] for b, r in zip(bases, ranks)]
        core = np.einsum("abcd,ai,bj,ck,dl->ijkl", tensor, *factors, optimize=True)
        return [*factors[:2], core, *factors[2:]]

    def reconstruct(self, kernels, geom, rank):
        u1, u2, core, v1, v2 = kernels
        return np.einsum("ijkl,ai,bj,ck,dl->abcd", core, u1, u2, v1, v2, optimize=True).reshape(
            geom.kernel_shape
        )


@dataclasses.dataclass(frozen=True)
class _Fits:
    """Data-aware Tucker: for the HOSVD factors and for the output factors of ``C^(1/2) W``
    (output PCA per output mode), the core that minimizes the output error under ``C``
    given the factors (least squares); the smaller error wins.

    Both candidates share the input factors ``U1 (x) U2``, and a rank's design
    ``Q = U1_r (x) U2_r`` is a column subset of the orthogonal ``K = U1 (x) U2``: ``K^T C K``
    and ``K^T C W`` are computed once (mode by mode), so a rank costs a sliced solve instead
    of ``C @ Q`` and ``C @ delta`` (minutes per rank on a 4096x4096 kernel). Orthonormal
    output factors ``V`` make the error ``tr(W^T C W) - 2 <G, Q^T C W V> + <G, Q^T C Q G>``.
    """

    inputs: list[np.ndarray]  # U1, U2
    outputs: list[list[np.ndarray]]  # per candidate: V1, V2
    gram: np.ndarray  # K^T C K, rows and columns (i1, i2)
    cross: np.ndarray  # K^T C W, rows (i1, i2), columns (o1, o2)
    base: float

    @classmethod
    def of(cls, moment, kernel, weighted, inputs, outputs) -> _Fits:
        u1, u2 = inputs
        n1, n2 = len(u1), len(u2)
        blocks = moment.reshape(n1, n2, n1, n2)
        gram = np.einsum("abcd,ai,bj,ck,dl->ijkl", blocks, u1, u2, u1, u2, optimize=True)
        cross = np.einsum("abo,ai,bj->ijo", weighted.reshape(n1, n2, -1), u1, u2, optimize=True)
        base = float(np.sum(kernel * weighted))
        return cls(list(inputs), outputs, gram.reshape(n1 * n2, -1), cross.reshape(n1 * n2, -1), base)

    def at_rank(self, ranks: tuple[int, ...]) -> list[np.ndarray]:
        (u1, u2), (r1, r2, s1, s2) = self.inputs, ranks
        columns = (np.arange(r1)[:, None] * len(u2) + np.arange(r2)).ravel()
        gram = self.gram[np.ix_(columns, columns)]
        rows = self.cross[columns].reshape(len(columns), *(len(v) for v in self.outputs[0]))
        best = None
        for v1, v2 in self.outputs:
            v1, v2 = v1[:, :s1], v2[:, :s2]
            cross = np.einsum("nab,ak,bl->nkl", rows, v1, v2, optimize=True).reshape(len(columns), -1)
            try:
                core = np.linalg.solve(gram, cross)
                error = self.base - float(np.sum(core * cross))  # gram @ core == cross
            except np.linalg.LinAlgError:
                core = np.linalg.lstsq(gram, cross, rcond=None)[0]
                error = self.base - 2 * float(np.sum(core * cross)) + float(np.sum(core * (gram @ core)))
            if best is None or error < best[0]:
                best = (error, [u1[:, :r1], u2[:, :r2], v1, v2], core.reshape(ranks))
        _, factors, core = best
        return [*factors[:2], core, *factors[2:]]
