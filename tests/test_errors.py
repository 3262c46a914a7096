"""Invalid plans and models: each error says what was wrong, what was expected and
what was received, whichever entry point (materialize, plan_cost, analyze().resolve)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

import lrf_optuna as lo

L = keras.layers

ENTRY_POINTS = [
    pytest.param(lambda model, plan: lo.materialize(model, plan), id="materialize"),
    pytest.param(lo.plan_cost, id="plan_cost"),
    pytest.param(lambda model, plan: lo.analyze(model).resolve(plan), id="analyze_resolve"),
]
COMPRESSIBLE = ["conv", "pw", "deconv", "conv1d", "fc"]


@pytest.fixture(scope="module")
def model() -> keras.Model:
    """conv (Conv2D), pw (1x1 Conv2D), dw (DepthwiseConv2D), deconv (Conv2DTranspose), conv1d, fc."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)  # max_rank 9 (spatial SVD: min(3*3, 3*4))
    x = L.Conv2D(4, 1, name="pw")(x)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.Conv2DTranspose(4, 3, name="deconv")(x)
    x = L.Reshape((-1, 4))(x)
    x = L.Conv1D(4, 3, name="conv1d")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(2, name="fc")(x))


@pytest.fixture(params=ENTRY_POINTS)
def apply(request):
    return request.param


def test_catalog_of_the_error_model(model):
    analysis = lo.analyze(model)
    assert list(analysis.specs) == COMPRESSIBLE
    assert analysis.specs["conv"].max_rank == 9
    assert analysis.specs["conv1d"].methods == ("tucker2", "cp", "svd")
    assert analysis.specs["pw"].methods == ("svd",)
    assert analysis.specs["deconv"].methods == ("tucker2", "svd", "spatial_svd")
    assert set(analysis.refused) == {"dw"}
    assert "depthwise convolution" in analysis.refused["dw"]


def test_unknown_layer_name(model, apply):
    with pytest.raises(ValueError) as info:
        apply(model, {"conv_9": ("svd", 2)})
    message = str(info.value)
    assert message.startswith("Invalid layer name in plan")
    assert f"expected one of {COMPRESSIBLE}" in message
    assert "received 'conv_9'" in message


def test_unknown_method(model, apply):
    with pytest.raises(ValueError) as info:
        apply(model, {"conv": ("pca", 2)})
    message = str(info.value)
    assert "Invalid `method` for layer 'conv'" in message
    assert "expected one of ['tucker2', 'cp', 'svd', 'spatial_svd', 'none']" in message
    assert "received 'pca'" in message


def test_dense_method_on_a_conv_layer(model, apply):
    with pytest.raises(ValueError, match=r"Invalid `method` for layer 'conv'.*received 'tt'"):
        apply(model, {"conv": ("tt", 2)})


@pytest.mark.parametrize(
    ("layer", "method", "valid", "reason"),
    [
        pytest.param(
            "conv1d",
            "spatial_svd",
            "['tucker2', 'cp', 'svd', 'none']",
            "this layer has 1 spatial dimension(s)",
            id="spatial_svd_on_conv1d",
        ),
        pytest.param(
            "deconv",
            "cp",
            "['tucker2', 'svd', 'spatial_svd', 'none']",
            "Keras has no such stock layer",
            id="cp_on_transposed_conv",
        ),
        pytest.param(
            "pw",
            "tucker2",
            "['svd', 'none']",
            "on a 1x1 kernel it computes the same approximation as `svd`",
            id="tucker2_on_pointwise_conv",
        ),
    ],
)
def test_inapplicable_method_gives_the_reason(model, apply, layer, method, valid, reason):
    with pytest.raises(ValueError) as info:
        apply(model, {layer: (method, 2)})
    message = str(info.value)
    assert f"Invalid `method` for layer '{layer}'" in message
    assert f"expected one of {valid}" in message
    assert f"received {method!r}" in message
    assert reason in message


@pytest.mark.parametrize(
    "rank",
    [
        pytest.param(0, id="zero"),
        pytest.param(-3, id="negative"),
        pytest.param(10, id="above_max_rank"),
        pytest.param(2.0, id="float"),
        pytest.param("4", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_rank(model, apply, rank):
    expected = f"Invalid `rank` for layer 'conv': expected 1..9, received {rank!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        apply(model, {"conv": ("svd", rank)})


def test_numpy_integer_rank_is_accepted(model):
    assert lo.plan_cost(model, {"conv": ("svd", np.int64(3))}) == lo.plan_cost(model, {"conv": ("svd", 3)})


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("svd", id="bare_method"),
        pytest.param(("svd",), id="one_element"),
        pytest.param(("svd", 2, 3), id="three_elements"),
        pytest.param(4, id="bare_rank"),
        pytest.param({"method": "svd", "rank": 2}, id="dict"),
        pytest.param(None, id="none_object"),
    ],
)
def test_malformed_plan_entry(model, apply, entry):
    expected = f"Invalid plan entry for layer 'conv': expected (method, rank) or 'none', received {entry!r}"
    with pytest.raises(TypeError, match=re.escape(expected)):
        apply(model, {"conv": entry})


@pytest.mark.parametrize(
    "plan", [pytest.param([("conv", ("svd", 2))], id="list"), pytest.param("conv", id="str")]
)
def test_plan_must_be_a_mapping(model, apply, plan):
    with pytest.raises(TypeError, match=r"Invalid `plan`: expected a mapping .*, received (list|str)"):
        apply(model, plan)


def test_none_entries_are_accepted(model):
    plan = {"conv": "none", "fc": ("none", 0), "dw": "none"}
    assert lo.analyze(model).resolve(plan) == {}
    assert lo.plan_cost(model, plan) == lo.model_cost(model)


def test_depthwise_layer_is_refused_with_the_reason(model, apply):
    with pytest.raises(ValueError) as info:
        apply(model, {"dw": ("svd", 2)})
    message = str(info.value)
    assert message.startswith("Layer 'dw' cannot be factorized: a depthwise convolution")
    assert "no channel dimension to factorize" in message
    assert f"Compressible layers: {COMPRESSIBLE}" in message


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc = L.Dense(3)

    def call(self, inputs):
        return self.fc(inputs)


@pytest.mark.parametrize(
    "function",
    [
        pytest.param(lambda m: lo.materialize(m, {}), id="materialize"),
        pytest.param(lo.analyze, id="analyze"),
        pytest.param(lo.model_cost, id="model_cost"),
        pytest.param(lo.model.compressible_layers, id="compressible_layers"),
    ],
)
def test_subclassed_model_is_refused_with_a_way_forward(function):
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError) as info:
        function(model)
    message = str(info.value)
    assert "expected a Sequential or Functional model" in message
    assert "received a subclassed model (Subclassed)" in message
    assert "Functional model (keras.Model(inputs, outputs))" in message
    assert "set_weights" in message


def test_subclassed_model_nested_in_a_functional_one_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Subclassed()(inputs))
    with pytest.raises(TypeError, match="received a subclassed model"):
        lo.analyze(model)


def test_non_model_is_refused():
    with pytest.raises(TypeError, match=r"Invalid `model`: expected a keras.Model, received Dense"):
        lo.analyze(L.Dense(3))


def test_unbuilt_sequential_is_refused():
    with pytest.raises(ValueError, match=r"expected a built Sequential model.*keras.Input"):
        lo.analyze(keras.Sequential([L.Dense(3)]))


def test_unknown_spatial_size_is_refused():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError) as info:
        lo.analyze(model)
    message = str(info.value)
    assert "Invalid input shape for layer 'conv'" in message
    assert "expected known spatial sizes" in message
    assert "received (None, None, None, 3)" in message


def test_get_factorizer_lists_valid_methods():
    with pytest.raises(ValueError) as info:
        lo.factorizers.get_factorizer("dense", "cp")
    message = str(info.value)
    assert "expected one of ['svd', 'tt', 'tucker']" in message
    assert "received 'cp'" in message


def test_tt_on_a_prime_sized_dense_gives_the_reason():
    inputs = keras.Input((7,))
    model = keras.Model(inputs, L.Dense(5, name="fc")(inputs))
    with pytest.raises(ValueError) as info:
        lo.materialize(model, {"fc": ("tt", 1)})
    message = str(info.value)
    assert "Invalid `method` for layer 'fc': expected one of ['svd', 'tucker', 'none']" in message
    assert "received 'tt'" in message
    assert "(7, 5) kernel has too few factors to form a tensor train" in message
