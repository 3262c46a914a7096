"""Batches from what ``model.fit`` accepts: (x, y) arrays, tf.data.Dataset, PyDataset, generators.

Fine-tuning hands such data to Keras as it is; evaluation and calibration read it here batch by
batch as NumPy, without importing TensorFlow (a tf.data.Dataset is recognised by its methods).
"""

from __future__ import annotations

import collections.abc
import itertools
import weakref
from collections.abc import Iterator

import keras
import numpy as np

__all__ = ["batches", "calibration_array", "is_arrays", "is_one_shot", "replayable", "steps_per_epoch"]

DATA_TYPES = "(x, y) arrays, a tf.data.Dataset, a keras.utils.PyDataset or a generator of batches"
# What calibration_array read from each object, by max_samples
_READ: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_arrays(data) -> bool:
    """``(x, y)`` (or ``(x, y, sample_weight)``) arrays, as ``model.fit(x, y)`` takes them."""
    return isinstance(data, (tuple, list))


def _is_tf_dataset(data) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator")


def is_one_shot(data) -> bool:
    """A generator or iterator: it can be read only once."""
    return isinstance(data, collections.abc.Iterator)


def _numpy(value):
    if isinstance(value, (tuple, list)):
        return type(value)(_numpy(v) for v in value)
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    return None if value is None else keras.ops.convert_to_numpy(value)


def batches(data, *, batch_size: int = 256) -> Iterator[tuple]:
    """``(x, y, sample_weight)`` NumPy batches (y and sample_weight may be None)."""
    if is_arrays(data):
        columns = [np.asarray(c) for c in data] + [None] * (3 - len(data))
        for start in range(0, len(columns[0]), batch_size):
            yield tuple(None if c is None else c[start : start + batch_size] for c in columns)
        return
    if _is_tf_dataset(data):
        items = data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        count = data.num_batches
        items = (data[i] for i in (range(count) if count is not None else itertools.count()))
    elif isinstance(data, collections.abc.Iterable):
        items = iter(data)
    else:
        raise TypeError(f"Invalid data: expected {DATA_TYPES}, received {type(data).__name__}")
    for item in items:
        yield keras.utils.unpack_x_y_sample_weight(_numpy(item))


def replayable(data):
    """``data`` itself, or a one-shot iterator read into ``(x, y)`` arrays (it must end)."""
    if not is_one_shot(data):
        return data
    read = list(batches(data))
    if not read:
        raise ValueError(f"Invalid data: the generator yielded no batches; expected {DATA_TYPES}")
    columns = [np.concatenate(c) for c in zip(*(b[:2] for b in read)) if c[0] is not None]
    return tuple(columns)


def steps_per_epoch(data, *, batch_size: int, given: int | None) -> int | None:
    """Batches per epoch: ``given`` (``steps_per_epoch``), else the data's length; None if unknown."""
    if given is not None:
        return given
    if is_arrays(data):
        return -(-len(data[0]) // batch_size)
    if _is_tf_dataset(data):
        count = int(data.cardinality())
        return count if count >= 0 else None  # -1 infinite, -2 unknown
    if isinstance(data, keras.utils.PyDataset):
        return data.num_batches
    return None


def calibration_array(data, max_samples: int) -> np.ndarray:
    """Calibration inputs as an array: arrays as they are; from a dataset, PyDataset or generator,
    the inputs of its first ``max_samples`` samples (batches of ``(x, y)`` or of ``x`` alone).

    Each object is read once per ``max_samples`` (a generator once in all): later calls get the
    same samples, even from a dataset that reshuffles, since run_study checks its input more than
    once. Another process reading a reshuffling dataset sees other samples: calibrate on an
    unshuffled one.
    """
    if isinstance(data, np.ndarray) or not (
        _is_tf_dataset(data) or isinstance(data, keras.utils.PyDataset) or is_one_shot(data)
    ):
        return data  # arrays and array-likes: checked by the caller
    read = _READ.setdefault(data, {})
    if max_samples not in read:
        read[max_samples] = (
            next(iter(read.values())) if is_one_shot(data) and read else _read(data, max_samples)
        )
    return read[max_samples]


def _read(data, max_samples: int) -> np.ndarray:
    parts, count = [], 0
    for x, _, _ in batches(data):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(
                "Invalid `calibration_x`: expected batches of model inputs, received a scalar element. "
                "Fix: batch the dataset (`dataset.batch(32)`)."
            )
        parts.append(x[: max_samples - count])
        count += len(parts[-1])
        if count >= max_samples:
            break
    if not parts:
        raise ValueError(
            f"Invalid `calibration_x`: the {type(data).__name__} yielded no samples, expected at least 2. "
            "Fix: pass a dataset that yields batches of model inputs."
        )
    return np.concatenate(parts)
