"""Every decomposition TensorLy also offers, checked against TensorLy as an independent reference.

Tucker-2 and tensorized Tucker are truncated HOSVDs: the same reconstruction as TensorLy's
``partial_tucker`` with no HOOI iteration (orthogonal projections onto the same leading
subspaces), and never better than HOOI. Dense SVD is a Tucker of a matrix. The tensor-train
is TT-SVD: TensorLy's ``tensor_train`` on the same tensorization reconstructs the same
matrix. CP is ALS, not unique: its error must be no worse than TensorLy's ``parafac`` from
the same SVD start and the same iterations. TensorLy runs inside ``tl.backend_context``
(no global backend state).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import parafac, partial_tucker, tensor_train

from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.factorizers.conv_cp import ALS_ITERATIONS
from lrf_optuna.factorizers.dense_tt import _to_tt_order


def conv_geometry(kernel_shape: tuple[int, ...]) -> LayerGeometry:
    spatial = (6,) * (len(kernel_shape) - 2)
    return LayerGeometry(
        name="c", layer_type="Conv2D", kind="conv", kernel_shape=kernel_shape,
        calls=(CallShape(spatial, spatial),),
    )  # fmt: skip


def dense_geometry(n_in: int, n_out: int) -> LayerGeometry:
    return LayerGeometry(
        name="d", layer_type="Dense", kind="dense", kernel_shape=(n_in, n_out), calls=(CallShape((), ()),)
    )


def kernel(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    # Decaying spectrum: distinct singular values, so truncated subspaces are unique.
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) * np.linspace(1.0, 0.05, shape[-1])


def ours(method: str, geom: LayerGeometry, k: np.ndarray, rank: int) -> np.ndarray:
    factorizer = get_factorizer(geom.kind, method)
    return factorizer.reconstruct(factorizer.decompose(k, geom, rank, seed=0), geom, rank)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_tucker2_is_tensorly_hosvd_and_no_better_than_hooi(rank):
    k = kernel((3, 3, 8, 10))
    geom = conv_geometry(k.shape)
    ranks = [min(rank, 8), min(rank, 10)]
    with tl.backend_context("numpy"):
        (core, factors), _ = partial_tucker(k, rank=ranks, modes=[2, 3], n_iter_max=0, init="svd")
        hosvd = tl.tenalg.multi_mode_dot(core, factors, modes=[2, 3])
        (core, factors), _ = partial_tucker(k, rank=ranks, modes=[2, 3], n_iter_max=50, init="svd", tol=0)
        hooi = tl.tenalg.multi_mode_dot(core, factors, modes=[2, 3])
    mine = ours("tucker2", geom, k, rank)
    np.testing.assert_allclose(mine, hosvd, atol=1e-10 * np.abs(k).max())
    assert rel(mine, k) >= rel(hooi, k) - 1e-9


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_dense_svd_is_the_tensorly_truncated_matrix_tucker(rank):
    k = kernel((12, 9))
    with tl.backend_context("numpy"):
        (core, factors), _ = partial_tucker(k, rank=[rank], modes=[0], n_iter_max=0, init="svd")
        reference = tl.tenalg.multi_mode_dot(core, factors, modes=[0])
    np.testing.assert_allclose(ours("svd", dense_geometry(12, 9), k, rank), reference, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_tensorized_tucker_is_tensorly_hosvd(rank):
    k = kernel((16, 12))
    geom = dense_geometry(16, 12)
    factorizer = get_factorizer("dense", "tucker")
    (stage,) = factorizer.stages(geom, rank)
    tensor = k.reshape(stage.in_modes + stage.out_modes)
    with tl.backend_context("numpy"):
        ranks = list(stage.in_ranks + stage.out_ranks)
        (core, factors), _ = partial_tucker(tensor, rank=ranks, modes=[0, 1, 2, 3], n_iter_max=0, init="svd")
        reference = tl.tucker_to_tensor((core, factors)).reshape(k.shape)
    np.testing.assert_allclose(ours("tucker", geom, k, rank), reference, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_tensor_train_is_tensorly_tt_svd(rank):
    k = kernel((24, 18))
    geom = dense_geometry(24, 18)
    (stage,) = get_factorizer("dense", "tt").stages(geom, rank)
    tensor = _to_tt_order(k, stage.in_modes, stage.out_modes)
    with tl.backend_context("numpy"):
        reference_tt = tl.tt_to_tensor(tensor_train(tensor, rank=list(stage.ranks)))
    mine = _to_tt_order(ours("tt", geom, k, rank), stage.in_modes, stage.out_modes)
    np.testing.assert_allclose(mine, reference_tt, atol=1e-10)


@pytest.mark.parametrize("rank", [2, 5])
def test_cp_error_no_worse_than_tensorly_parafac(rank):
    k = kernel((3, 3, 8, 8), seed=1)
    geom = conv_geometry(k.shape)
    tensor = k.reshape(9, 8, 8)
    with tl.backend_context("numpy"):
        weights, factors = parafac(tensor, rank, n_iter_max=ALS_ITERATIONS, init="svd", tol=0, random_state=0)
        reference = tl.cp_to_tensor((weights, factors)).reshape(k.shape)
    assert rel(ours("cp", geom, k, rank), k) <= rel(reference, k) + 1e-6  # equal here, measured
