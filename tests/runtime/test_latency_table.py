"""The latency table: arithmetic checked exactly with a stand-in timer, caching, settings."""

from __future__ import annotations

import dataclasses
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

    def fake_timer(model, settings):
        def timer(n):
            calls.append(model.name)
            return np.full(n, float(model.count_params()))

        return timer

    monkeypatch.setattr(lt, "_timer", fake_timer)
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


def test_one_burst_of_load_on_the_original_layer_does_not_move_its_deltas(monkeypatch):
    """Timing blocks are numbered in the order they run; block 1 is the first block of the first
    layer's original (block 0 times the whole model) and runs 1000 "ms" slow."""
    blocks = []

    def bursty_timer(model, settings):
        def timer(n):
            blocks.append(model.name)
            return np.full(n, float(model.count_params()) + (1000.0 if len(blocks) == 2 else 0.0))

        return timer

    monkeypatch.setattr(lt, "_timer", bursty_timer)
    model, methods = tiny_cnn(), {"conv1": ("svd",)}
    table = latency_table(model, SETTINGS, methods)
    ranks, deltas = table.deltas[("conv1", "svd")]
    exact = [lo.model_cost(lo.materialize(model, {"conv1": ("svd", r)})).params - model.count_params()
             for r in ranks]  # fmt: skip
    assert deltas == tuple(float(d) for d in exact)
    blocks.clear()  # timed once (rounds=1, the former procedure), the burst shifts the first delta
    single = latency_table(model, dataclasses.replace(SETTINGS, rounds=1), methods)
    assert single.deltas[("conv1", "svd")][1][0] == exact[0] - 1000.0


def test_isotonic_regression_pools_adjacent_violators():
    # by hand: 3 > 2 pool to 2.5; 4 > 0 pool to 2; 2.5 > 2 pool (3, 2, 4, 0) to 2.25
    np.testing.assert_array_equal(lt.isotonic_increasing([1, 3, 2, 4, 0, 5]), [1, 2.25, 2.25, 2.25, 2.25, 5])
    np.testing.assert_array_equal(lt.isotonic_increasing([2, 2, 1]), [5 / 3] * 3)
    np.testing.assert_array_equal(lt.isotonic_increasing([0.5, 1, 7]), [0.5, 1, 7])  # already sorted
    assert lt.isotonic_increasing([]).shape == (0,)


def test_stored_deltas_do_not_fall_as_rank_grows(monkeypatch):
    """The middle grid rank's chain is timed 500 "ms" slow: its jump is pooled with its neighbours."""
    model = tiny_cnn()
    ranks = tuple(lt.rank_grid(lo.analyze(model).specs["conv2"].useful_ranks["svd"], 3))
    rest = model.count_params() - model.get_layer("conv2").count_params()  # the timed chain is alone
    middle = lo.model_cost(lo.materialize(model, {"conv2": ("svd", ranks[1])})).params - rest

    def spiky_timer(model, settings):
        params = float(model.count_params())
        return lambda n: np.full(n, params + (500.0 if params == middle else 0.0))

    monkeypatch.setattr(lt, "_timer", spiky_timer)
    table = latency_table(model, SETTINGS, {"conv2": ("svd",)})
    raw = [lo.model_cost(lo.materialize(model, {"conv2": ("svd", r)})).params - model.count_params()
           for r in ranks]  # fmt: skip
    raw[1] += 500.0
    assert raw[1] > raw[2]  # the spike breaks the order...
    stored = table.deltas[("conv2", "svd")][1]
    np.testing.assert_allclose(stored, [raw[0], (raw[1] + raw[2]) / 2, (raw[1] + raw[2]) / 2])  # ...pooled


def test_prediction_is_floored_at_a_fraction_of_the_base():
    table = LatencyTable(10.0, {("a", "svd"): ((1, 5), (-12.0, -2.0))}, {"a": 1})
    assert table.predict({"a": ("svd", 1)}) == pytest.approx(lt.FLOOR * 10.0)
    assert table.predict({"a": ("svd", 5)}) == pytest.approx(8.0)


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
    assert table.predict({"shared": ("svd", ranks[-1])}) == model.count_params() + 2 * deltas[-1]


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
        ({"rounds": 0}, "Invalid latency `rounds`: expected an integer >= 1, received 0"),
        ({"threads": 0}, "Invalid latency `threads`: expected None or an integer >= 1, received 0"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LatencySettings(**options)


def test_the_table_times_samples_of_at_least_the_minimum_duration(monkeypatch):
    """A layer of microseconds is timed in samples of many calls, not call by call."""
    from lrf_optuna.runtime import _latency

    seen = []
    real = _latency.time_calls

    def recording(call, *, warmup, runs, repeat=1):
        seen.append(repeat)
        return real(call, warmup=warmup, runs=runs, repeat=repeat)

    monkeypatch.setattr(lt, "time_calls", recording)
    monkeypatch.setattr(
        lt, "calls_per_sample", lambda call, min_sample_ms: 7 if min_sample_ms == lt.MIN_SAMPLE_MS else 0
    )
    latency_table(
        tiny_cnn(), LatencySettings(runtime="keras", runs=2, ranks_per_method=2), {"conv2": ("svd",)}
    )
    timed = [r for r in seen if r != 1]
    assert timed and set(timed) == {7}, seen  # every timed sample, at the repeat chosen for it
