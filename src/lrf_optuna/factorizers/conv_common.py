"""NumPy helpers shared by the convolution factorizers: groups and chain composition."""

from __future__ import annotations

import numpy as np

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import ConvStage

__all__ = [
    "POINTWISE_REASON",
    "balanced_svd",
    "compose_chain",
    "conv_stages",
    "pointwise_reason",
    "split_groups",
    "stack_groups",
]


POINTWISE_REASON = "on a 1x1 kernel it computes the same approximation as `svd` with more parameters"


def pointwise_reason(geom: LayerGeometry) -> str | None:
    """Design-space pruning: on 1x1 kernels only channel SVD is worth searching."""
    return POINTWISE_REASON if max(geom.kernel_size, default=1) == 1 else None


def split_groups(kernel: np.ndarray, groups: int) -> list[np.ndarray]:
    """Canonical grouped kernel ``(*k, cin_g, cout)`` -> per-group ``(*k, cin_g, cout_g)``."""
    return np.split(kernel, groups, axis=-1)


def stack_groups(per_group: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-group stage kernels -> one grouped kernel per stage (Keras' grouped layout)."""
    return [np.concatenate(parts, axis=-1) for parts in zip(*per_group)]


def _to_dense(kernel: np.ndarray, groups: int) -> np.ndarray:
    """Grouped canonical kernel -> equivalent block-diagonal ``(*k, cin, cout)`` kernel."""
    cin_g, cout = kernel.shape[-2:]
    cout_g = cout // groups
    dense = np.zeros(kernel.shape[:-2] + (cin_g * groups, cout), kernel.dtype)
    for g in range(groups):
        rows, cols = slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g)
        dense[..., rows, cols] = kernel[..., cols]
    return dense


def compose_chain(
    kernels: list[np.ndarray], stages: tuple[ConvStage, ...], geom: LayerGeometry
) -> np.ndarray:
    """The canonical kernel computed by a chain of convolutions.

    Core stages touch disjoint spatial axes, so composing two kernels is a matrix
    product over channels with NumPy broadcasting over the size-1 spatial axes.
    """
    total = None
    for kernel, stage in zip(kernels, stages):
        dense = _to_dense(kernel, stage.groups)
        total = dense if total is None else np.matmul(total, dense)
    groups, cin_g, cout_g = geom.groups, geom.in_per_group, geom.out_per_group
    blocks = [total[..., g * cin_g : (g + 1) * cin_g, g * cout_g : (g + 1) * cout_g] for g in range(groups)]
    return np.concatenate(blocks, axis=-1)


def conv_stages(geom: LayerGeometry, *specs: tuple[int, int, str]) -> tuple[ConvStage, ...]:
    """Build ConvStages from ``(filters, groups, axes)`` with axes "all", "none" or "axisN"."""
    rank = geom.spatial_rank
    result = []
    for filters, groups, axes in specs:
        if axes == "all":
            mask = (True,) * rank
        elif axes == "none":
            mask = (False,) * rank
        else:
            axis = int(axes.removeprefix("axis"))
            mask = tuple(i == axis for i in range(rank))
        result.append(ConvStage(filters=filters, groups=groups, core_axes=mask))
    return tuple(result)


def balanced_svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``matrix == left @ right`` with singular values split evenly (sqrt) between them.

    Truncating to rank r is slicing ``left[:, :r]`` and ``right[:r]``: one SVD serves
    every rank (TensorLy's ``svd_interface``, one SVD per rank, ran 8-9x slower over the
    profile's grid: benchmarks/results/tensorly_speed.txt).
    """
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    root = np.sqrt(s)
    return u * root, root[:, None] * vt
