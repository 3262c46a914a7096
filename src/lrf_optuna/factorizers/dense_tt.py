"""Tensor-train matrix (TT-SVD, Oseledets 2011; TT layers of Novikov et al. 2015).

The TT-SVD is TensorLy's ``tensor_train_matrix`` (its ``svd_interface`` SVDs, in its order; it
ran as fast as the NumPy loop it replaced, benchmarks/results/tensorly_speed.txt), except that
the first SVD, the same for every rank up to truncation, is computed once per layer: on a
4096x4096 kernel it was ~90 % of each rank's time.
"""

from __future__ import annotations

import math

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import TTStage
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.data_aware import regularized
from lrf_optuna.factorizers.tensorize import balanced_modes

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

    def prepare(self, kernel, geom, *, seed, stats=None):
        # TT-SVD is sequential: only its first SVD (truncated later) is shared across ranks.
        kernel = kernel.astype(np.float64)
        first = _first_svd(kernel, *tt_modes(geom))
        if stats is None:
            return first, None
        moment = regularized(stats.moments[0])
        return first, (moment, moment @ kernel)  # C W: the same for every rank

    def at_rank(self, prepared, geom, rank, *, seed):
        first, aware = prepared
        (stage,) = self.stages(geom, rank)
        cores = _tt_svd(first, stage)
        if aware is not None:
            cores[-1] = _last_core(cores[:-1], *aware, stage)
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


def _first_svd(kernel: np.ndarray, in_modes, out_modes) -> tuple[np.ndarray, ...]:
    """``(U, S, V)`` of the TT-SVD's first unfolding, untruncated: TensorLy's truncated SVD slices
    the full one and flips signs per column, so each rank's first step is a prefix of this.
    TensorLy is imported here: ``import tensorly`` takes seconds and only Dense layers need it."""
    import tensorly as tl
    from tensorly.tenalg.svd import svd_interface

    tensor = _to_tt_order(kernel, in_modes, out_modes)
    unfolding = tensor.reshape(tensor.shape[0], -1)
    with tl.backend_context("numpy"):
        u, s, v = svd_interface(unfolding, n_eigenvecs=min(unfolding.shape))
    return u, s, v, np.array(tensor.shape)


def _tt_svd(first: tuple[np.ndarray, ...], stage: TTStage) -> list[np.ndarray]:
    """TT-SVD cores ``(r0, i, o, r1)``, TensorLy's ``tensor_train`` steps after the shared first
    SVD (``_first_svd``): the same SVDs, truncations and reshapes."""
    import tensorly as tl
    from tensorly.tenalg.svd import svd_interface

    u, s, v, sizes = first
    rank = min(len(s), stage.ranks[1])
    factors = [u[:, :rank].reshape(1, sizes[0], rank)]
    unfolding = s[:rank, None] * v[:rank]
    with tl.backend_context("numpy"):
        for k in range(1, len(sizes) - 1):
            unfolding = unfolding.reshape(rank * sizes[k], -1)
            current = min(*unfolding.shape, stage.ranks[k + 1])
            u_k, s_k, v_k = svd_interface(unfolding, n_eigenvecs=current)
            factors.append(u_k.reshape(rank, sizes[k], current))
            unfolding, rank = s_k[:, None] * v_k, current
    factors.append(unfolding.reshape(rank, sizes[-1], 1))
    return [f.reshape(f.shape[0], i, o, -1) for f, i, o in zip(factors, stage.in_modes, stage.out_modes)]


def _last_core(
    cores: list[np.ndarray], moment: np.ndarray, weighted_kernel: np.ndarray, stage: TTStage
) -> np.ndarray:
    """Data-aware TT: the TT-SVD's first cores, and the last core that minimizes the output
    error under the input moment ``C`` given them (least squares, closed form);
    ``weighted_kernel`` is ``C @ W``.

    With ``A`` the first input modes, ``O`` the first output modes and ``r`` the last
    bond, the chain computes ``W'[(a,i),(O,o)] = sum_r L[a,O,r] G[r,i,o]``: for each ``O``
    a design matrix ``(a,i) -> (r,i)``, all sharing ``G``.
    """
    left = cores[0][0]  # (i1, o1, r1)
    for core in cores[1:]:
        left = np.tensordot(left, core, axes=([-1], [0]))  # (i1, o1, i2, o2, ..., r)
    d = len(stage.in_modes)
    order = [2 * k for k in range(d - 1)] + [2 * k + 1 for k in range(d - 1)] + [2 * d - 2]
    rank = left.shape[-1]
    n_a, n_o = math.prod(stage.in_modes[:-1]), math.prod(stage.out_modes[:-1])
    i_d, o_d = stage.in_modes[-1], stage.out_modes[-1]
    left = left.transpose(order).reshape(n_a, n_o, rank)
    weighted_kernel = weighted_kernel.reshape(n_a, i_d, n_o, o_d)
    cross = np.tensordot(left, weighted_kernel, axes=([0, 1], [0, 2])).reshape(rank * i_d, o_d)
    gram = _gram(left, moment.reshape(n_a, i_d, n_a, i_d))
    try:
        last = np.linalg.solve(gram, cross)
    except np.linalg.LinAlgError:
        last = np.linalg.lstsq(gram, cross, rcond=None)[0]
    return last.reshape(rank, i_d, o_d, 1)


def _gram(left: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """``sum_O (L_O (x) I)^T C (L_O (x) I)``, rows ``(r, i)`` and columns ``(s, j)``, by BLAS
    tensordots (two-operand einsums ran without BLAS: minutes per rank on 4096x4096).

    Small ranks first sum ``K = sum_O L_O L_O^T`` over the output blocks (work ~ r^2), larger
    ones go one output block at a time (work ~ r); either way in chunks of bounded memory.
    """
    n_a, n_o, rank = left.shape
    i_d = blocks.shape[1]
    if rank * (n_o + i_d * i_d) < n_o * i_d * i_d:
        gram = np.zeros((rank, rank, i_d, i_d))
        chunk = max(1, 2**23 // (n_a * rank * rank))
        for start in range(0, n_a, chunk):
            part = slice(start, start + chunk)
            pairs = np.tensordot(left[part], left, axes=([1], [1]))  # K[a, r, b, s]
            gram += np.tensordot(pairs, blocks[part], axes=([0, 2], [0, 2]))  # (r, s, i, j)
        return gram.transpose(0, 2, 1, 3).reshape(rank * i_d, -1)
    flat = blocks.transpose(0, 1, 3, 2).reshape(-1, n_a)  # rows (a, i, j)
    gram = np.zeros((rank, i_d, i_d, rank))
    for o in range(n_o):  # one output block at a time: bounded memory
        weighted = (flat @ left[:, o]).reshape(n_a, i_d * i_d * rank)  # (a, (i, j, s))
        gram += (left[:, o].T @ weighted).reshape(rank, i_d, i_d, rank)
    return gram.transpose(0, 1, 3, 2).reshape(rank * i_d, -1)
