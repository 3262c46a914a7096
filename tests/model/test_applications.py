"""Every ``keras.applications`` constructor (``weights=None``, 10 classes, its smallest input)
through analyze -> a seeded random plan -> materialize -> cost equality -> ``.keras`` round trip.

Slow: run with ``pytest -m slow tests/model/test_applications.py``. All 40 constructors of Keras 3.15
passed in 25 min on the 2-core box (MobileNet 5 s ... ConvNeXtXLarge 209 s).
Several of these graphs hold raw operations (ConvNeXt's residual ``a + b``).
"""

from __future__ import annotations

import zlib

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from conftest import predict
from lrf_optuna.files._models import load_model_file

# Smallest square input each constructor accepts with weights=None (Keras refuses smaller).
MIN_SIZE = {"InceptionResNetV2": 75, "InceptionV3": 75, "Xception": 71}
APPLICATIONS = sorted(name for name in dir(keras.applications) if name[:1].isupper())


def random_plan(analysis: lo.model.ModelAnalysis, seed: int) -> dict:
    """Per compressible layer: a random method among those with a useful rank, a random rank in
    ``1..useful``."""
    rng = np.random.default_rng(seed)
    plan = {}
    for name, spec in analysis.specs.items():
        methods = sorted(m for m, useful in spec.useful_ranks.items() if useful > 0)
        if methods:
            method = methods[rng.integers(len(methods))]
            plan[name] = (method, int(rng.integers(1, spec.useful_ranks[method] + 1)))
    return plan


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_application(name, tmp_path):
    size = MIN_SIZE.get(name, 32)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected = predict(model, x)
    np.testing.assert_array_equal(predict(lo.materialize(model, {}), x), expected)  # an exact copy

    analysis = lo.analyze(model)
    plan = random_plan(analysis, seed=zlib.crc32(name.encode()))
    assert plan, "no compressible layer"
    compressed = lo.materialize(model, plan, analysis=analysis)
    predicted = analysis.plan_cost(plan)
    assert predicted == lo.model_cost(compressed)
    assert predicted.params == compressed.count_params()
    outputs = predict(compressed, x)
    assert outputs.shape == expected.shape and np.isfinite(outputs).all()

    path = tmp_path / f"{name}.keras"
    compressed.save(path)
    # lrf_optuna's loader: the deepest (EfficientNetV2L) exceed Keras' recursion at load time
    np.testing.assert_array_equal(predict(load_model_file(path), x), outputs)
