"""Small MobileNet-style net on Fashion-MNIST -> studies/models/mobilenet_small.keras.

python studies/train_mobilenet.py [--epochs N] [--seed S] [--output PATH]
"""

from __future__ import annotations

import keras
from common import INPUT_SHAPE, NUM_CLASSES, parse_args, train

L = keras.layers
# (pointwise filters, stride of the depthwise conv) of each depthwise-separable block.
BLOCKS = ((32, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 1))


def _conv_bn_relu6(x, layer: keras.layers.Layer, name: str):
    x = layer(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


def build() -> keras.Model:
    """stem 3x3/2 conv 16 (28x28 -> 14x14), six depthwise-separable blocks, gap, logits."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = _conv_bn_relu6(
        inputs, L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem"), "stem"
    )
    for index, (filters, stride) in enumerate(BLOCKS, start=1):
        depthwise = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{index}")
        x = _conv_bn_relu6(x, depthwise, f"dw{index}")
        x = _conv_bn_relu6(x, L.Conv2D(filters, 1, use_bias=False, name=f"pw{index}"), f"pw{index}")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    outputs = L.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_small")


if __name__ == "__main__":
    train(build, parse_args("mobilenet_small", epochs=10))
