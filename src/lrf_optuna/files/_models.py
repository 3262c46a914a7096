"""Loading and saving user files safely: models, datasets."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

from lrf_optuna.model._graph import recursion_headroom

__all__ = ["load_arrays", "load_inputs", "load_model_file", "save_model_atomic", "writable_directory"]

# Keras maps a loaded graph recursively: room for factorized models thousands of layers deep.
LOAD_RECURSION_LIMIT = 10_000


def load_model_file(path: str | os.PathLike) -> keras.Model:
    """A ``.keras`` model loaded with ``safe_mode=True`` (no arbitrary code is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Invalid model path: expected an existing .keras file, received '{path}' (not found). "
            "Save your model with model.save('model.keras') and pass that path."
        )
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            f"Invalid model file '{path}': expected a Keras 3 '.keras' archive, received "
            f"{'a ' + path.suffix + ' file' if path.suffix else 'a file without extension'}. "
            "Re-save it with model.save('model.keras')."
        )
    import lrf_optuna.layers  # noqa: F401  (registers TTDense/TuckerDense for reloading)

    try:
        with recursion_headroom(LOAD_RECURSION_LIMIT):
            return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:
        raise ValueError(_load_error(path, error)) from error


def _load_error(path: Path, error: Exception) -> str:
    text = str(error)
    if "safe_mode" in text or "Lambda" in text:
        return (
            f"Invalid model file '{path}': expected built-in or registered layers, received a Lambda "
            "layer holding Python code, which is never loaded (safe_mode=True: it could run arbitrary "
            "code). Fix: replace the Lambda with built-in layers or a custom layer registered with "
            "@keras.saving.register_keras_serializable, then re-save the model."
        )
    if "Could not locate class" in text:
        name = text.split("'")[1] if text.count("'") >= 2 else "?"
        return (
            f"Invalid model file '{path}': expected a Sequential or Functional model of built-in "
            f"layers, received one whose class '{name}' is not registered (a subclassed model or an "
            "unregistered custom layer). Fix: rebuild it as keras.Model(inputs, outputs), copy the "
            "weights with set_weights, and save that model."
        )
    return (
        f"Invalid model file '{path}': expected a Keras 3 '.keras' archive, received one that Keras "
        f"cannot load ({type(error).__name__}: {text[:300]}). Re-save it with model.save('model.keras')."
    )


def writable_directory(directory: str | os.PathLike, *, option: str = "output directory") -> Path:
    """``directory``, created if needed, after checking that a file can be written there."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        received = (
            "a file, not a directory"
            if isinstance(error, (FileExistsError, NotADirectoryError))
            else f"one that cannot be written ({error.strerror or error})"
        )
        raise PermissionError(
            f"Invalid {option} '{directory}': expected a writable directory, received {received}. "
            "Choose another path, or fix the directory's permissions."
        ) from error
    return directory


def save_model_atomic(
    model: keras.Model, path: str | os.PathLike, *, protect: list[str | os.PathLike] = ()
) -> Path:
    """Save to ``path`` through a temporary file and a rename: never a half-written model."""
    path = Path(path)
    for protected in protect:
        if path.resolve() == Path(protected).resolve():
            raise ValueError(
                f"Invalid output path '{path}': expected a new file, received the input model's path"
            )
    writable_directory(path.parent)
    temporary = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_arrays(spec: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``"fashion-mnist"`` or an ``.npz`` with x_train, y_train, x_test, y_test."""
    if spec == "fashion-mnist":
        from lrf_optuna.data import fashion_mnist

        return fashion_mnist()
    path = Path(spec)
    if not path.is_file() or path.suffix != ".npz":
        raise FileNotFoundError(
            f"Invalid `--data`: expected 'fashion-mnist' or an existing .npz file, received '{spec}'"
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
            if missing:
                raise ValueError(
                    f"Invalid data file '{path}': expected arrays x_train, y_train, x_test, y_test; missing {missing}"
                )
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"Invalid data file '{path}': expected a NumPy .npz archive ({error})") from error
    except ValueError as error:
        if str(error).startswith("Invalid data file"):
            raise
        raise ValueError(
            f"Invalid data file '{path}': expected arrays of numbers, received ones that cannot be "
            f"loaded safely ({error})"
        ) from error


def load_inputs(spec: str) -> np.ndarray:
    """Model inputs for a search: a ``.npy`` array, or ``x_train`` of ``load_arrays(spec)``."""
    if not spec.endswith(".npy"):
        return load_arrays(spec)[0][0]
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"Invalid `--data`: expected an existing .npy file, received '{spec}'")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(
            f"Invalid data file '{path}': expected a NumPy array of numbers, received one that "
            f"cannot be loaded safely ({error})"
        ) from error
