"""A small model whose layers take every path of the streamed profile capture, and the profile
that the capture holding full maps (before issue 21) computed on it, kept as a golden file."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

import lrf_optuna as lo
from search_support import seeded_weights

L = keras.layers
GOLDEN = Path(__file__).parent / "data" / "profile_before_streaming.csv"
STREAM_SHAPE = (40, 40, 3)


def stream_cnn(seed: int = 0) -> keras.Model:
    """Same/valid/strided/dilated/grouped 3x3 convs, a separable conv, 1x1 conv, a transposed conv,
    a Dense on a 4-D map and a shared conv called twice: each keeps a different slice of its inputs."""
    inputs = keras.Input(STREAM_SHAPE, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="same")(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same", name="strided")(x)
    x = L.Conv2D(16, 3, dilation_rate=2, padding="same", groups=2, activation="relu", name="dilated")(x)
    x = L.SeparableConv2D(16, 3, padding="valid", name="separable")(x)
    x = L.Conv2D(12, 1, name="pointwise")(x)
    shared = L.Conv2D(12, 3, padding="same", activation="relu", name="shared")
    x = shared(shared(x))
    x = L.Conv2DTranspose(8, 3, strides=2, name="transposed")(x)
    x = L.Dense(6, name="dense_map")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return seeded_weights(keras.Model(inputs, L.Dense(5, name="head")(x), name="stream_cnn"), seed)


def stream_data(samples: int = 40, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, *STREAM_SHAPE)).astype("float32")


def stream_profile(factorization: str, **overrides) -> pd.DataFrame:
    values = dict(ranks_per_method=3, max_positions=8, batch_size=16, seed=0, factorization=factorization)
    values.update(overrides)
    settings = lo.ProfileSettings(**values)
    profile = lo.profile_model(stream_cnn(), stream_data(), settings=settings, show_progress=False)
    return profile.drop(columns="seconds").assign(factorization=factorization)


if __name__ == "__main__":  # regenerate (only from the capture holding full maps, commit f30fa78)
    GOLDEN.parent.mkdir(exist_ok=True)
    frames = [stream_profile(f) for f in ("weights", "data_aware")]
    pd.concat(frames).to_csv(GOLDEN, index=False, float_format="%.17g")
