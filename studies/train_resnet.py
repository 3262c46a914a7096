"""Small ResNet (basic residual blocks, BatchNorm) on Fashion-MNIST -> studies/models/resnet_small.keras.

python studies/train_resnet.py [--epochs N] [--seed S] [--output PATH]

A 5x5 stride-2 stem brings the image to 14x14 before the first stage: a 28x28x32
first stage cost about 143 s per epoch on the 2-core development machine.
"""

from __future__ import annotations

import keras
from common import INPUT_SHAPE, NUM_CLASSES, parse_args, train

L = keras.layers
# (filters, residual blocks) per stage; stages after the first start with stride 2.
STAGES = ((32, 1), (64, 1), (128, 1))


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def residual_block(x, filters: int, stride: int, name: str):
    """Two 3x3 convs plus a skip (1x1 projection when the shape changes), then ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
    y = conv_bn(x, filters, 3, stride, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = L.Add(name=f"{name}_add")([shortcut, y])
    return L.ReLU(name=f"{name}_out")(y)


def build() -> keras.Model:
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = conv_bn(inputs, STAGES[0][0], 5, 2, "stem")
    for stage, (filters, blocks) in enumerate(STAGES, start=1):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = residual_block(x, filters, stride, f"stage{stage}_block{block}")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


if __name__ == "__main__":
    train(build, parse_args("resnet_small", epochs=10))
