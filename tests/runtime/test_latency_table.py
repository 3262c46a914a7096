"""The latency table: arithmetic checked exactly with a stand-in timer, caching, settings."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import randomize_weights
from lrf_optuna.runtime import _latency_table as lt
from lrf_optuna.runtime._latency_table import LatencySettings, LatencyTable, latency_table

L = keras.layers


def tiny_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(12, 3, name="conv2")(x)
    x = L.Flatten()(x)
    return randomize_weights(keras.Model(inputs, L.Dense(5, name="fc")(x)))


METHODS = {"conv1": ("svd", "cp"), "conv2": ("tucker2",), "fc": ("svd",)}
SETTINGS = LatencySettings(runtime="keras", runs=2, ranks_per_method=3)


@pytest.fixture
def params_as_latency(monkeypatch):
    """A timer whose "milliseconds" are the timed model's params: deltas become exact."""
    calls = []

    def fake_time(model, settings):
        calls.append(model.name)
        return float(model.count_params())

    monkeypatch.setattr(lt, "_time", fake_time)
    return calls


def test_prediction_is_base_plus_deltas_of_the_materialized_chains(params_as_latency):
    model = tiny_cnn()
    table = latency_table(model, SETTINGS, METHODS)
    assert table.predict({}) == model.count_params()
    for layer, methods in METHODS.items():
        for method in methods:
            ranks, _ = table.deltas[(layer, method)]
            for rank in ranks:
                plan = {layer: (method, rank)}
                assert table.predict(plan) == lo.model_cost(lo.materialize(model, plan)).params


def test_ranks_between_grid_points_are_interpolated_linearly():
    table = LatencyTable(10.0, {("a", "svd"): ((1, 5), (-4.0, -2.0))}, {"a": 1})
    assert table.predict({"a": ("svd", 3)}) == pytest.approx(10.0 - 3.0)
    assert table.predict({"a": ("svd", 9)}) == pytest.approx(10.0 - 2.0)  # clamped at the grid's end


def test_shared_layer_counts_its_delta_per_call(params_as_latency):
    inputs = keras.Input((6, 6, 4))
    conv = L.Conv2D(4, 3, padding="same", name="shared")
    outputs = conv(conv(inputs))
    model = randomize_weights(keras.Model(inputs, outputs))
    table = latency_table(model, SETTINGS, {"shared": ("svd",)})
    ranks, deltas = table.deltas[("shared", "svd")]
    assert table.calls == {"shared": 2}
    assert table.predict({"shared": ("svd", ranks[0])}) == model.count_params() + 2 * deltas[0]


def test_cache_is_reused_and_keyed_by_settings(params_as_latency, tmp_path):
    model = tiny_cnn()
    first = latency_table(model, SETTINGS, METHODS, cache_dir=tmp_path)
    measured = len(params_as_latency)
    again = latency_table(model, SETTINGS, METHODS, cache_dir=tmp_path)
    assert again == first and len(params_as_latency) == measured  # loaded, nothing timed
    (path,) = tmp_path.glob("latency-*.json")
    assert json.loads(path.read_text())["format"] == lt.FORMAT
    latency_table(model, LatencySettings(runtime="keras", batch_size=4, runs=2, ranks_per_method=3),
                  METHODS, cache_dir=tmp_path)  # fmt: skip
    assert len(list(tmp_path.glob("latency-*.json"))) == 2 and len(params_as_latency) > measured


def test_real_timer_gives_positive_finite_numbers():
    model = tiny_cnn()
    table = latency_table(
        model, LatencySettings(runtime="keras", runs=2, ranks_per_method=2), {"conv2": ("svd",)}
    )
    ranks, deltas = table.deltas[("conv2", "svd")]
    useful = lo.analyze(model).specs["conv2"].useful_ranks["svd"]
    assert table.base_ms > 0 and ranks == (1, useful) and np.isfinite(deltas).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runtime": "onnx"}, "expected one of ['keras', 'tflite'], received 'onnx'"),
        ({"batch_size": 0}, "Invalid latency `batch_size`: expected an integer >= 1, received 0"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LatencySettings(**options)
