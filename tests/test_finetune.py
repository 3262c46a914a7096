"""One fine-tuning run: distillation loss against NumPy, accuracies, the original untouched."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from lrf_optuna.finetune import _distillation_loss


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 1, 3], np.float32)
    teacher, student = rng.standard_normal((2, 4, 4)).astype(np.float32)
    temperature, alpha = 3.0, 0.3
    loss = _distillation_loss(False, temperature, alpha)
    y_true = np.concatenate([labels[:, None], teacher], axis=1)
    got = keras.ops.convert_to_numpy(
        loss(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(student))
    )
    hard = -np.log(softmax(student)[np.arange(4), labels.astype(int)])
    p, q = softmax(teacher / temperature), softmax(student / temperature)
    soft = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    np.testing.assert_allclose(got, alpha * hard + (1 - alpha) * temperature**2 * soft, rtol=1e-5)


def tiny(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Dense(16, activation="relu", name="fc")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3, :, 0].mean(axis=(1, 2)) > 0).astype(int) + (x[:, 3:, :, 0].mean(axis=(1, 2)) > 0)
    return x, y


@pytest.mark.parametrize("distill", [False, True])
def test_finetune_reports_accuracies_and_leaves_the_original_alone(data, distill):
    original = tiny(0)
    before = [w.copy() for w in original.get_weights()]
    compressed = lo.materialize(original, {"fc": ("svd", 2)})
    result = lo.finetune(
        compressed,
        data,
        validation_data=data,
        epochs=2,
        learning_rate=1e-2,
        original=original,
        distill=distill,
    )
    assert result.accuracy_original == pytest.approx(lo.evaluate_accuracy(original, *data))
    assert result.accuracy_finetuned == pytest.approx(lo.evaluate_accuracy(compressed, *data))
    assert result.epochs == 2 and result.seconds > 0 and len(result.history["loss"]) == 2
    assert result.history["loss"][-1] < result.history["loss"][0]  # it trained
    for old, new in zip(before, original.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_finetune_rejects_bad_options(data):
    model = tiny(0)
    with pytest.raises(ValueError, match=r"Invalid `epochs`: expected >= 1, received 0"):
        lo.finetune(model, data, validation_data=data, epochs=0)
    with pytest.raises(ValueError, match=r"Invalid `distill=True`: expected the `original` model"):
        lo.finetune(model, data, validation_data=data, distill=True)
