"""Small VGG with BatchNorm on Fashion-MNIST -> studies/models/vgg_small.keras.

python studies/train_vgg.py [--epochs N] [--seed S] [--output PATH]
"""

from __future__ import annotations

import keras
from common import INPUT_SHAPE, NUM_CLASSES, parse_args, train

L = keras.layers
# (filters of each 3x3 conv) per block; every block ends with a 2x2 max-pool.
BLOCKS = ((32, 32), (64, 64), (128,))


def build() -> keras.Model:
    """conv32-conv32-pool-conv64-conv64-pool-conv128-pool, flatten, fc 256, logits."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x, index = inputs, 0
    for block, filters in enumerate(BLOCKS, start=1):
        for width in filters:
            index += 1
            x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
            x = L.BatchNormalization(name=f"bn{index}")(x)
            x = L.ReLU(name=f"relu{index}")(x)
        x = L.MaxPooling2D(2, name=f"pool{block}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.4, name="dropout1")(x)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    x = L.Dropout(0.4, name="dropout2")(x)
    outputs = L.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_small")


if __name__ == "__main__":
    train(build, parse_args("vgg_small", epochs=10))
