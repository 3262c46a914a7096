"""The user's files: models and datasets loaded safely, atomic JSON caches."""

from __future__ import annotations

from lrf_optuna.files._models import load_arrays, load_inputs, load_model_file, save_model_atomic

__all__ = [
    "load_arrays",
    "load_inputs",
    "load_model_file",
    "save_model_atomic",
]
