"""Measured latency of a model, per batch, in Keras or under the TFLite interpreter.

What is timed is what a user calling the model sees, on seeded random inputs already in memory:

- ``"keras"``: ``model.predict_on_batch(x)``: the traced, compiled predict step (what
  ``model.predict`` runs per batch), including the copy of the outputs to NumPy. Not the eager
  ``model(x)``, whose Python dispatch costs more than a small model's math.
- ``"tflite"``: the float32 ``.tflite`` conversion of the model (``export_tflite``'s, not
  written to disk), run by the LiteRT (else TensorFlow's) interpreter with ``num_threads``:
  ``set_tensor`` + ``invoke`` + ``get_tensor``.

Threads: TFLite takes ``threads`` per interpreter (None: 1). TensorFlow's intra-op thread pool
can only be sized before TensorFlow initializes, which has happened once any Keras model
exists; so for Keras ``threads=None`` measures with the process's setting (0: TensorFlow's
default, all cores) and an explicit ``threads`` must equal it, else ValueError. To time Keras
on n threads, call ``tf.config.threading.set_intra_op_parallelism_threads(n)`` first thing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

import keras
import numpy as np

from lrf_optuna.runtime._tflite import convert_tflite, load_interpreter, prepared, random_inputs

__all__ = ["RUNTIMES", "Latency", "measure_latency"]

logger = logging.getLogger(__name__)
RUNTIMES = ("keras", "tflite")


@dataclasses.dataclass(frozen=True)
class Latency:
    """Milliseconds per batch over ``runs`` warm runs: median and 10th/90th percentiles.

    ``threads``: the interpreter's threads (TFLite) or TensorFlow's intra-op setting (Keras;
    0 means TensorFlow's default, all cores).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    runtime: str
    batch_size: int
    threads: int

    @property
    def per_sample_ms(self) -> float:
        return self.median_ms / self.batch_size


def measure_latency(
    model: keras.Model,
    *,
    runtime: str = "tflite",
    batch_size: int = 1,
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 50,
    seed: int = 0,
) -> Latency:
    """Time ``runs`` calls of ``model`` on one seeded random batch after ``warmup`` untimed ones.

    See the module docstring for what each ``runtime`` times and what ``threads`` means.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Invalid `runtime`: expected one of {list(RUNTIMES)}, received {runtime!r}")
    for name, value, least in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("runs", runs, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"Invalid `{name}`: expected an integer >= {least}, received {value!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"Invalid `threads`: expected None or an integer >= 1, received {threads!r}")
    call, threads = model_call(model, runtime=runtime, batch_size=batch_size, threads=threads, seed=seed)
    times = time_calls(call, warmup=warmup, runs=runs)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    logger.debug("%s latency of '%s' at batch %d: %.3f ms", runtime, model.name, batch_size, median)
    return Latency(float(median), float(p10), float(p90), runs, runtime, batch_size, threads)


def model_call(
    model: keras.Model, *, runtime: str, batch_size: int, threads: int | None, seed: int = 0
) -> tuple[Callable[[], object], int]:
    """What ``measure_latency`` times (one call per batch, inputs ready) and the threads it uses;
    built once, so callers can time several models alternately (the latency table does)."""
    x = random_inputs(model, batch_size, seed=seed)
    if runtime == "keras":
        return (lambda: model.predict_on_batch(x)), _keras_threads(threads)
    threads = 1 if threads is None else threads
    return _tflite_call(model, x, threads), threads


def _keras_threads(threads: int | None) -> int:
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    if threads is None or threads == current:
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError as error:
        raise ValueError(
            f"Invalid `threads` for runtime 'keras': expected None or {current} (TensorFlow's intra-op "
            f"setting, 0 = all cores), received {threads}. TensorFlow sizes its thread pool once, before "
            "any model exists: call tf.config.threading.set_intra_op_parallelism_threads(n) first "
            "thing in your program, or pass threads=None."
        ) from error
    return threads


def _tflite_call(model: keras.Model, x: np.ndarray, threads: int) -> Callable[[], np.ndarray]:
    interpreter = prepared(load_interpreter(content=convert_tflite(model), threads=threads), x.shape)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def call() -> np.ndarray:
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return call


def time_calls(call: Callable[[], object], *, warmup: int, runs: int, repeat: int = 1) -> np.ndarray:
    """Milliseconds per call of each of ``runs`` samples, after ``warmup`` untimed calls; a
    sample is the mean of ``repeat`` back-to-back calls."""
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        times[index] = (time.perf_counter() - start) * 1e3 / repeat
    return times


def calls_per_sample(call: Callable[[], object], min_sample_ms: float, *, most: int = 10_000) -> int:
    """How many back-to-back calls make a sample of at least ``min_sample_ms`` (at most ``most``),
    from the median of 3 timed calls. A call of a few microseconds (a tiny model under TFLite)
    timed alone is measured at the resolution of the timer and of the scheduler."""
    single = float(np.median(time_calls(call, warmup=0, runs=3)))
    return int(min(most, max(1, math.ceil(min_sample_ms / max(single, 1e-6)))))
