"""TFLite export: convert a Keras model, write it atomically, check it against Keras.

Conversion uses ``tf.lite.TFLiteConverter.from_keras_model`` (built-in TFLite ops only, so the
file runs on any TFLite/LiteRT runtime). Files are run with the LiteRT interpreter
(``ai_edge_litert``, PyPI ``ai-edge-litert``) when installed, else with TensorFlow's
deprecated ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np

from lrf_optuna.files._models import writable_directory

__all__ = ["QUANTIZATIONS", "convert_tflite", "export_tflite", "load_interpreter", "run_interpreter"]

logger = logging.getLogger(__name__)

# Quantization names -> largest |tflite - keras| allowed, as a fraction of max(1, largest |keras
# output|). Measured on the reference models (random inputs): float32 ~5e-7, float16 ~1e-3,
# dynamic (int8 weights) ~2e-2.
QUANTIZATIONS = {None: 1e-4, "float16": 1e-2, "dynamic": 1e-1}
# (module, attribute) tried in order; the first importable one runs .tflite files.
INTERPRETERS = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tensorflow.lite.python.interpreter", "Interpreter"),
)
CHECK_SAMPLES = 4


def check_quantization(quantization: str | None) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Invalid `quantization`: expected one of {list(QUANTIZATIONS)}, received {quantization!r}"
        )


def input_shape(model: keras.Model) -> tuple[int, ...]:
    """The per-sample input shape; refuses what a TFLite file or a random input cannot hold."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Invalid `model`: expected a keras.Model, received {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Invalid model '{model.name}' for TFLite export and timing: expected one input and one "
            f"output, received {len(model.inputs)} input(s) and {len(model.outputs)} output(s). "
            "Export a single-input, single-output model."
        )
    dtype = str(model.inputs[0].dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(
            f"Invalid model '{model.name}' for TFLite export and timing: expected a float input, "
            f"received {dtype} (random inputs could not stand for its data). Export it with "
            "tf.lite.TFLiteConverter yourself."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            f"Invalid model '{model.name}' for TFLite export and timing: expected a fixed input shape "
            f"(batch axis aside), received {(None, *shape)}. Rebuild it with keras.Input(shape=...) "
            "of fixed sizes."
        )
    return shape


def random_inputs(model: keras.Model, batch_size: int, *, seed: int) -> np.ndarray:
    """``batch_size`` seeded inputs uniform in [0, 1) (image-like) of the model's input shape."""
    shape = input_shape(model)
    return np.random.default_rng(seed).random((batch_size, *shape), dtype=np.float32)


def convert_tflite(model: keras.Model, *, quantization: str | None = None) -> bytes:
    """The ``.tflite`` flatbuffer of ``model``; ValueError naming the ops TFLite lacks."""
    import tensorflow as tf

    check_quantization(quantization)
    input_shape(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    chatter = io.StringIO()  # Keras prints the temporary SavedModel's signature
    try:
        with contextlib.redirect_stdout(chatter):
            content = converter.convert()
    except Exception as error:
        raise ValueError(
            f"Invalid model '{model.name}' for TFLite: the converter refused it ({_reason(error)}). "
            "Replace the layers or operations named here with built-in Keras layers, then export again."
        ) from error
    logger.debug("converter output: %s", chatter.getvalue())
    return content


def _reason(error: Exception) -> str:
    """The converter's one useful line (which ops lack TFLite kernels), else its last line."""
    text = str(error)
    ops = re.findall(r"^\s*((?:TF Select|Custom|Flex) ops: .*)$", text, flags=re.MULTILINE)
    if ops:
        return "ops without a built-in TFLite kernel: " + "; ".join(sorted(set(ops)))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1][:300] if lines else ''}"


def load_interpreter(
    *, model_path: str | os.PathLike | None = None, content: bytes | None = None, threads: int = 1
):
    """A TFLite interpreter (LiteRT first, TensorFlow's second) running ``threads`` threads."""
    for module, attribute in INTERPRETERS:
        try:
            interpreter_class = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
        path = None if model_path is None else str(model_path)
        return interpreter_class(model_path=path, model_content=content, num_threads=threads)
    raise ImportError(
        "No TFLite interpreter is installed: expected LiteRT (module ai_edge_litert) or TensorFlow's "
        "tf.lite.Interpreter, found neither. Install one: pip install ai-edge-litert"
    )


def run_interpreter(interpreter, x: np.ndarray) -> np.ndarray:
    """Outputs of a single-input, single-output interpreter on the batch ``x``."""
    (source,) = prepared(interpreter, x.shape).get_input_details()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def prepared(interpreter, shape: tuple[int, ...]):
    """``interpreter`` with its tensors allocated for inputs of ``shape`` (batch axis first)."""
    (source,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(source["index"], shape)
    interpreter.allocate_tensors()
    return interpreter


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    quantization: str | None = None,
    check: bool = True,
    atol: float | None = None,
    inputs: np.ndarray | None = None,
    seed: int = 0,
) -> Path:
    """Convert ``model`` to ``path`` (a ``.tflite`` file) and check the file against Keras.

    ``quantization``: None (float32), ``"float16"`` (float16 weights) or ``"dynamic"`` (int8
    weights, activations quantized on the fly). The file is written to a temporary file beside
    ``path``, run on ``inputs`` (default: 4 seeded random inputs uniform in [0, 1)) and
    compared with ``model``; only then renamed to ``path``. ``atol`` (default: a fraction of
    the largest Keras output per quantization, see ``QUANTIZATIONS``) bounds the largest absolute
    difference. On any failure ``path`` is untouched and no temporary file is left.
    """
    check_quantization(quantization)
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(
            f"Invalid output path '{path}': expected a file name ending in .tflite, received "
            f"{path.suffix or 'no extension'}. Name the output e.g. '{path.with_suffix('.tflite').name}'."
        )
    if atol is not None and not atol > 0:
        raise ValueError(f"Invalid `atol`: expected a positive number, received {atol}")
    content = convert_tflite(model, quantization=quantization)
    writable_directory(path.parent, option="output directory")
    checked = ""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        if check:
            x = random_inputs(model, CHECK_SAMPLES, seed=seed) if inputs is None else np.asarray(inputs)
            checked = _check(
                model, load_interpreter(model_path=temporary), x, quantization=quantization, atol=atol
            )
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    logger.info("wrote %s (%d bytes, quantization %s)%s", path, len(content), quantization, checked)
    return path


def _check(model: keras.Model, interpreter, x: np.ndarray, *, quantization, atol: float | None) -> str:
    expected = np.asarray(model.predict_on_batch(x.astype(np.float32)))
    actual = run_interpreter(interpreter, x.astype(np.float32))
    if actual.shape != expected.shape:
        raise ValueError(
            f"Invalid TFLite conversion of '{model.name}': expected output shape {expected.shape}, "
            f"received {actual.shape}. Nothing was written."
        )
    limit = (
        atol if atol is not None else QUANTIZATIONS[quantization] * max(1.0, float(np.abs(expected).max()))
    )
    difference = float(np.abs(actual - expected).max())
    if not difference <= limit:  # also catches NaN
        raise ValueError(
            f"Invalid TFLite conversion of '{model.name}' (quantization {quantization}): expected outputs "
            f"within {limit:.3g} of Keras's, received a largest absolute difference of {difference:.6g}. "
            "Nothing was written. Try quantization=None, or pass a larger `atol` if this error is "
            "acceptable for your use."
        )
    return f", checked on {len(x)} inputs: largest |tflite - keras| {difference:.3g} (allowed {limit:.3g})"
