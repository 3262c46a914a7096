"""Cost model: hand-computed params/MACs, and MACs against TensorFlow's profiler."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf

import lrf_optuna as lo
from conftest import single_layer_model

L = keras.layers


# --------------------------------------------------------------------------- Cost arithmetic


def test_cost_arithmetic():
    a, b = lo.core.Cost(params=10, macs=100), lo.core.Cost(params=3, macs=40)
    assert a.flops == 200
    assert a + b == lo.core.Cost(13, 140)
    assert a - b == lo.core.Cost(7, 60)
    assert b.strictly_below(a)
    assert not a.strictly_below(a)
    assert not lo.core.Cost(3, 100).strictly_below(a)  # equal MACs is not cheaper
    assert not lo.core.Cost(10, 1).strictly_below(a)  # equal params is not cheaper


# --------------------------------------------------------------------------- hand-computed


# (id, input shape, layer, params, MACs per sample)
HAND_CASES = [
    # out 4x4 (valid, stride 2 on 9x9); kernel 3*3*3*4 = 108, bias 4
    ("conv2d_stride2", (9, 9, 3), lambda: L.Conv2D(4, 3, strides=2), 108 + 4, 16 * 108),
    # groups=3: kernel (3, 3, 6/3, 6) = 108; "same" keeps 5x5 output positions
    ("conv2d_groups3", (5, 5, 6), lambda: L.Conv2D(6, 3, groups=3, padding="same"), 108 + 6, 25 * 108),
    # transposed: every input position scatters the whole 3*3*2*4 kernel (output is 11x11)
    ("conv2d_transpose", (5, 5, 2), lambda: L.Conv2DTranspose(4, 3, strides=2), 72 + 4, 25 * 72),
    # Conv1D causal, no bias: 8 output positions, kernel 3*2*5 = 30
    ("conv1d_causal", (8, 2), lambda: L.Conv1D(5, 3, padding="causal", use_bias=False), 30, 8 * 30),
    # Conv3D: out (3, 2, 4) = 24 positions, kernel 3*2*2*2*4 = 96
    ("conv3d", (5, 3, 5, 2), lambda: L.Conv3D(4, (3, 2, 2)), 96 + 4, 24 * 96),
    # Dense on (5, 6): 5 positions of a 6x7 matmul
    ("dense_3d_input", (5, 6), lambda: L.Dense(7), 42 + 7, 5 * 42),
    ("dense_2d_input", (6,), lambda: L.Dense(7, use_bias=False), 42, 42),
    # depthwise 3x3, multiplier 2 on 6x6x3: kernel 54, bias 6, output 4x4
    ("depthwise_conv2d", (6, 6, 3), lambda: L.DepthwiseConv2D(3, depth_multiplier=2), 54 + 6, 16 * 54),
    # separable: depthwise 54 + pointwise 6*5 = 30, bias 5; output 4x4
    (
        "separable_conv2d",
        (6, 6, 3),
        lambda: L.SeparableConv2D(5, 3, depth_multiplier=2),
        54 + 30 + 5,
        16 * (54 + 30),
    ),
]


@pytest.mark.parametrize(
    ("input_shape", "make", "params", "macs"),
    [pytest.param(*case[1:], id=case[0]) for case in HAND_CASES],
)
def test_hand_computed_cost(input_shape, make, params, macs):
    model = single_layer_model(input_shape, make())
    cost = lo.model_cost(model)
    assert cost == lo.core.Cost(params, macs)
    assert cost.flops == 2 * macs
    assert cost.params == model.count_params()


def test_layers_without_kernel_add_params_but_no_macs():
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(3, 3, name="conv")(inputs)  # 54 + 3 params, 16 * 54 MACs
    x = L.BatchNormalization(name="bn")(x)  # 4 * 3 params, not counted as MACs
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(2, name="fc")(x))  # 12 * 2 + 2 params
    assert lo.model_cost(model) == lo.core.Cost(57 + 12 + 26, 16 * 54 + 24)


def test_shared_layer_counts_params_once_and_macs_per_call():
    inputs = keras.Input((4, 4, 3))
    shared = L.Conv2D(3, 3, padding="same", name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    assert lo.model_cost(model) == lo.core.Cost(81 + 3, 2 * 16 * 81)
    (spec,) = lo.model.compressible_layers(model)
    assert spec.cost == lo.core.Cost(81 + 3, 2 * 16 * 81)
    assert len(spec.geometry.calls) == 2


def test_nested_model_layers_are_counted():
    inner_in = keras.Input((3, 5))
    inner = keras.Model(inner_in, L.Dense(4, name="fc")(inner_in), name="inner")
    inputs = keras.Input((3, 5))
    model = keras.Model(inputs, inner(inputs))
    assert lo.model_cost(model) == lo.core.Cost(24, 3 * 20)
    assert [s.name for s in lo.model.compressible_layers(model)] == ["inner/fc"]


def test_factorized_layers_are_costed_from_their_cores():
    """A model that already holds TTDense/TuckerDense is costed from its own layers."""
    inputs = keras.Input((36,))
    model = keras.Model(inputs, L.Dense(30, name="fc")(inputs))
    for method in ("tt", "tucker"):
        compressed = lo.materialize(model, {"fc": (method, 3)})
        expected = lo.plan_cost(model, {"fc": (method, 3)})
        assert lo.model_cost(compressed) == expected
        assert expected.params == compressed.count_params()  # Keras' own count
        assert lo.analyze(compressed).refused == {f"fc_{method}_0": "it is already factorized"}


# --------------------------------------------------------------------------- TF profiler

# Op types whose FLOPs correspond to our MACs (bias adds, BN, activations are excluded).
MAC_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul")


def profiler_flops(model: keras.Model) -> dict[str, int]:
    """FLOPs per op type of a batch-1 forward pass, from TensorFlow's v1 profiler."""
    function = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)
    graph = function.get_concrete_function(spec).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    root = tf.compat.v1.profiler.profile(graph, options=options, cmd="op")
    # cmd="op" nests the op types as a chain; each node's own FLOPs are in float_ops.
    flops, stack = {}, [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.float_ops:
            flops[node.name] = flops.get(node.name, 0) + node.float_ops
    return flops


def _macs_by_layer_type(model: keras.Model) -> dict[str, int]:
    totals: dict[str, int] = {}
    for spec in lo.model.compressible_layers(model):
        totals[spec.layer_type] = totals.get(spec.layer_type, 0) + spec.cost.macs
    return totals


def test_mobilenet_v2_macs_match_tensorflow_profiler():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classifier_activation=None
    )
    flops = profiler_flops(model)
    macs = _macs_by_layer_type(model)
    assert set(macs) == {"Conv2D", "Dense"}
    depthwise = lo.model_cost(model).macs - macs["Conv2D"] - macs["Dense"]
    assert flops["Conv2D"] == 2 * macs["Conv2D"]
    assert flops["MatMul"] == 2 * macs["Dense"]
    assert flops["DepthwiseConv2dNative"] == 2 * depthwise > 0
    assert sum(flops.get(op, 0) for op in MAC_OPS) == lo.model_cost(model).flops


def test_mixed_layers_macs_match_tensorflow_profiler():
    """Strides, dilation, same/causal padding, separable, depthwise, Conv1D, Dense on 3-D."""
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = L.Conv2D(8, (3, 2), dilation_rate=2)(x)
    x = L.SeparableConv2D(6, 3, depth_multiplier=2, padding="same")(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Reshape((-1, 6))(x)
    x = L.Conv1D(5, 3, padding="causal")(x)
    x = L.Dense(7)(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(3)(x))
    flops = profiler_flops(model)
    assert sum(flops.get(op, 0) for op in MAC_OPS) == lo.model_cost(model).flops


def test_conv3d_macs_match_tensorflow_profiler():
    model = single_layer_model((5, 6, 5, 2), L.Conv3D(4, (3, 2, 2), strides=(1, 2, 1)))
    assert profiler_flops(model)["Conv3D"] == lo.model_cost(model).flops


@pytest.mark.slow
def test_resnet50_macs_match_tensorflow_profiler():
    model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classifier_activation=None)
    flops = profiler_flops(model)
    macs = _macs_by_layer_type(model)
    assert flops["Conv2D"] == 2 * macs["Conv2D"]
    assert flops["MatMul"] == 2 * macs["Dense"]
    assert sum(flops.get(op, 0) for op in MAC_OPS) == lo.model_cost(model).flops
