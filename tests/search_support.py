"""Tiny models and a study runner shared by the search tests (and run as a subprocess).

Weights come from a NumPy generator, not from Keras' initializers, and every layer and
model is named: two processes then build the very same model, so the profile cache key
and the study's parameter names agree between a run and its resume.

``python tests/search_support.py --storage URL --study NAME --n-trials N ...`` runs
``lo.run_study`` on ``tiny_cnn()``; with ``--sleep`` it opens the study itself and
optimizes a slowed-down objective (``--hang-after K``: the trial after the K-th prints
``HANGING-IN-TRIAL <number>`` and hangs).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time

import keras
import numpy as np
import optuna

import lrf_optuna as lo
from lrf_optuna.search._study import SamplerSettings, open_study
from worker_support import HANG_MARK

L = keras.layers
INPUT_SHAPE = (16, 16, 3)
LAYERS = ("c1", "c2", "d1", "d2")


def seeded_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """Every weight from ``default_rng(seed)``, scaled by 1/sqrt(fan-in); biases small."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
        weight.assign((rng.standard_normal(shape) / np.sqrt(fan_in)).astype("float32"))
    return model


def tiny_cnn(seed: int = 0, activation: str | None = "relu") -> keras.Model:
    """Input 16x16x3 -> Conv2D(16,3) -> Conv2D(32,3,s2) -> Flatten -> Dense(64) -> Dense(10).

    With ``activation=None`` every layer is linear (its output error is then a
    monotone function of an SVD's rank).
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = L.Conv2D(16, 3, activation=activation, name="c1")(inputs)
    x = L.Conv2D(32, 3, strides=2, activation=activation, name="c2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(64, activation=activation, name="d1")(x)
    name = "tiny_cnn" if activation else "tiny_linear_cnn"
    return seeded_weights(keras.Model(inputs, L.Dense(10, name="d2")(x), name=name), seed)


def nested_cnn(seed: int = 0) -> keras.Model:
    """Conv2D "stem" then a nested Functional model "inner" whose Conv2D "conv" is last."""
    inner_in = keras.Input((14, 14, 8), name="inner_in")
    inner = keras.Model(inner_in, L.Conv2D(12, 3, name="conv")(inner_in), name="inner")
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = L.Conv2D(8, 3, activation="relu", name="stem")(inputs)
    return seeded_weights(keras.Model(inputs, inner(x), name="nested_cnn"), seed)


# Independent NumPy references for the library's metrics (written from the definitions, not
# from the library's code), so that a test comparing a profile or a proxy with them can fail
# when the metrics are wrong. Maps are (samples, features); both-zero counts as identical.


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA as HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T, with H = I - 11^T / n."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    h = np.eye(len(x)) - 1.0 / len(x)
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    denominator = np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))
    if denominator == 0.0:
        return float(np.array_equal(x, y))
    return float(np.trace(k @ l_) / denominator)


def reference_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of a.b / (|a| |b|); 1 where both samples are zero, 0 where one is."""
    values = []
    for a, b in zip(np.asarray(x, np.float64), np.asarray(y, np.float64)):
        norm_a, norm_b = np.sqrt(a @ a), np.sqrt(b @ b)
        values.append(a @ b / (norm_a * norm_b) if norm_a and norm_b else float(norm_a == norm_b))
    return float(np.mean(values))


def reference_nmse(x: np.ndarray, y: np.ndarray) -> float:
    """1 / (1 + ||X - Y||^2 / ||X||^2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    error, energy = np.sum((x - y) ** 2), np.sum(x**2)
    if energy == 0.0:
        return float(error == 0.0)
    return float(1.0 / (1.0 + error / energy))


METRIC_FUNCTIONS = {"cka": reference_cka, "cosine": reference_cosine, "nmse": reference_nmse}


def calibration(samples: int = 32, shape: tuple[int, ...] = INPUT_SHAPE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, *shape)).astype("float32")


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Outputs flattened per sample, as the metrics take them."""
    outputs = keras.ops.convert_to_numpy(model(x, training=False))
    return outputs.reshape(len(x), -1)


def settings(**overrides) -> lo.ProfileSettings:
    """Small, fast profile settings (all positions of the tiny models are kept); weight-only
    factors, which the tests of the search compare with ``lo.materialize(model, plan)``."""
    values = dict(
        ranks_per_method=4, max_samples=256, max_positions=256, batch_size=32, seed=0, factorization="weights"
    )
    values.update(overrides)
    return lo.ProfileSettings(**values)


def _slow_run(args: argparse.Namespace, model: keras.Model, x: np.ndarray) -> None:
    objective = lo.search.make_objective(
        model, x, profile_settings=settings(), cache_dir=args.cache_dir, show_progress=False
    )
    sampler = SamplerSettings(population_size=args.population_size, seed=args.seed)
    study = open_study(args.storage, args.study, sampler, objective.space)
    calls = 0

    def slow(trial):
        nonlocal calls
        calls += 1
        values = objective(trial)  # the trial has its params
        if calls > args.hang_after:
            print(HANG_MARK, trial.number, flush=True)  # the test kills the process on this line
            time.sleep(600)
        time.sleep(args.sleep)
        return values

    print("optimizing", flush=True)
    study.optimize(slow, n_trials=args.n_trials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", default="demo")
    parser.add_argument("--n-trials", type=int, required=True)
    parser.add_argument("--population-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hang-after", type=int, default=sys.maxsize)
    args = parser.parse_args(argv)
    model, x = tiny_cnn(), calibration()
    if args.sleep:
        _slow_run(args, model, x)
        return 0
    study = lo.run_study(
        model,
        x,
        storage=args.storage,
        study_name=args.study,
        n_trials=args.n_trials,
        seed=args.seed,
        population_size=args.population_size,
        show_progress=False,
        profile_settings=settings(),
        cache_dir=args.cache_dir,
    )
    print("complete", len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
