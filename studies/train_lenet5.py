"""LeNet-5 on Fashion-MNIST -> studies/models/lenet5.keras (about 62k parameters).

python studies/train_lenet5.py [--epochs N] [--seed S] [--output PATH]
"""

from __future__ import annotations

import keras
from common import INPUT_SHAPE, NUM_CLASSES, parse_args, train

L = keras.layers


def build() -> keras.Model:
    """Classic LeNet-5 with ReLU and max-pooling; outputs logits."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="image"),
            L.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(16, 5, activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(120, activation="relu", name="fc1"),
            L.Dense(84, activation="relu", name="fc2"),
            L.Dense(NUM_CLASSES, name="logits"),
        ],
        name="lenet5",
    )


if __name__ == "__main__":
    train(build, parse_args("lenet5", epochs=15))
