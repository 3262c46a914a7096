"""TFLite export: numerics of the written file, atomic writes, refusals, interpreter choice."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import randomize_weights
from lrf_optuna.runtime._tflite import load_interpreter, run_interpreter

NO_INTERPRETER = ("ai_edge_litert", "ai_edge_litert.interpreter", "tensorflow.lite.python.interpreter")


def tiny_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.DepthwiseConv2D(3, name="depthwise")(h)
    h = keras.layers.Flatten()(h)  # 4 * 4 * 16 = 256
    h = keras.layers.Dense(64, activation="relu", name="fc1")(h)  # big enough to be quantized
    return randomize_weights(keras.Model(inputs, keras.layers.Dense(10, name="fc2")(h), name="tiny"))


def tensorized() -> keras.Model:
    inputs = keras.Input((64,))
    h = lo.layers.TTDense((4, 16), (4, 8), (1, 3, 1), activation="relu", name="tt")(inputs)
    outputs = lo.layers.TuckerDense((4, 8), (2, 5), (2, 3), (2, 3), name="tucker")(h)
    return randomize_weights(keras.Model(inputs, outputs, name="tensorized"))


def materialized_cp_tt_tucker() -> keras.Model:
    return lo.materialize(tiny_cnn(), {"conv": ("cp", 4), "fc1": ("tt", 3), "fc2": ("tucker", 3)}, seed=0)


def materialized_tucker2_svd() -> keras.Model:
    return lo.materialize(tiny_cnn(), {"conv": ("tucker2", 4), "fc1": ("svd", 8)}, seed=0)


def materialized_spatial_svd() -> keras.Model:
    return lo.materialize(tiny_cnn(), {"conv": ("spatial_svd", 3)}, seed=0)


def file_outputs(path, x: np.ndarray) -> np.ndarray:
    return run_interpreter(load_interpreter(model_path=path), x)


def inputs_for(model: keras.Model, batch: int = 5) -> np.ndarray:
    return np.random.default_rng(7).random((batch, *model.inputs[0].shape[1:]), dtype=np.float32)


BUILDS = [tiny_cnn, tensorized, materialized_cp_tt_tucker, materialized_tucker2_svd, materialized_spatial_svd]


@pytest.mark.parametrize("build", BUILDS, ids=lambda build: build.__name__)
def test_float32_file_matches_keras(build, tmp_path):
    model = build()
    path = lo.export_tflite(model, tmp_path / "m.tflite")
    assert path == tmp_path / "m.tflite" and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    x = inputs_for(model)
    expected = model.predict_on_batch(x)
    np.testing.assert_allclose(file_outputs(path, x), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def exported_tiny_cnn(tmp_path_factory):
    """``tiny_cnn()`` and its float32 export, converted once for the tests that only read it."""
    model = tiny_cnn()
    return model, lo.export_tflite(model, tmp_path_factory.mktemp("export") / "full.tflite")


@pytest.mark.parametrize(
    ("quantization", "size_ratio", "rtol"), [("float16", 0.6, 1e-2), ("dynamic", 0.4, 1e-1)]
)
def test_quantized_files_are_smaller_and_close(exported_tiny_cnn, quantization, size_ratio, rtol, tmp_path):
    model, full = exported_tiny_cnn
    small = lo.export_tflite(model, tmp_path / "small.tflite", quantization=quantization)
    assert small.stat().st_size < size_ratio * full.stat().st_size
    x = inputs_for(model)
    expected = model.predict_on_batch(x)
    difference = np.abs(file_outputs(small, x) - expected).max()
    assert 0 < difference < rtol * np.abs(expected).max()  # quantized, yet close


def test_disagreement_is_refused_and_leaves_the_old_file(tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(ValueError, match=r"largest absolute difference of [0-9.e-]+\. Nothing was written"):
        lo.export_tflite(tiny_cnn(), target, quantization="dynamic", atol=1e-9)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]  # no temporary file left


def test_unconvertible_model_is_refused_with_the_op_and_writes_nothing(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.ops.erfinv(keras.layers.Dense(4)(inputs) * 0.1))
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(
        ValueError, match=r"converter refused it \(ops without a built-in TFLite kernel: .*Erfinv"
    ):
        lo.export_tflite(model, target)
    assert target.read_bytes() == b"previous export" and len(list(tmp_path.iterdir())) == 1


def test_models_tflite_cannot_hold_are_refused_before_converting(tmp_path):
    a, b = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"expected one input and one output, received 2 input\(s\)"):
        lo.export_tflite(two_inputs, tmp_path / "m.tflite")
    images = keras.Input((None, None, 3))
    free_size = keras.Model(images, keras.layers.Conv2D(2, 3)(images))
    with pytest.raises(ValueError, match=r"expected a fixed input shape .*received \(None, None, None, 3\)"):
        lo.export_tflite(free_size, tmp_path / "m.tflite")
    tokens = keras.Input((4,), dtype="int32")
    integer_input = keras.Model(tokens, keras.layers.Embedding(10, 2)(tokens))
    with pytest.raises(ValueError, match=r"expected a float input, received int32"):
        lo.export_tflite(integer_input, tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quantization": "int8"}, r"expected one of \[None, 'float16', 'dynamic'\], received 'int8'"),
        ({"atol": 0.0}, r"Invalid `atol`: expected a positive number"),
    ],
)
def test_bad_options_are_refused(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        lo.export_tflite(tiny_cnn(), tmp_path / "m.tflite", **options)
    with pytest.raises(ValueError, match=r"expected a file name ending in \.tflite, received \.keras"):
        lo.export_tflite(tiny_cnn(), tmp_path / "m.keras")
    assert not list(tmp_path.iterdir())


def test_litert_is_preferred(exported_tiny_cnn):
    pytest.importorskip("ai_edge_litert")
    _, path = exported_tiny_cnn
    assert type(load_interpreter(model_path=path)).__module__ == "ai_edge_litert.interpreter"


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tensorflow_interpreter_is_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import raises ImportError
    model = tiny_cnn()
    path = lo.export_tflite(model, tmp_path / "m.tflite")
    interpreter = load_interpreter(model_path=path)
    assert type(interpreter).__module__ == "tensorflow.lite.python.interpreter"
    x = inputs_for(model)
    np.testing.assert_allclose(run_interpreter(interpreter, x), model.predict_on_batch(x), atol=1e-4)


def test_missing_interpreter_is_named_with_the_fix(tmp_path, monkeypatch):
    for module in NO_INTERPRETER:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"found neither\. Install one: pip install ai-edge-litert"):
        lo.export_tflite(tiny_cnn(), tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())
    lo.export_tflite(tiny_cnn(), tmp_path / "unchecked.tflite", check=False)  # converting needs none
    assert [p.name for p in tmp_path.iterdir()] == ["unchecked.tflite"]
