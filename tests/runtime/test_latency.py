"""lo.measure_latency: sane values in both runtimes, bad input refused (no absolute timings)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import pytest
import tensorflow as tf

import lrf_optuna as lo
from conftest import randomize_weights


@pytest.fixture(scope="module")
def model() -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    return randomize_weights(keras.Model(inputs, keras.layers.Dense(10)(h), name="tiny"))


@pytest.mark.parametrize(
    ("runtime", "batch_size", "threads", "recorded"),
    [("tflite", 1, None, 1), ("tflite", 3, 2, 2), ("keras", 4, None, "setting")],
)
def test_latency_is_positive_with_its_spread(model, runtime, batch_size, threads, recorded):
    latency = lo.measure_latency(
        model, runtime=runtime, batch_size=batch_size, threads=threads, warmup=1, runs=7, seed=3
    )
    assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms < 10_000
    assert (latency.runtime, latency.batch_size, latency.runs) == (runtime, batch_size, 7)
    expected = tf.config.threading.get_intra_op_parallelism_threads() if recorded == "setting" else recorded
    assert latency.threads == expected
    assert latency.per_sample_ms == latency.median_ms / batch_size


def test_keras_threads_must_match_tensorflows_setting(model):
    current = tf.config.threading.get_intra_op_parallelism_threads()
    assert lo.measure_latency(model, runtime="keras", threads=current or None, runs=1).threads == current
    with pytest.raises(ValueError, match=r"TensorFlow sizes its thread pool once, before any model exists"):
        lo.measure_latency(model, runtime="keras", threads=current + 3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runtime": "onnx"}, r"Invalid `runtime`: expected one of \['keras', 'tflite'\], received 'onnx'"),
        ({"batch_size": 0}, r"Invalid `batch_size`: expected an integer >= 1, received 0"),
        ({"runs": 0}, r"Invalid `runs`: expected an integer >= 1"),
        ({"warmup": -1}, r"Invalid `warmup`: expected an integer >= 0"),
        ({"threads": 0}, r"Invalid `threads`: expected None or an integer >= 1, received 0"),
    ],
)
def test_bad_options_are_refused(model, options, message):
    with pytest.raises(ValueError, match=message):
        lo.measure_latency(model, **options)


def test_missing_tflite_runtime_is_named(model, monkeypatch):
    for module in ("ai_edge_litert.interpreter", "tensorflow.lite.python.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match="pip install ai-edge-litert"):
        lo.measure_latency(model, runtime="tflite")
    assert lo.measure_latency(model, runtime="keras", runs=1).median_ms > 0  # keras needs none


class _Clock:
    """A stand-in for time.perf_counter: every call of ``work`` advances it by ``seconds``."""

    def __init__(self, seconds: float):
        self.now, self.seconds, self.calls = 0.0, seconds, 0

    def perf_counter(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += self.seconds


def test_a_sample_is_the_mean_of_its_back_to_back_calls(monkeypatch):
    from lrf_optuna.runtime import _latency

    clock = _Clock(seconds=2e-6)
    monkeypatch.setattr(_latency.time, "perf_counter", clock.perf_counter)
    times = _latency.time_calls(clock.work, warmup=2, runs=3, repeat=50)
    assert clock.calls == 2 + 3 * 50
    assert times == pytest.approx([2e-3] * 3)  # milliseconds per call, not per sample


@pytest.mark.parametrize(("call_us", "expected"), [(2.0, 500), (3000.0, 1), (0.0001, 10_000)])
def test_calls_per_sample_reach_the_minimum_duration(monkeypatch, call_us, expected):
    from lrf_optuna.runtime import _latency

    clock = _Clock(seconds=call_us * 1e-6)
    monkeypatch.setattr(_latency.time, "perf_counter", clock.perf_counter)
    assert _latency.calls_per_sample(clock.work, 1.0) == expected  # 1 ms, at most 10,000 calls
