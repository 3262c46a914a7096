"""Shared training loop of the reference models: data, compile, fit, evaluate, save, record."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from lrf_optuna.data import fashion_mnist

MODELS_DIR = Path(__file__).resolve().parent / "models"
VALIDATION_SIZE = 5000
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

logger = logging.getLogger("studies")


def parse_args(name: str, epochs: int, batch_size: int = 128) -> argparse.Namespace:
    """Command line shared by the training scripts; ``name`` is the default output stem."""
    parser = argparse.ArgumentParser(description=f"Train {name} on Fashion-MNIST.")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (cosine decay)")
    parser.add_argument("--output", type=Path, default=MODELS_DIR / f"{name}.keras")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return args


def split_data(seed: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(train, validation, test), the validation set drawn at random from the training set."""
    (x_train, y_train), test = fashion_mnist()
    order = np.random.default_rng(seed).permutation(len(x_train))
    val, train = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    return (x_train[train], y_train[train]), (x_train[val], y_train[val]), test


def compile_model(model: keras.Model, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def train(build: Callable[[], keras.Model], args: argparse.Namespace) -> dict:
    """Seed, build, fit, evaluate on the test set, save and record ``args.output``."""
    keras.utils.set_random_seed(args.seed)
    train_set, val_set, (x_test, y_test) = split_data(args.seed)
    model = build()
    model.summary(print_fn=logger.info)
    steps = args.epochs * -(-len(train_set[0]) // args.batch_size)
    compile_model(model, keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps))
    start = time.perf_counter()
    history = model.fit(
        *train_set, batch_size=args.batch_size, epochs=args.epochs, validation_data=val_set, verbose=2
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    save_uncompiled(model, args.output)
    record = {
        "test_accuracy": round(float(accuracy), 4),
        "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
        "params": int(model.count_params()),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "date": datetime.date.today().isoformat(),
    }
    record_accuracy(args.output.stem, record, args.output.parent / "accuracy.json")
    logger.info("%s: %s, %d bytes", args.output, record, args.output.stat().st_size)
    return record


def save_uncompiled(model: keras.Model, path: Path) -> None:
    """Save architecture and weights only: no optimizer state (a third of the size), no loss."""
    bare = type(model).from_config(model.get_config())
    bare.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    bare.save(path)


def record_accuracy(name: str, record: dict, path: Path) -> None:
    """Merge ``{name: record}`` into the JSON file at ``path``."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = record
    path.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
