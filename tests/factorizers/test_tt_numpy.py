"""The TT factorizer (TensorLy's ``tensor_train_matrix`` since issue 20) against a TT-SVD written
here in NumPy: same reconstruction at every rank, cores of the stage's shapes, float64 math."""

from __future__ import annotations

import numpy as np
import pytest

from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.factorizers import get_factorizer


def numpy_tt_svd(kernel: np.ndarray, stage) -> np.ndarray:
    """Oseledets' TT-SVD of the (i1*o1, i2*o2, ...) tensorization, reconstructed to (in, out)."""
    d = len(stage.in_modes)
    tensor = kernel.reshape(stage.in_modes + stage.out_modes)
    tensor = tensor.transpose([a for k in range(d) for a in (k, d + k)])
    full, remainder = np.ones((1, 1)), tensor.reshape(-1)
    for k, r1 in enumerate(stage.ranks[1:-1]):
        size = stage.in_modes[k] * stage.out_modes[k]
        u, s, vt = np.linalg.svd(remainder.reshape(full.shape[-1] * size, -1), full_matrices=False)
        full = (full @ u[:, :r1].reshape(full.shape[-1], -1)).reshape(-1, r1)
        remainder = s[:r1, None] * vt[:r1]
    full = (full @ remainder.reshape(full.shape[-1], -1)).reshape(
        [n for k in range(d) for n in (stage.in_modes[k], stage.out_modes[k])]
    )
    return full.transpose([2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]).reshape(kernel.shape)


@pytest.mark.parametrize("rank", [1, 2, 5, 40])
def test_tt_matches_a_numpy_tt_svd(rank):
    geom = LayerGeometry("d", "Dense", "dense", (24, 30), (CallShape((), ()),))
    kernel = np.random.default_rng(3).standard_normal((24, 30)).astype("float32")
    factorizer = get_factorizer("dense", "tt")
    (stage,) = factorizer.stages(geom, rank)
    cores = factorizer.decompose(kernel, geom, rank, seed=0)
    assert [c.shape for c in cores] == list(stage.core_shapes())
    assert all(c.dtype == np.float32 for c in cores)
    expected = numpy_tt_svd(kernel.astype(np.float64), stage)
    np.testing.assert_allclose(factorizer.reconstruct(cores, geom, rank), expected, rtol=0, atol=1e-5)
