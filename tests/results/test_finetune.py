"""One fine-tuning run: distillation loss against NumPy, accuracies, the original untouched."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lrf_optuna as lo
from lrf_optuna.results._distill import distillation_loss, label_loss, soft_loss


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 1, 3], np.float32)
    teacher, student = rng.standard_normal((2, 4, 4)).astype(np.float32)
    temperature, alpha = 3.0, 0.3
    soft = soft_loss("sparse", student_probabilities=False, teacher_probabilities=False, temperature=3.0)
    loss = distillation_loss(label_loss("sparse", False), soft, width=4, alpha=alpha, scale=temperature**2)
    joined = np.concatenate([student, teacher], axis=1)
    got = keras.ops.convert_to_numpy(
        loss(keras.ops.convert_to_tensor(labels), keras.ops.convert_to_tensor(joined))
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
    assert result.accuracy_original == pytest.approx(lo.results.evaluate_accuracy(original, *data))
    assert result.accuracy_finetuned == pytest.approx(lo.results.evaluate_accuracy(compressed, *data))
    assert result.epochs == 2 and result.seconds > 0 and len(result.history["loss"]) == 2
    assert result.history["loss"][-1] < result.history["loss"][0]  # it trained
    for old, new in zip(before, original.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_finetune_distills_by_default_when_given_the_original(data):
    original = tiny(0)
    losses = {}
    for distill in (None, True, False):
        compressed = lo.materialize(original, {"fc": ("svd", 2)})
        result = lo.finetune(compressed, data, validation_data=data, original=original, distill=distill)
        losses[distill] = result.history["loss"]
    assert losses[None] == losses[True]
    assert losses[None] != losses[False]  # the distillation loss is another number


def test_finetune_rejects_bad_options(data):
    model = tiny(0)
    with pytest.raises(ValueError, match=r"Invalid `epochs`: expected >= 1, received 0"):
        lo.finetune(model, data, validation_data=data, epochs=0)
    with pytest.raises(ValueError, match=r"Invalid `distill=True`: expected the `original` model"):
        lo.finetune(model, data, validation_data=data, distill=True)


def test_cosine_schedule_starts_at_the_learning_rate_and_ends_at_zero():
    schedule = lo.results.learning_rate_schedule(1e-3, schedule="cosine", steps=10)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 10)]
    np.testing.assert_allclose(rates, [1e-3, 0.5e-3, 0.0], atol=1e-9)
    assert lo.results.learning_rate_schedule(1e-3, schedule="constant", steps=10) == 1e-3


def test_finetune_decays_the_learning_rate_to_zero_by_its_last_step(data):
    compressed = lo.materialize(tiny(0), {"fc": ("svd", 2)})
    result = lo.finetune(compressed, data, validation_data=data, epochs=2, batch_size=32)
    # 96 images / 32 = 3 steps per epoch: half-way after the first epoch, 0 after the last.
    np.testing.assert_allclose(result.history["learning_rate"], [1.5e-4, 0.0], atol=1e-9)
    constant = lo.finetune(
        lo.materialize(tiny(0), {"fc": ("svd", 2)}), data, validation_data=data, epochs=2,
        schedule="constant", learning_rate=2e-4,
    )  # fmt: skip
    np.testing.assert_allclose(constant.history["learning_rate"], [2e-4, 2e-4], rtol=1e-6)


def test_finetune_rejects_bad_schedules(data):
    model = tiny(0)
    with pytest.raises(
        ValueError, match=r"Invalid `schedule`: expected one of \['cosine', 'constant'\], received 'step'"
    ):
        lo.finetune(model, data, validation_data=data, schedule="step")
    with pytest.raises(ValueError, match=r"Invalid `learning_rate`: expected > 0, received 0"):
        lo.finetune(model, data, validation_data=data, learning_rate=0)


def with_dropout(build_seed: int) -> keras.Model:
    """Same weights whatever ``build_seed``; only the Dropout layers' generators differ."""
    keras.utils.set_random_seed(build_seed)  # what the global RNG happened to be at build time
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Dropout(0.5)(keras.layers.Flatten()(inputs))
    inner = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5)])
    model = keras.Model(inputs, keras.layers.Dense(3)(inner(x)))
    weights = np.random.default_rng(0)
    model.set_weights(
        [weights.standard_normal(w.shape).astype(np.float32) * 0.3 for w in model.get_weights()]
    )
    return model


def test_finetune_is_reproducible_whatever_the_rng_was_when_the_model_was_built(data):
    # Dropout seeds are drawn at build time (load, materialize): before finetune reseeded
    # them, the same call gave different weights in every process (found on VGG-small).
    runs = []
    for build_seed in (1, 2):
        model = with_dropout(build_seed)
        lo.finetune(model, data, validation_data=data, epochs=1, batch_size=32, seed=7)
        runs.append(model.get_weights())
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)
    other = with_dropout(1)
    lo.finetune(other, data, validation_data=data, epochs=1, batch_size=32, seed=8)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], other.get_weights()))  # seed matters
