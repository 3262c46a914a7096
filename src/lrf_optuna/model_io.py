"""Loading and saving user files safely: models, datasets."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np

__all__ = ["load_arrays", "load_model_file", "save_model_atomic"]


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

    return keras.models.load_model(path, safe_mode=True, compile=False)


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    with np.load(path, allow_pickle=False) as arrays:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
        if missing:
            raise ValueError(
                f"Invalid data file '{path}': expected arrays x_train, y_train, x_test, y_test; missing {missing}"
            )
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
