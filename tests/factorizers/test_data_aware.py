"""Data-aware factors (calibration statistics) on every contract case and method.

Inputs are strongly anisotropic (channels mixed with scales spanning three decades), so
the weight-only and data-aware factors really differ. Errors are computed with NumPy
from the layer's exact patches (checked against the layer itself).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from test_contract import ALL_PAIRS, CASE_BY_ID, CASE_IDS, EXACT_PAIRS, NAME, built, low_rank

import lrf_optuna as lo
from conftest import assert_outputs_close, canonical_kernel, predict
from lrf_optuna.factorizers.data_aware import LayerStatistics, output_error
from lrf_optuna.model._statistics import MomentAccumulator, layer_vectors

SAMPLES = 24


@functools.cache
def anisotropic_input(case_id: str) -> np.ndarray:
    b = built(case_id)
    shape = tuple(b.model.inputs[0].shape[1:])
    rng = np.random.default_rng(11)
    channels = shape[-1]
    mixing = np.linalg.qr(rng.standard_normal((channels, channels)))[0]
    scales = np.logspace(0, -3, channels)
    x = rng.standard_normal((SAMPLES, *shape)) @ (mixing * scales) @ mixing.T
    return (x + 0.3).astype("float32")  # a mean: uncentered moments matter


@functools.cache
def statistics(case_id: str) -> LayerStatistics:
    b = built(case_id)
    accumulator = MomentAccumulator(b.layer, b.geom, max_positions=10_000, seed=0)
    accumulator.append(anisotropic_input(case_id))
    return accumulator.result()


def errors(case_id: str, method: str, rank: int) -> tuple[float, float, float]:
    """(weight-only, data-aware) output errors tr(dW^T C dW) under the exact moment, and
    tr(W^T C W) (the error of a zero kernel: the scale of float32 round-off)."""
    b = built(case_id)
    factorizer, kernel, stats = b.factorizer(method), canonical_kernel(b.layer), statistics(case_id)
    result = []
    for s in (None, stats, "zero"):
        if isinstance(s, str):
            rec = np.zeros_like(kernel)
        else:
            rec = factorizer.decompose(kernel, b.geom, rank, seed=0, stats=s)
            rec = factorizer.reconstruct(rec, b.geom, rank)
        total = 0.0
        cout_g = kernel.shape[-1] // stats.moments.shape[0]
        for g, moment in enumerate(stats.moments):
            block = slice(g * cout_g, (g + 1) * cout_g)
            w, r = (
                kernel[..., block].reshape(moment.shape[0], -1),
                rec[..., block].reshape(moment.shape[0], -1),
            )
            total += output_error(w.astype(np.float64), r, moment)
        result.append(total)
    return tuple(result)


@pytest.mark.parametrize(
    "case_id", [c for c in CASE_IDS if CASE_BY_ID[c.values[0]].layer_type in ("Conv1D", "Conv2D", "Conv3D")]
)
def test_patches_times_kernel_are_the_layer_outputs(case_id):
    b = built(case_id)
    x = anisotropic_input(case_id)
    vectors = layer_vectors(b.layer, b.geom, x, limit=10_000, seed=0)  # (groups, n, D)
    kernel = canonical_kernel(b.layer)
    cout_g = kernel.shape[-1] // b.geom.groups
    parts = [
        vectors[g] @ kernel[..., g * cout_g : (g + 1) * cout_g].reshape(vectors.shape[-1], -1)
        for g in range(b.geom.groups)
    ]
    linear = np.concatenate(parts, axis=-1) + (
        keras.ops.convert_to_numpy(b.layer.bias) if b.geom.use_bias else 0
    )
    config = {**b.layer.get_config(), "activation": "linear"}  # the layer without its activation
    twin = type(b.layer).from_config(config)
    twin.build(x.shape)
    twin.set_weights(b.layer.get_weights())
    expected = keras.ops.convert_to_numpy(twin(x)).reshape(-1, kernel.shape[-1])
    assert_outputs_close(linear, expected)


@pytest.mark.parametrize(("case_id", "method"), EXACT_PAIRS)
def test_data_aware_full_rank_is_exact(case_id, method):
    b = built(case_id)
    factorizer, kernel = b.factorizer(method), canonical_kernel(b.layer)
    rank = factorizer.full_rank(b.geom)
    kernels = factorizer.decompose(kernel, b.geom, rank, seed=0, stats=statistics(case_id))
    assert all(k.dtype == kernel.dtype for k in kernels)
    assert_outputs_close(factorizer.reconstruct(kernels, b.geom, rank), kernel, rtol=1e-4)


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_data_aware_output_error_never_exceeds_weight_only(case_id, method):
    b = built(case_id)
    full = b.factorizer(method).full_rank(b.geom)
    gains = []
    for rank in sorted({1, low_rank(b, method), max(1, full - 1)}):
        weight, aware, scale = errors(case_id, method, rank)
        assert aware <= weight + 1e-7 * scale, (rank, weight, aware)
        gains.append(weight - aware)
    assert max(gains) > 0  # the statistics really change the factors


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_data_aware_chain_has_the_same_stages_and_materializes(case_id, method):
    b = built(case_id)
    factorizer, rank = b.factorizer(method), low_rank(b, method)
    kernels = factorizer.decompose(canonical_kernel(b.layer), b.geom, rank, seed=0, stats=statistics(case_id))
    weight = factorizer.decompose(canonical_kernel(b.layer), b.geom, rank, seed=0)
    assert [k.shape for k in kernels] == [k.shape for k in weight]


def test_wrong_statistics_shape_is_refused():
    b = built("conv2d_grouped")
    factorizer = b.factorizer("svd")
    stats = LayerStatistics(np.eye(5)[None], 10)
    with pytest.raises(ValueError, match=r"expected moments of shape \(2, 27, 27\), received \(1, 5, 5\)"):
        factorizer.decompose(canonical_kernel(b.layer), b.geom, 2, seed=0, stats=stats)


@pytest.mark.parametrize(("case_id", "method"), EXACT_PAIRS)
def test_rank_deficient_moment_is_safe_and_exact_at_full_rank(case_id, method):
    """One input vector (moment of rank 1) with a dead channel: finite factors, and the
    full rank still reproduces the kernel (the ridge keeps every direction)."""
    b = built(case_id)
    factorizer, kernel = b.factorizer(method), canonical_kernel(b.layer)
    groups, dim, _ = statistics(case_id).moments.shape
    vector = np.random.default_rng(0).standard_normal(dim)
    vector[0] = 0.0
    stats = LayerStatistics(np.stack([np.outer(vector, vector)] * groups), 1)
    for rank in (1, factorizer.full_rank(b.geom)):
        kernels = factorizer.decompose(kernel, b.geom, rank, seed=0, stats=stats)
        assert all(np.isfinite(k).all() for k in kernels)
    assert_outputs_close(factorizer.reconstruct(kernels, b.geom, rank), kernel, rtol=1e-4)


@pytest.mark.parametrize(("case_id", "method"), EXACT_PAIRS)
def test_materialize_with_calibration_and_refit_is_exact_at_full_rank(case_id, method):
    """Every layer kind through the Keras path: statistics pass, data-aware chain, refit."""
    b = built(case_id)
    x = anisotropic_input(case_id)
    plan = {NAME: (method, b.spec.max_rank)}
    compressed = lo.materialize(b.model, plan, calibration=x)
    assert_outputs_close(predict(compressed, x), predict(b.model, x), rtol=1e-4)


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_refit_lowers_the_calibration_error_of_every_layer_kind(case_id, method):
    b = built(case_id)
    x = anisotropic_input(case_id)
    plan = {NAME: (method, low_rank(b, method))}
    reference = predict(b.model, x)
    error = lambda m: float(np.linalg.norm(predict(m, x) - reference))
    aware = lo.materialize(b.model, plan, calibration=x, refit=False)
    refit = lo.materialize(b.model, plan, calibration=x)
    assert [w.shape for w in refit.weights] == [w.shape for w in aware.weights]
    assert error(refit) <= error(aware) * (1 + 1e-4) + 1e-6


def test_column_fits_equal_fit_last_on_every_column_subset():
    """The precomputed fits (one gram for all ranks) are fit_last's normal equations."""
    from lrf_optuna.factorizers.data_aware import ColumnFits, fit_last, regularized

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 30))
    moment = regularized(vectors.T @ vectors / 40)
    kernel, design = rng.standard_normal((30, 7)), rng.standard_normal((30, 12))
    fits = ColumnFits.of(design, moment, kernel, moment @ kernel)
    for columns in (np.arange(1), np.arange(5), np.array([0, 1, 6, 7]), np.arange(12)):
        expected, expected_error = fit_last(design[:, columns], moment, kernel)
        last, error = fits.fit(columns)
        np.testing.assert_allclose(last, expected, rtol=1e-9, atol=1e-12)
        assert error == pytest.approx(expected_error, rel=1e-9)


@pytest.mark.parametrize("rank", [1, 3, 5, 6])
def test_spatial_svd_precomputed_fits_match_the_direct_fit(rank):
    """Ranks up to the useful maximum use ColumnFits, past it the direct fit: same factors."""
    from lrf_optuna.factorizers.conv_spatial_svd import _AwareGroup, _design
    from lrf_optuna.factorizers.data_aware import fit_last, regularized

    rng = np.random.default_rng(4)
    part = rng.standard_normal((3, 3, 2, 4))
    vectors = rng.standard_normal((50, 18))
    moment = vectors.T @ vectors / 50
    left = np.linalg.svd(part.transpose(0, 2, 1, 3).reshape(6, 12))[0]
    group = _AwareGroup.of(part, moment, left, bound=5)
    vertical, horizontal = group.at_rank(rank)
    errors = []
    for candidate in group.lefts:
        errors.append(fit_last(_design(candidate, rank, 3, 3), regularized(moment), group.kernel))
    last, _ = min(errors, key=lambda pair: pair[1])
    np.testing.assert_allclose(horizontal.reshape(last.shape), last, rtol=1e-8, atol=1e-10)
    assert vertical.shape == (3, 1, 2, rank)
