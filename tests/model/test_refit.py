"""``materialize(..., calibration=)``: data-aware factors and the refit of the chains."""

from __future__ import annotations

import functools

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from conftest import assert_outputs_close, predict, randomize_weights
from lrf_optuna.results._compress import calibration_subset, plan_calibration, study_factorization

L = keras.layers


@functools.cache
def tiny_cnn() -> keras.Model:
    """Conv -> conv (grouped input for tucker2/cp) -> pool -> dense -> dense, seeded weights."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = L.Conv2D(12, 3, strides=2, activation="relu", name="c2")(x)
    x = L.Conv2D(10, 3, padding="same", activation="relu", name="c3")(x)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu", name="d1")(x)
    outputs = L.Dense(5, name="d2")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=3)


@functools.cache
def calibration() -> np.ndarray:
    rng = np.random.default_rng(5)
    mixing = rng.standard_normal((3, 3)) * np.array([3.0, 0.3, 0.03])
    return (rng.standard_normal((64, 10, 10, 3)) @ mixing + 0.5).astype("float32")


def network_error(compressed: keras.Model) -> float:
    x = calibration()
    reference = predict(tiny_cnn(), x)
    return float(np.linalg.norm(predict(compressed, x) - reference) / np.linalg.norm(reference))


PLANS = {
    "svd": {"c2": ("svd", 3), "c3": ("svd", 3), "d1": ("svd", 3)},
    "spatial_svd": {"c2": ("spatial_svd", 4), "c3": ("spatial_svd", 4), "d1": ("tucker", 2)},
    "tucker2": {"c2": ("tucker2", 3), "c3": ("tucker2", 3), "d1": ("tt", 2)},
    "cp": {"c2": ("cp", 4), "c3": ("cp", 4), "d1": ("svd", 4)},
}


@pytest.mark.parametrize("name", list(PLANS))
def test_data_aware_and_refit_reduce_the_network_error(name):
    plan, model, x = PLANS[name], tiny_cnn(), calibration()
    weight = network_error(lo.materialize(model, plan))
    aware = network_error(lo.materialize(model, plan, calibration=x, refit=False))
    refit = network_error(lo.materialize(model, plan, calibration=x))
    assert aware < weight
    assert refit <= aware * (1 + 1e-6)


@pytest.mark.parametrize("method", ["svd", "tucker2", "spatial_svd"])
def test_full_rank_with_calibration_and_refit_is_exact(method):
    model, x = tiny_cnn(), calibration()
    top = {spec.name: spec.max_rank for spec in lo.model.compressible_layers(model)}
    plan = {"c2": (method, top["c2"]), "c3": (method, top["c3"]), "d1": ("svd", top["d1"])}
    compressed = lo.materialize(model, plan, calibration=x)
    assert_outputs_close(predict(compressed, x), predict(model, x), rtol=1e-4)


def test_costs_and_layers_do_not_depend_on_the_calibration():
    model, x, plan = tiny_cnn(), calibration(), PLANS["tucker2"]
    weight, aware = lo.materialize(model, plan), lo.materialize(model, plan, calibration=x)
    assert [type(layer) for layer in weight.layers] == [type(layer) for layer in aware.layers]
    assert [w.shape for w in weight.weights] == [w.shape for w in aware.weights]
    assert lo.model_cost(aware) == lo.plan_cost(model, plan)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((4, 9, 10, 3), "float32"), r"expected \(samples, 10, 10, 3\), received \(4, 9, 10, 3\)"),
        (np.full((4, 10, 10, 3), np.nan, "float32"), "expected finite values, received NaN or Inf"),
        (np.zeros((1, 10, 10, 3), "float32"), "expected at least 2 samples, received 1"),
    ],
)
def test_bad_calibration_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        lo.materialize(tiny_cnn(), PLANS["svd"], calibration=bad)


def test_compress_trial_materializes_as_the_study_profiled():
    """A study's recorded profile factorization decides how its plans are materialized."""
    x = calibration()
    old = optuna.create_study()  # a study from before data-aware factors: weight-only
    assert study_factorization(old) == ("weights", 256)
    assert plan_calibration(old, x, None, seed=0) is None
    with pytest.raises(ValueError, match="scored weight-only factors"):
        plan_calibration(old, x, x, seed=0)
    aware = optuna.create_study()
    aware.set_user_attr("lrf_optuna:profile_settings", {"factorization": "data_aware", "max_samples": 16})
    assert study_factorization(aware) == ("data_aware", 16)
    drawn = plan_calibration(aware, x, None, seed=0)
    np.testing.assert_array_equal(drawn, calibration_subset(x, 16, seed=0))
    assert len(drawn) == 16
    np.testing.assert_array_equal(plan_calibration(aware, x, x[:5], seed=0), x[:5])
