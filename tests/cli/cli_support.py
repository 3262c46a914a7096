"""What the CLI tests share: a file digest and a seeded random dataset file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_random_data(folder: Path, train: int, test: int = 32) -> None:
    """``folder/data.npz``: seeded random 12x12 images with 10-class labels."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((train, 12, 12, 1), np.float32), "y_train": rng.integers(0, 10, train),
        "x_test": rng.random((test, 12, 12, 1), np.float32), "y_test": rng.integers(0, 10, test),
    }  # fmt: skip
    np.savez(folder / "data.npz", **arrays)
