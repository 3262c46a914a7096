"""Shared helpers: tiny single-layer models, seeded weights and output comparison."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tiny SVDs: a multithreaded OpenBLAS only adds contention on a busy 2-core machine
# (0.9 s instead of 3 ms for a 576 x 64 SVD was measured), and one thread keeps the
# floating-point results independent of the thread count.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import keras
import numpy as np
import pytest

import lrf_optuna  # importing it registers TTDense/TuckerDense for load_model
import lrf_optuna as lo
import search_support
from lrf_optuna.results import _report

# float32 outputs of a chain of layers vs the original layer: relative to the largest output.
FLOAT32_RTOL = 1e-5


def single_layer_model(input_shape: tuple[int, ...], layer: keras.layers.Layer) -> keras.Model:
    """Input -> ``layer``, as a Functional model."""
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, layer(inputs))


def randomize_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """Overwrite every weight with seeded values (positive ones for BatchNorm variances)."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            values.append(rng.uniform(0.5, 1.5, shape))
        else:
            values.append(rng.standard_normal(shape) / np.sqrt(max(1, _fan_in(shape))))
    for weight, value in zip(model.weights, values):
        weight.assign(value.astype(weight.dtype))
    return model


def _fan_in(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def sample_input(model: keras.Model, batch: int = 2, seed: int = 1) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype("float32")


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_outputs_close(actual: np.ndarray, expected: np.ndarray, rtol: float = FLOAT32_RTOL) -> None:
    """Max abs difference within ``rtol`` of the largest expected magnitude."""
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, "degenerate reference output"
    error = float(np.max(np.abs(actual - expected)))
    assert error <= rtol * scale, f"max abs error {error:.3g} > {rtol:g} * {scale:.3g}"


def weights_by_path(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}


@pytest.fixture(autouse=True)
def _seed_keras():
    keras.utils.set_random_seed(0)


# Reports export PNGs through Chromium when it is installed: ~2.5 s CPU and ~10 s wall per
# report, for files no test but test_report.py's PNG test reads. That test restores it.
WRITE_PNGS = _report._write_pngs


@pytest.fixture(autouse=True)
def _no_png_export(monkeypatch):
    monkeypatch.setattr(_report, "_write_pngs", lambda figures, out: [])


TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def get_nested_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """The layer at ``path`` ("outer/inner" for nested models)."""
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def canonical_kernel(layer: keras.layers.Layer) -> np.ndarray:
    """The layer's kernel in the documented canonical layout, derived here from Keras."""
    if isinstance(layer, SEPARABLE):
        pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel)
        return pointwise.reshape(pointwise.shape[-2:])
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return np.swapaxes(kernel, -1, -2) if isinstance(layer, TRANSPOSED) else kernel


def set_canonical_kernel(layer: keras.layers.Layer, kernel: np.ndarray) -> None:
    if isinstance(layer, SEPARABLE):
        layer.pointwise_kernel.assign(kernel.reshape(tuple(layer.pointwise_kernel.shape)))
    elif isinstance(layer, TRANSPOSED):
        layer.kernel.assign(np.swapaxes(kernel, -1, -2))
    else:
        layer.kernel.assign(kernel)


def with_kernels(model: keras.Model, kernels: dict[str, np.ndarray]) -> keras.Model:
    """A copy of ``model`` whose named layers use the given canonical kernels."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for path, kernel in kernels.items():
        set_canonical_kernel(get_nested_layer(copy, path), kernel)
    return copy


def reconstructed_kernels(model: keras.Model, plan: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """For each planned layer, the kernel its factorized chain computes (NumPy only)."""
    analysis = lrf_optuna.analyze(model)
    result = {}
    for path, (method, rank) in plan.items():
        geom = analysis.specs[path].geometry
        factorizer = lrf_optuna.factorizers.get_factorizer(geom.kind, method)
        kernel = canonical_kernel(get_nested_layer(model, path))
        result[path] = factorizer.reconstruct(factorizer.decompose(kernel, geom, rank, seed=seed), geom, rank)
    return result


def reference_model(model: keras.Model, plan: dict, seed: int = 0) -> keras.Model:
    """The original architecture carrying the kernels that ``materialize(model, plan)`` computes."""
    return with_kernels(model, reconstructed_kernels(model, plan, seed))


# Shared by the search tests (profile, proxy, search space, study, profile cache): one tiny
# CNN, its calibration batch and its profile per test module.
@pytest.fixture(scope="module")
def model():
    return search_support.tiny_cnn()


@pytest.fixture(scope="module")
def data():
    return search_support.calibration(32)


@pytest.fixture(scope="module")
def profile(model, data):
    # with the network-output columns, which a default search leaves out
    settings = search_support.settings(output_samples=256)
    return lo.profile_model(model, data, settings=settings, show_progress=False)
