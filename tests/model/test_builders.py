"""Replacement chains are built from the fastest stock layer for each stage's math.

A stage with one input channel per group is a depthwise convolution: as a grouped
``Conv*D`` it runs ~14x slower on TensorFlow's CPU kernels (benchmarks/stage_layers.py).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import assert_outputs_close, predict, randomize_weights, sample_input, single_layer_model
from lrf_optuna.model._layer_specs import canonical_kernel

L = keras.layers


def _one_channel_per_group_convs(model: keras.Model) -> list[str]:
    """Grouped convs whose groups each read one channel (the slow layer we must not emit)."""
    slow = []
    for layer in model.layers:
        groups = getattr(layer, "groups", 1) or 1
        conv = isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D)
        if conv and groups > 1 and layer.kernel.shape[-2] == 1:
            slow.append(layer.name)
    return slow


CASES = {
    # CP's spatial stage: r channels in, r groups.
    "conv2d_cp": ((9, 9, 6), lambda: L.Conv2D(8, 3, padding="same", name="c"), ("cp", 3), L.DepthwiseConv2D),
    "conv1d_cp": ((11, 6), lambda: L.Conv1D(8, 3, strides=2, name="c"), ("cp", 4), L.DepthwiseConv1D),
    "causal_conv1d_cp": (
        (10, 4),
        lambda: L.Conv1D(6, 3, padding="causal", dilation_rate=2, name="c"),
        ("cp", 2),
        L.DepthwiseConv1D,
    ),
    "dilated_cp": (
        (12, 12, 5),
        lambda: L.Conv2D(7, 3, dilation_rate=2, use_bias=False, name="c"),
        ("cp", 2),
        L.DepthwiseConv2D,
    ),
    # A grouped conv at rank 1 per group: tucker2's core reads one channel per group and
    # writes r_out of them (depth multiplier > 1).
    "grouped_tucker2": (
        (8, 8, 8),
        lambda: L.Conv2D(8, 3, groups=4, padding="same", name="c"),
        ("tucker2", 1),
        L.DepthwiseConv2D,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_depthwise_stages_are_depthwise_layers_and_exact(case):
    shape, make, (method, rank), expected_type = CASES[case]
    model = randomize_weights(single_layer_model(shape, make()))
    plan = {"c": (method, rank)}
    compressed = lo.materialize(model, plan)

    assert _one_channel_per_group_convs(compressed) == []
    assert any(type(layer) is expected_type for layer in compressed.layers)
    # The chain computes what the factorizer's reconstruction says, and costs what the plan says.
    layer = model.get_layer("c")
    spec = lo.analyze(model).specs["c"]
    factorizer = lo.factorizers.get_factorizer(spec.geometry.kind, method)
    kernels = factorizer.decompose(canonical_kernel(layer, spec.geometry), spec.geometry, rank, seed=0)
    reference = single_layer_model(shape, make())
    reference.get_layer("c").set_weights(
        [factorizer.reconstruct(kernels, spec.geometry, rank).astype(np.float32), *layer.get_weights()[1:]]
    )
    x = sample_input(model)
    assert_outputs_close(predict(compressed, x), predict(reference, x))
    assert lo.plan_cost(model, plan) == lo.model_cost(compressed)


def test_depthwise_chain_survives_keras_round_trip(tmp_path):
    shape, make, step, _ = CASES["grouped_tucker2"]
    model = randomize_weights(single_layer_model(shape, make()))
    compressed = lo.materialize(model, {"c": step})
    path = tmp_path / "m.keras"
    compressed.save(path)
    reloaded = keras.models.load_model(path)
    x = sample_input(model)
    np.testing.assert_array_equal(predict(reloaded, x), predict(compressed, x))


def test_cp_is_not_offered_for_conv3d():
    # Keras has no DepthwiseConv3D, and the grouped Conv3D is slower than the layer it replaces
    # (benchmarks/results/stage_layers.txt): CP is refused for 3-D convs, with the reason.
    model = randomize_weights(single_layer_model((5, 5, 5, 4), L.Conv3D(6, 3, name="c")))
    (spec,) = lo.model.compressible_layers(model)
    assert "cp" not in spec.methods and "tucker2" in spec.methods
    with pytest.raises(ValueError, match="depthwise 3-D convolution"):
        lo.materialize(model, {"c": ("cp", 2)})
