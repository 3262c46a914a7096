"""The contract every factorizer meets, on every layer kind it applies to.

Each case is a one-layer model (Input -> layer named "target") with seeded random
weights; every check runs for every method that applies to the case. References are
computed here with NumPy (SVD truncations, HOSVD projections, TT-SVD bounds, CP
factor products) or with the original Keras layer carrying the reconstructed kernel.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import (
    assert_outputs_close,
    canonical_kernel,
    predict,
    randomize_weights,
    sample_input,
    single_layer_model,
    with_kernels,
)

L = keras.layers
NAME = "target"

CONV_2D = ("tucker2", "cp", "svd", "spatial_svd")
CONV_ND = ("tucker2", "cp", "svd")
CONV_3D = ("tucker2", "svd")  # no CP: no stock depthwise 3-D layer (a grouped Conv3D is slower)
TRANSPOSED_2D = ("tucker2", "svd", "spatial_svd")
TRANSPOSED_ND = ("tucker2", "svd")
DENSE = ("svd", "tt", "tucker")
SVD_LIKE = ("svd", "spatial_svd")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    input_shape: tuple[int, ...]
    make: Callable[[], keras.layers.Layer]
    methods: tuple[str, ...]  # applicable methods, in the library's listing order
    layer_type: str
    low: tuple[tuple[str, int], ...] = ()  # (method, rank) overriding ``low_rank``


CASES = (
    Case("conv1d_strided", (11, 4), lambda: L.Conv1D(6, 3, strides=2, name=NAME), CONV_ND, "Conv1D"),
    # 16 -> 2 channels with a 2-tap kernel: the input-channel unfolding has rank <= 4,
    # below tucker2's input rank at most ranks.
    Case(
        "conv1d_channel_reduction",
        (9, 16),
        lambda: L.Conv1D(2, 2, name=NAME),
        CONV_ND,
        "Conv1D",
        low=(("tucker2", 1), ("cp", 1)),
    ),
    Case(
        "conv1d_causal_dilated",
        (10, 4),
        lambda: L.Conv1D(5, 3, padding="causal", dilation_rate=2, name=NAME),
        CONV_ND,
        "Conv1D",
    ),
    Case(
        "conv2d_strided_relu",
        (9, 7, 5),
        lambda: L.Conv2D(8, (3, 2), strides=(2, 1), padding="same", activation="relu", name=NAME),
        CONV_2D,
        "Conv2D",
    ),
    Case(
        "conv2d_dilated",
        (9, 8, 4),
        lambda: L.Conv2D(6, (2, 3), dilation_rate=(2, 1), name=NAME),
        CONV_2D,
        "Conv2D",
    ),
    # 1x1: only channel SVD is offered (the others compute the same approximation, dearer).
    Case("conv2d_pointwise", (5, 5, 8), lambda: L.Conv2D(6, 1, name=NAME), ("svd",), "Conv2D"),
    Case("conv2d_grouped", (7, 7, 6), lambda: L.Conv2D(8, 3, groups=2, name=NAME), CONV_2D, "Conv2D"),
    Case(
        "conv3d_no_bias",
        (5, 6, 5, 3),
        lambda: L.Conv3D(6, (3, 2, 2), use_bias=False, name=NAME),
        CONV_3D,
        "Conv3D",
    ),
    Case(
        "conv3d_grouped",
        (4, 5, 4, 4),
        lambda: L.Conv3D(6, 2, groups=2, padding="same", name=NAME),
        CONV_3D,
        "Conv3D",
    ),
    Case(
        "conv1d_transpose",
        (6, 4),
        lambda: L.Conv1DTranspose(5, 3, strides=2, name=NAME),
        TRANSPOSED_ND,
        "Conv1DTranspose",
    ),
    Case(
        "conv2d_transpose_output_padding",
        (5, 4, 3),
        lambda: L.Conv2DTranspose(6, (3, 2), strides=2, output_padding=1, name=NAME),
        TRANSPOSED_2D,
        "Conv2DTranspose",
    ),
    Case(
        "conv3d_transpose",
        (3, 3, 3, 3),
        lambda: L.Conv3DTranspose(4, 2, strides=(1, 2, 1), padding="same", name=NAME),
        TRANSPOSED_ND,
        "Conv3DTranspose",
    ),
    Case(
        "separable_conv1d",
        (10, 4),
        lambda: L.SeparableConv1D(6, 3, depth_multiplier=2, name=NAME),
        ("svd",),
        "SeparableConv1D",
    ),
    Case(
        "separable_conv2d",
        (8, 8, 3),
        lambda: L.SeparableConv2D(6, 3, depth_multiplier=2, strides=2, padding="same", name=NAME),
        ("svd",),
        "SeparableConv2D",
    ),
    Case("dense_2d_input", (36,), lambda: L.Dense(30, activation="tanh", name=NAME), DENSE, "Dense"),
    Case("dense_3d_input", (5, 18), lambda: L.Dense(8, name=NAME), DENSE, "Dense"),
    # Prime sizes: modes (7, 1) x (5, 1), so TT has no inner bond and is not offered,
    # and Tucker's mode ranks can exceed what the other modes allow.
    Case("dense_prime_sizes", (7,), lambda: L.Dense(5, name=NAME), ("svd", "tucker"), "Dense"),
)
CASE_BY_ID = {case.id: case for case in CASES}


def _pairs(keep: Callable[[str], bool] = lambda method: True) -> list:
    return [
        pytest.param(case.id, method, id=f"{case.id}-{method}")
        for case in CASES
        for method in case.methods
        if keep(method)
    ]


ALL_PAIRS = _pairs()
EXACT_PAIRS = _pairs(lambda method: method != "cp")
CASE_IDS = [pytest.param(case.id, id=case.id) for case in CASES]
CP_CASE_IDS = [pytest.param(case.id, id=case.id) for case in CASES if "cp" in case.methods]


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass(frozen=True)
class Built:
    case_id: str
    model: keras.Model
    spec: lo.model.LayerSpec
    x: np.ndarray
    y: np.ndarray

    @property
    def geom(self):
        return self.spec.geometry

    @property
    def layer(self) -> keras.layers.Layer:
        return self.model.get_layer(NAME)

    def factorizer(self, method: str) -> lo.factorizers.Factorizer:
        return lo.factorizers.get_factorizer(self.geom.kind, method)


@functools.cache
def built(case_id: str) -> Built:
    """The case's model with seeded random weights (built once per session)."""
    case = CASE_BY_ID[case_id]
    keras.utils.set_random_seed(0)
    model = randomize_weights(single_layer_model(case.input_shape, case.make()), seed=7)
    (spec,) = lo.model.compressible_layers(model)
    x = sample_input(model)
    return Built(case_id, model, spec, x, predict(model, x))


@functools.cache
def materialized(case_id: str, method: str, rank: int) -> keras.Model:
    return lo.materialize(built(case_id).model, {NAME: (method, rank)}, seed=0)


def low_rank(b: Built, method: str) -> int:
    """A rank that truncates: half the method's exact rank unless the case says otherwise."""
    override = dict(CASE_BY_ID[b.case_id].low).get(method)
    return override or max(1, b.factorizer(method).full_rank(b.geom) // 2)


def with_kernel(model: keras.Model, kernel: np.ndarray) -> keras.Model:
    return with_kernels(model, {NAME: kernel})


NUMPY_ACTIVATIONS = {"linear": lambda v: v, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0)}


def numpy_dense(layer: keras.layers.Layer, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = x.astype(np.float64) @ kernel.astype(np.float64)
    if layer.use_bias:
        out = out + keras.ops.convert_to_numpy(layer.bias)
    return NUMPY_ACTIVATIONS[layer.get_config()["activation"]](out)


def groups_of(kernel: np.ndarray, groups: int) -> list[np.ndarray]:
    """Canonical grouped kernel -> per-group ``(*k, cin_g, cout_g)`` blocks."""
    cout_g = kernel.shape[-1] // groups
    return [kernel[..., g * cout_g : (g + 1) * cout_g] for g in range(groups)]


def svd_matrix(block: np.ndarray, method: str, kind: str) -> np.ndarray:
    """The matrix a svd-type method truncates (channel SVD, spatial SVD, Dense SVD)."""
    if method == "spatial_svd":
        kh, kw, cin, cout = block.shape
        return block.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
    if kind == "conv":
        return block.reshape(-1, block.shape[-1])
    return block


def truncated(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, float]:
    """Best rank-``rank`` approximation (Eckart-Young) and its squared error."""
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank], float(np.sum(s[rank:] ** 2))


def projector(tensor: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """Orthogonal projector on the ``rank`` leading left singular vectors of a mode unfolding."""
    unfolding = np.moveaxis(tensor, axis, 0).reshape(tensor.shape[axis], -1)
    u = np.linalg.svd(unfolding.astype(np.float64), full_matrices=False)[0][:, :rank]
    return u @ u.T


def project_mode(tensor: np.ndarray, axis: int, matrix: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.tensordot(matrix, tensor, axes=([1], [axis])), 0, axis)


def rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_spec_lists_applicable_methods_and_canonical_geometry(case_id):
    b, case = built(case_id), CASE_BY_ID[case_id]
    assert b.spec.name == NAME
    assert b.spec.layer_type == case.layer_type
    assert b.spec.kind == ("dense" if case.layer_type == "Dense" else "conv")
    assert b.spec.methods == case.methods
    assert b.geom.kernel_shape == canonical_kernel(b.layer).shape
    assert b.spec.max_rank == max(b.factorizer(m).full_rank(b.geom) for m in case.methods)
    assert b.spec.cost == lo.model_cost(b.model)
    assert b.spec.useful_ranks == {m: b.factorizer(m).useful_max_rank(b.geom) for m in case.methods}


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("case_id", "method"), EXACT_PAIRS)
def test_full_rank_model_reproduces_original_outputs(case_id, method):
    b = built(case_id)
    compressed = materialized(case_id, method, b.spec.max_rank)
    assert_outputs_close(predict(compressed, b.x), b.y)


@pytest.mark.parametrize(("case_id", "method"), EXACT_PAIRS)
def test_reconstruct_at_full_rank_is_the_kernel(case_id, method):
    b = built(case_id)
    factorizer, kernel = b.factorizer(method), canonical_kernel(b.layer)
    rank = factorizer.full_rank(b.geom)
    kernels = factorizer.decompose(kernel, b.geom, rank, seed=0)
    assert all(k.dtype == kernel.dtype for k in kernels)
    assert_outputs_close(factorizer.reconstruct(kernels, b.geom, rank), kernel)


@pytest.mark.parametrize("case_id", CP_CASE_IDS)
def test_cp_is_exact_on_a_kernel_of_that_cp_rank(case_id):
    """Channel factors with orthonormal columns keep ALS (capped at 100 sweeps) out of
    its slow "swamps", so the decomposition at the true CP rank must recover the kernel."""
    b, cp_rank = built(case_id), 2
    geom, rng = b.geom, np.random.default_rng(3)
    spatial = int(np.prod(geom.kernel_size))
    orthonormal = lambda n: np.linalg.qr(rng.standard_normal((n, cp_rank)))[0]
    blocks = []
    for _ in range(geom.groups):
        a = rng.standard_normal((spatial, cp_rank))
        block = np.einsum("sr,ir,or->sio", a, orthonormal(geom.in_per_group), orthonormal(geom.out_per_group))
        blocks.append(block.reshape(geom.kernel_size + block.shape[1:]))
    kernel = np.concatenate(blocks, axis=-1).astype("float32")
    factorizer = b.factorizer("cp")
    kernels = factorizer.decompose(kernel, geom, cp_rank, seed=0)
    assert rel_error(factorizer.reconstruct(kernels, geom, cp_rank), kernel) < 1e-5


# --------------------------------------------------------------------------- low rank vs NumPy


@pytest.mark.parametrize(("case_id", "method"), _pairs(lambda m: m in SVD_LIKE))
def test_svd_truncation_is_the_eckart_young_optimum(case_id, method):
    b = built(case_id)
    factorizer, kernel, rank = b.factorizer(method), canonical_kernel(b.layer), low_rank(b, method)
    assert rank < factorizer.full_rank(b.geom)
    rec = factorizer.reconstruct(factorizer.decompose(kernel, b.geom, rank, seed=0), b.geom, rank)
    groups = b.geom.groups if b.geom.kind == "conv" else 1
    optimum, error = 0.0, 0.0
    for block, rec_block in zip(groups_of(kernel, groups), groups_of(rec, groups)):
        best, tail = truncated(svd_matrix(block, method, b.geom.kind), rank)
        got = svd_matrix(rec_block, method, b.geom.kind)
        np.testing.assert_allclose(got, best, atol=1e-5 * np.abs(best).max())
        optimum += tail
        error += float(np.sum((block.astype(np.float64) - rec_block) ** 2))
    assert optimum > 0
    assert error == pytest.approx(optimum, rel=1e-4)


@pytest.mark.parametrize(("case_id", "method"), _pairs(lambda m: m == "tucker2"))
def test_tucker2_truncation_is_the_hosvd_projection(case_id, method):
    b = built(case_id)
    factorizer, kernel, rank = b.factorizer(method), canonical_kernel(b.layer), low_rank(b, method)
    rec = factorizer.reconstruct(factorizer.decompose(kernel, b.geom, rank, seed=0), b.geom, rank)
    expected = []
    for block in groups_of(kernel, b.geom.groups):
        r_in, r_out = min(rank, block.shape[-2]), min(rank, block.shape[-1])
        ref = project_mode(block, block.ndim - 2, projector(block, -2, r_in))
        expected.append(project_mode(ref, block.ndim - 1, projector(block, -1, r_out)))
    expected = np.concatenate(expected, axis=-1)
    assert rel_error(expected, kernel) > 1e-3  # the rank really truncates
    np.testing.assert_allclose(rec, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("case_id", "method"), _pairs(lambda m: m == "tucker"))
def test_dense_tucker_truncation_is_the_hosvd_projection(case_id, method):
    b = built(case_id)
    factorizer, kernel = b.factorizer(method), canonical_kernel(b.layer)
    rank = low_rank(b, method)
    (stage,) = factorizer.stages(b.geom, rank)
    tensor = kernel.astype(np.float64).reshape(stage.in_modes + stage.out_modes)
    ranks = stage.in_ranks + stage.out_ranks
    assert ranks == tuple(min(rank, m) for m in stage.in_modes + stage.out_modes)
    expected = tensor
    for axis, r in enumerate(ranks):
        expected = project_mode(expected, axis, projector(tensor, axis, r))
    rec = factorizer.reconstruct(factorizer.decompose(kernel, b.geom, rank, seed=0), b.geom, rank)
    assert rel_error(expected, tensor) > 1e-3
    np.testing.assert_allclose(rec, expected.reshape(kernel.shape), atol=1e-5 * np.abs(kernel).max())


@pytest.mark.parametrize(("case_id", "method"), _pairs(lambda m: m == "tt"))
def test_tt_truncation_meets_the_tt_svd_bounds(case_id, method):
    """TT ranks of the result are within the bond ranks, and the error lies between the
    best single-cut truncation (lower bound) and Oseledets' sum-of-tails bound."""
    b = built(case_id)
    factorizer, kernel = b.factorizer(method), canonical_kernel(b.layer)
    rank = low_rank(b, method)
    (stage,) = factorizer.stages(b.geom, rank)
    d = len(stage.in_modes)
    assert stage.ranks[0] == stage.ranks[-1] == 1 and max(stage.ranks) == rank

    def tt_order(matrix):
        tensor = matrix.astype(np.float64).reshape(stage.in_modes + stage.out_modes)
        return tensor.transpose([axis for k in range(d) for axis in (k, d + k)])

    rec = factorizer.reconstruct(factorizer.decompose(kernel, b.geom, rank, seed=0), b.geom, rank)
    original, approx = tt_order(kernel), tt_order(rec)
    tails = []
    for cut in range(1, d):
        rows = int(np.prod(original.shape[: 2 * cut]))
        bond = stage.ranks[cut]
        assert np.linalg.matrix_rank(approx.reshape(rows, -1), tol=1e-4) <= bond
        tails.append(truncated(original.reshape(rows, -1), bond)[1])
    error = float(np.sum((original - approx) ** 2))
    assert max(tails) > 0
    assert max(tails) * (1 - 1e-4) <= error <= sum(tails) * (1 + 1e-4)


@pytest.mark.parametrize("case_id", CP_CASE_IDS)
def test_cp_reconstruction_is_the_sum_of_rank_one_terms(case_id):
    b = built(case_id)
    geom, factorizer = b.geom, b.factorizer("cp")
    rank, kernel = low_rank(b, "cp"), canonical_kernel(b.layer)
    first, spatial, last = factorizer.decompose(kernel, geom, rank, seed=0)
    spatial_size, cout_g = int(np.prod(geom.kernel_size)), geom.out_per_group
    expected = []
    for g in range(geom.groups):
        terms = slice(g * rank, (g + 1) * rank)
        a_in = first[..., terms].reshape(geom.in_per_group, rank)
        a_spatial = spatial[..., 0, terms].reshape(spatial_size, rank)
        a_out = last[..., g * cout_g : (g + 1) * cout_g].reshape(rank, cout_g)
        block = np.einsum("ir,sr,ro->sio", a_in, a_spatial, a_out)
        expected.append(block.reshape(geom.kernel_size + block.shape[1:]))
    expected = np.concatenate(expected, axis=-1)
    rec = factorizer.reconstruct([first, spatial, last], geom, rank)
    np.testing.assert_allclose(rec, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_low_rank_model_computes_the_reconstructed_kernel(case_id, method):
    """The chain of stock layers equals the original layer with the reconstructed kernel
    (NumPy for Dense, the original Keras layer type for convolutions)."""
    b = built(case_id)
    factorizer, rank = b.factorizer(method), low_rank(b, method)
    kernels = factorizer.decompose(canonical_kernel(b.layer), b.geom, rank, seed=0)
    rec = factorizer.reconstruct(kernels, b.geom, rank)
    if isinstance(b.layer, L.Dense):
        expected = numpy_dense(b.layer, b.x, rec)
    else:
        expected = predict(with_kernel(b.model, rec), b.x)
    assert rel_error(expected, b.y) > 1e-4  # low rank really changes the outputs
    assert_outputs_close(predict(materialized(case_id, method, rank), b.x), expected)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if CASE_BY_ID[c.values[0]].layer_type == "Dense"])
def test_dense_numpy_reference_of_the_original(case_id):
    b = built(case_id)
    assert_outputs_close(b.y, numpy_dense(b.layer, b.x, canonical_kernel(b.layer)))


# --------------------------------------------------------------------------- cost


def _ranks(case_id: str) -> list[int]:
    top = built(case_id).spec.max_rank
    return sorted({1, (1 + top) // 2, top})


@pytest.mark.parametrize("which", ["rank_1", "rank_mid", "rank_max"])
@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_plan_cost_is_the_cost_of_the_materialized_model(case_id, method, which):
    b = built(case_id)
    rank = {"rank_1": 1, "rank_mid": (1 + b.spec.max_rank) // 2, "rank_max": b.spec.max_rank}[which]
    plan = {NAME: (method, rank)}
    predicted = lo.plan_cost(b.model, plan)
    compressed = materialized(case_id, method, rank)
    assert predicted == lo.model_cost(compressed)
    assert predicted == b.factorizer(method).cost(b.geom, rank)  # one-layer model: layer cost only
    assert predicted == lo.analyze(b.model).plan_cost(plan)


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_materialized_params_equal_the_prediction(case_id, method):
    b = built(case_id)
    factorizer, rank = b.factorizer(method), low_rank(b, method)
    compressed = materialized(case_id, method, rank)
    stages = factorizer.stages(b.geom, rank)
    chain = [layer for layer in compressed.layers if layer.name.startswith(f"{NAME}_{method}_")]
    # A stage may be preceded by a weightless padding layer (causal DepthwiseConv1D).
    padding = [layer for layer in chain if isinstance(layer, keras.layers.ZeroPadding1D)]
    assert all(not layer.weights and layer.name.endswith("_pad") for layer in padding)
    chain = [layer for layer in chain if layer not in padding]
    assert [layer.name for layer in chain] == [f"{NAME}_{method}_{i}" for i in range(len(stages))]
    assert len(compressed.layers) == 1 + len(stages) + len(padding)  # InputLayer + the chain
    counted = sum(int(np.prod(w.shape)) for layer in chain for w in layer.weights)
    assert compressed.count_params() == counted == lo.plan_cost(b.model, {NAME: (method, rank)}).params


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_cost_is_monotone_and_useful_rank_is_the_boundary(case_id, method):
    b = built(case_id)
    factorizer, original = b.factorizer(method), lo.model_cost(b.model)
    costs = [factorizer.cost(b.geom, r) for r in range(1, b.spec.max_rank + 1)]
    for smaller, larger in itertools.pairwise(costs):
        assert smaller.params <= larger.params and smaller.macs <= larger.macs
    useful, full = b.spec.useful_ranks[method], factorizer.full_rank(b.geom)
    assert 0 <= useful <= full  # ranks above the exact rank are clamped: never offered
    cheaper = lambda c: c.params < original.params and c.macs < original.macs
    if useful > 0:
        assert cheaper(costs[useful - 1])
        assert cheaper(lo.plan_cost(b.model, {NAME: (method, useful)}))
    if useful < full:
        assert not cheaper(costs[useful])
        assert not cheaper(lo.plan_cost(b.model, {NAME: (method, useful + 1)}))


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_ranks_above_the_exact_rank_are_clamped(case_id, method):
    b = built(case_id)
    factorizer, top = b.factorizer(method), b.spec.max_rank
    full = factorizer.full_rank(b.geom)
    assert 1 <= full <= top
    assert factorizer.stages(b.geom, top) == factorizer.stages(b.geom, full)
    assert factorizer.cost(b.geom, top) == factorizer.cost(b.geom, full)


# --------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_same_seed_gives_identical_weights(case_id, method):
    b = built(case_id)
    plan = {NAME: (method, low_rank(b, method))}
    first = lo.materialize(b.model, plan, seed=0).get_weights()
    second = lo.materialize(b.model, plan, seed=0).get_weights()
    assert len(first) == len(second) > 0
    for a, c in zip(first, second):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(("case_id", "method"), ALL_PAIRS)
def test_keras_file_round_trip(case_id, method, tmp_path):
    b = built(case_id)
    compressed = materialized(case_id, method, low_rank(b, method))
    path = tmp_path / "compressed.keras"
    compressed.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects: TTDense/TuckerDense are registered
    assert [type(layer) for layer in reloaded.layers] == [type(layer) for layer in compressed.layers]
    np.testing.assert_array_equal(predict(reloaded, b.x), predict(compressed, b.x))
