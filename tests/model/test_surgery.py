"""Graph surgery: ``materialize`` on Sequential, Functional, nested and shared-layer
models and on keras.applications; the original model is never touched."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import (
    assert_outputs_close,
    get_nested_layer,
    predict,
    randomize_weights,
    reference_model,
    sample_input,
    weights_by_path,
)

L = keras.layers


# --------------------------------------------------------------------------- models


def sequential_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            L.Conv2D(8, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(name="pool"),
            L.Conv2D(12, 3, name="conv2"),
            L.Flatten(name="flatten"),
            L.Dense(10, name="fc"),
        ],
        name="cnn",
    )


def residual_model() -> keras.Model:
    inputs = keras.Input((8, 8, 4))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="conv_b")(a)
    x = L.Add(name="add")([a, b])
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, name="fc")(x), name="residual")


def concat_model() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same", name="branch_a")(inputs)
    b = L.Conv2D(5, 1, name="branch_b")(inputs)
    x = L.Concatenate(name="concat")([a, b])
    x = L.Conv2D(6, 3, name="conv_c")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, L.Dense(2, name="fc")(x), name="concat_graph")


def nested_model() -> keras.Model:
    inner_in = keras.Input((8, 8, 4))
    inner_out = L.ReLU()(L.Conv2D(6, 3, padding="same", name="conv")(inner_in))
    inner = keras.Model(inner_in, inner_out, name="inner")
    block = keras.Sequential(
        [
            keras.Input((8, 8, 6)),
            L.Conv2D(5, 3, padding="same", name="conv"),
            L.BatchNormalization(name="bn"),
        ],
        name="block",
    )
    inputs = keras.Input((8, 8, 4))
    x = L.GlobalAveragePooling2D()(block(inner(inputs)))
    return keras.Model(inputs, L.Dense(2, name="fc")(x), name="outer")


def shared_model() -> keras.Model:
    inputs = keras.Input((6, 6, 4))
    shared_conv = L.Conv2D(4, 3, padding="same", name="shared_conv")
    shared_fc = L.Dense(5, activation="tanh", name="shared_fc")
    x = shared_conv(shared_conv(inputs))
    x = L.Flatten()(x)
    x = L.Dense(5, name="fc")(x)
    return keras.Model(inputs, shared_fc(shared_fc(x)), name="shared")


def _seeded(build) -> keras.Model:
    keras.utils.set_random_seed(0)
    return randomize_weights(build(), seed=11)


def assert_materializes_the_reference(model: keras.Model, plan: dict) -> keras.Model:
    """The compressed model computes the original architecture with the reconstructed
    kernels, and its cost is the predicted one."""
    x = sample_input(model)
    compressed = lo.materialize(model, plan, seed=0)
    expected = predict(reference_model(model, plan), x)
    assert np.max(np.abs(expected - predict(model, x))) > 1e-4 * np.max(np.abs(expected))
    assert_outputs_close(predict(compressed, x), expected)
    assert lo.model_cost(compressed) == lo.plan_cost(model, plan)
    return compressed


def full_rank_plan(model: keras.Model, specs: list[lo.model.LayerSpec] | None = None) -> dict:
    """Every compressible layer at its full rank, cycling through the exact methods (not cp)."""
    plan = {}
    for index, spec in enumerate(specs or lo.model.compressible_layers(model)):
        methods = [m for m in spec.methods if m != "cp"]
        plan[spec.name] = (methods[index % len(methods)], spec.max_rank)
    return plan


def mixed_plan(model: keras.Model, specs: list[lo.model.LayerSpec] | None = None) -> dict:
    """Every method in turn at half its useful rank; every third layer left out."""
    plan = {}
    for index, spec in enumerate(specs or lo.model.compressible_layers(model)):
        method = spec.methods[index % len(spec.methods)]
        useful = spec.useful_ranks[method]
        plan[spec.name] = "none" if index % 3 == 1 else (method, max(1, useful // 2))
    return plan


# --------------------------------------------------------------------------- graph shapes


def test_sequential_cnn():
    model = _seeded(sequential_cnn)
    assert [s.name for s in lo.model.compressible_layers(model)] == ["conv1", "conv2", "fc"]
    plan = {"conv1": ("tucker2", 2), "conv2": ("cp", 3), "fc": ("svd", 4)}
    compressed = assert_materializes_the_reference(model, plan)
    assert isinstance(compressed, keras.Model) and not isinstance(compressed, keras.Sequential)
    names = [layer.name for layer in compressed.layers]
    assert names[1:] == [
        *("conv1_tucker2_0", "conv1_tucker2_1", "conv1_tucker2_2", "pool"),
        *("conv2_cp_0", "conv2_cp_1", "conv2_cp_2", "flatten", "fc_svd_0", "fc_svd_1"),
    ]
    # A working Keras model: it trains.
    compressed.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = sample_input(model, batch=4)
    loss = compressed.train_on_batch(x, np.zeros((4, 10), "float32"))
    assert np.isfinite(loss)


def test_sequential_full_rank_is_exact():
    model = _seeded(sequential_cnn)
    x = sample_input(model)
    compressed = lo.materialize(model, full_rank_plan(model))
    assert_outputs_close(predict(compressed, x), predict(model, x))


@pytest.mark.parametrize("build", [residual_model, concat_model], ids=["residual_add", "concatenate"])
def test_branching_graph_full_rank_is_exact(build):
    model = _seeded(build)
    x = sample_input(model)
    compressed = lo.materialize(model, full_rank_plan(model))
    assert_outputs_close(predict(compressed, x), predict(model, x))


def test_residual_low_rank():
    model = _seeded(residual_model)
    plan = {"conv_a": ("spatial_svd", 3), "conv_b": ("tucker2", 2), "fc": ("svd", 1)}
    compressed = assert_materializes_the_reference(model, plan)
    assert [type(layer).__name__ for layer in compressed.layers].count("Add") == 1


def test_concatenate_low_rank():
    model = _seeded(concat_model)
    plan = {"branch_a": ("cp", 2), "branch_b": ("svd", 2), "conv_c": ("spatial_svd", 4), "fc": ("tt", 2)}
    assert_materializes_the_reference(model, plan)


def test_nested_models():
    model = _seeded(nested_model)
    assert [s.name for s in lo.model.compressible_layers(model)] == ["inner/conv", "block/conv", "fc"]
    x = sample_input(model)
    exact = lo.materialize(model, full_rank_plan(model))
    assert_outputs_close(predict(exact, x), predict(model, x))

    plan = {"inner/conv": ("svd", 3), "block/conv": ("tucker2", 2), "fc": ("svd", 1)}
    compressed = assert_materializes_the_reference(model, plan)
    inner, block = compressed.get_layer("inner"), compressed.get_layer("block")
    assert isinstance(inner, keras.Model) and isinstance(block, keras.Model)
    assert [layer.name for layer in inner.layers if "conv" in layer.name] == ["conv_svd_0", "conv_svd_1"]
    block_names = [layer.name for layer in block.layers]
    assert block_names[1:] == ["conv_tucker2_0", "conv_tucker2_1", "conv_tucker2_2", "bn"]


def test_shared_layers_stay_shared():
    model = _seeded(shared_model)
    specs = {s.name: s for s in lo.model.compressible_layers(model)}
    assert len(specs["shared_conv"].geometry.calls) == 2
    assert len(specs["shared_fc"].geometry.calls) == 2
    x = sample_input(model)

    exact_plan = {"shared_conv": ("tucker2", 4), "shared_fc": ("svd", 5)}
    exact = lo.materialize(model, exact_plan)
    assert_outputs_close(predict(exact, x), predict(model, x))
    names = [layer.name for layer in exact.layers]
    for name in ("shared_conv_tucker2_0", "shared_conv_tucker2_2", "shared_fc_svd_0", "shared_fc_svd_1"):
        assert names.count(name) == 1
    # Weights exist once: two private copies of each chain would double the params.
    assert exact.count_params() == lo.plan_cost(model, exact_plan).params

    plan = {"shared_conv": ("cp", 2), "shared_fc": ("tucker", 2)}
    compressed = assert_materializes_the_reference(model, plan)
    assert compressed.count_params() == lo.plan_cost(model, plan).params


def test_unplanned_and_parameter_free_layers_are_copied_unchanged():
    model = _seeded(residual_model)
    compressed = lo.materialize(model, {"conv_b": ("svd", 2)})
    for name in ("bn", "conv_a", "fc"):
        old, new = model.get_layer(name), compressed.get_layer(name)
        assert new is not old
        assert type(new) is type(old)
        assert new.get_config() == old.get_config()
        assert len(new.weights) == len(old.weights) > 0
        for a, b in zip(old.weights, new.weights):
            assert a is not b
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_none_plan_copies_the_model():
    model = _seeded(residual_model)
    x = sample_input(model)
    copy = lo.materialize(model, {"conv_a": "none"})
    np.testing.assert_array_equal(predict(copy, x), predict(model, x))
    # (Keras' clone_model renames an auto-named InputLayer after its tensor.)
    assert [layer.name for layer in copy.layers[1:]] == [layer.name for layer in model.layers[1:]]


# --------------------------------------------------------------------------- no aliasing


@pytest.mark.parametrize(
    "build", [sequential_cnn, residual_model, nested_model], ids=["seq", "res", "nested"]
)
def test_original_model_is_never_modified(build):
    model = _seeded(build)
    x = sample_input(model)
    before, outputs_before = weights_by_path(model), predict(model, x)
    layers_before = [layer.name for layer in model.layers]
    plan = {spec.name: ("svd", 2) for spec in lo.model.compressible_layers(model)}
    compressed = lo.materialize(model, plan)

    original_ids = {id(v) for v in model.weights}
    assert original_ids.isdisjoint(id(v) for v in compressed.weights)
    # Fine-tune the copy, then overwrite every one of its variables.
    compressed.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    compressed.train_on_batch(x, np.ones_like(predict(compressed, x)))
    for variable in compressed.weights:
        variable.assign(np.full(tuple(variable.shape), 3.0, dtype=variable.dtype))

    after = weights_by_path(model)
    assert after.keys() == before.keys()
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    assert [layer.name for layer in model.layers] == layers_before
    np.testing.assert_array_equal(predict(model, x), outputs_before)


def test_compressed_models_share_no_weights_with_each_other():
    model = _seeded(residual_model)
    first = lo.materialize(model, {"conv_a": ("svd", 2)})
    second = lo.materialize(model, {"conv_a": ("svd", 2)})
    assert {id(v) for v in first.weights}.isdisjoint(id(v) for v in second.weights)
    first.get_layer("bn").gamma.assign(np.zeros(6, "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(second.get_layer("bn").gamma),
        keras.ops.convert_to_numpy(model.get_layer("bn").gamma),
    )


def test_nested_layer_weights_are_copies():
    model = _seeded(nested_model)
    compressed = lo.materialize(model, {"block/conv": ("svd", 2)})
    old_bn, new_bn = get_nested_layer(model, "block/bn"), get_nested_layer(compressed, "block/bn")
    assert new_bn is not old_bn
    before = keras.ops.convert_to_numpy(old_bn.moving_variance).copy()
    new_bn.moving_variance.assign(np.zeros(5, "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(old_bn.moving_variance), before)


# --------------------------------------------------------------------------- keras.applications


def _application(name: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    if name == "mobilenet_v2":
        model = keras.applications.MobileNetV2(
            input_shape=(32, 32, 3), alpha=0.35, weights=None, classifier_activation=None
        )
    else:
        model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classifier_activation=None)
    return randomize_weights(model, seed=5)


def _check_application(model: keras.Model, analysis: lo.model.ModelAnalysis, full_plan: dict, low_plan: dict):
    x = sample_input(model)
    expected = predict(model, x)
    exact = lo.materialize(model, full_plan)
    # Tens of layers deep: float32 round-off grows a little with depth.
    assert_outputs_close(predict(exact, x), expected, rtol=1e-4)
    compressed = lo.materialize(model, low_plan)
    predicted = analysis.plan_cost(low_plan)
    assert predicted == lo.model_cost(compressed)
    assert predicted.params == compressed.count_params()
    assert predicted.strictly_below(analysis.cost)
    assert predict(compressed, x).shape == expected.shape


def test_mobilenet_v2_some_layers():
    """Default suite: a few MobileNetV2 layers of each kind (first conv, expand/project
    1x1 convs, classifier) to keep it quick."""
    model = _application("mobilenet_v2")
    analysis = lo.analyze(model)
    assert len(analysis.specs) == 36
    assert len(analysis.refused) == 17 and all("depthwise" in r for r in analysis.refused.values())
    names = ["Conv1", "block_1_expand", "block_1_project", "block_6_expand", "Conv_1", "predictions"]
    specs = [analysis.specs[name] for name in names]
    _check_application(model, analysis, full_rank_plan(model, specs), mixed_plan(model, specs))


@pytest.mark.slow
def test_mobilenet_v2_all_layers():
    model = _application("mobilenet_v2")
    analysis = lo.analyze(model)
    specs = list(analysis.specs.values())
    _check_application(model, analysis, full_rank_plan(model, specs), mixed_plan(model, specs))


@pytest.mark.slow
def test_resnet50_all_layers():
    model = _application("resnet50")
    analysis = lo.analyze(model)
    specs = list(analysis.specs.values())
    assert len(specs) == 54
    _check_application(model, analysis, full_rank_plan(model, specs), mixed_plan(model, specs))
