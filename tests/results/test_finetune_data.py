"""Fine-tuning on what model.fit accepts: datasets, PyDataset, generators, heads, labels, fit options."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import lrf_optuna as lo
from lrf_optuna.results._compress import calibration_subset
from lrf_optuna.results._distill import outputs_probabilities
from lrf_optuna.similarity._profile import check_calibration

BATCH = 32


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tiny(seed: int = 0, *, head: str = "logits", outputs: int = 3, dropout: float = 0.2) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Dropout(dropout)(keras.layers.Flatten()(x))  # the teacher's must stay off
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    activation = "softmax" if head == "dense_softmax" else None
    x = keras.layers.Dense(outputs, activation=activation, name="head")(x)
    if head == "softmax_layer":
        x = keras.layers.Softmax()(x)
    elif head == "activation":
        x = keras.layers.Activation("softmax")(x)
    return keras.Model(inputs, x)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3, :, 0].mean(axis=(1, 2)) > 0).astype(int) + (x[:, 3:, :, 0].mean(axis=(1, 2)) > 0)
    return x, y


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, index):
        return self.x[index * BATCH : (index + 1) * BATCH], self.y[index * BATCH : (index + 1) * BATCH]


def generator(x, y, *, forever: bool):
    while True:
        for start in range(0, len(x), BATCH):
            yield x[start : start + BATCH], y[start : start + BATCH]
        if not forever:
            return


def as_input(kind: str, x, y, *, training: bool):
    if kind == "dataset":
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    if kind == "pydataset":
        return Batches(x, y)
    return generator(x, y, forever=training)


def run(train, validation, *, head="logits", distill=True, **options):
    original = tiny(0, head=head)
    compressed = lo.materialize(original, {"fc": ("svd", 2)})
    result = lo.finetune(
        compressed, train, validation_data=validation, epochs=2, batch_size=BATCH, learning_rate=1e-2,
        original=original, distill=distill, seed=3, **options,
    )  # fmt: skip
    return result, compressed


@pytest.fixture(scope="module")
def unshuffled_arrays_run(data):
    """The run on unshuffled arrays, once for the three input types compared with it."""
    return run(data, data, shuffle=False)


@pytest.mark.parametrize("kind", ["dataset", "pydataset", "generator"])
def test_each_input_type_gives_the_weights_of_unshuffled_arrays(data, unshuffled_arrays_run, kind):
    # Before: TypeError '_BatchDataset' object is not subscriptable (the teacher indexed arrays).
    expected, reference = unshuffled_arrays_run
    x, y = data
    steps = {"steps_per_epoch": 3} if kind == "generator" else {}
    result, compressed = run(
        as_input(kind, x, y, training=True), as_input(kind, x, y, training=False), shuffle=False, **steps
    )
    for got, want in zip(compressed.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert (result.accuracy_original, result.accuracy_compressed, result.accuracy_finetuned) == (
        expected.accuracy_original, expected.accuracy_compressed, expected.accuracy_finetuned,
    )  # fmt: skip
    assert result.history["loss"] == expected.history["loss"]


def test_data_of_unknown_length_needs_steps_per_epoch_for_the_cosine_schedule(data):
    with pytest.raises(ValueError, match=r"unknown length\. Fix: pass `steps_per_epoch=\.\.\.`"):
        run(generator(*data, forever=True), data)


def test_batches_without_labels_are_refused(data):
    x, _ = data
    with pytest.raises(ValueError, match=r"yielding \(x, y\) batches, received batches of x alone"):
        run(tf.data.Dataset.from_tensor_slices(x).batch(BATCH), data)
    with pytest.raises(ValueError, match=r"Invalid `validation_data`: expected \(x, y\) arrays or batches"):
        run(data, tf.data.Dataset.from_tensor_slices(x).batch(BATCH))


def test_heads_ending_in_a_softmax_output_probabilities():
    inner = tiny(0)
    with_op = keras.Model(inner.inputs, keras.ops.softmax(inner.outputs[0]))
    nested = keras.Sequential([keras.Input((6, 6, 1)), tiny(0, head="softmax_layer")])
    for head in ("dense_softmax", "softmax_layer", "activation"):
        assert outputs_probabilities(tiny(0, head=head)), head
    assert outputs_probabilities(with_op) and outputs_probabilities(nested)
    assert not outputs_probabilities(tiny(0))


def test_a_softmax_head_in_any_form_distills_like_dense_softmax(data):
    # Before: a final Softmax layer was read as logits (only `.activation` was looked at).
    expected, reference = run(data, data, head="dense_softmax")
    for head in ("softmax_layer", "activation"):
        result, compressed = run(data, data, head=head)
        for got, want in zip(compressed.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.history["loss"], expected.history["loss"], rtol=1e-6)


def first_step_loss(result) -> float:
    return result.history["loss"][0]  # one batch: the loss at the starting weights


def test_regression_head_distills_with_mse(data):
    x, _ = data
    targets = np.random.default_rng(1).standard_normal((len(x), 2)).astype(np.float32)
    original = tiny(0, outputs=2, dropout=0.0)  # the loss seen in training is the one computed here
    compressed = lo.materialize(original, {"fc": ("svd", 2)})
    student, teacher = compressed.predict(x, verbose=0), original.predict(x, verbose=0)
    alpha = 0.3
    result = lo.finetune(
        compressed, (x, targets), validation_data=(x, targets), batch_size=len(x), original=original,
        alpha=alpha, learning_rate=1e-2, epochs=5,
    )  # fmt: skip
    hard = np.mean((student - targets) ** 2, axis=-1)
    soft = np.mean((student - teacher) ** 2, axis=-1)
    assert first_step_loss(result) == pytest.approx(np.mean(alpha * hard + (1 - alpha) * soft), rel=1e-5)
    assert result.metric == "mse" and "mse" in result.history
    assert result.accuracy_compressed == pytest.approx(np.mean((student - targets) ** 2), rel=1e-5)
    assert result.accuracy_original == pytest.approx(np.mean((teacher - targets) ** 2), rel=1e-5)
    assert result.history["loss"][-1] < result.history["loss"][0]  # it trained


def test_one_hot_labels_train_and_score_like_class_ids(data):
    x, y = data
    one_hot = np.eye(3, dtype=np.float32)[y]
    expected, reference = run(data, data)
    result, compressed = run((x, one_hot), (x, one_hot))
    assert lo.results.evaluate_accuracy(compressed, x, one_hot) == lo.results.evaluate_accuracy(
        compressed, x, y
    )
    assert result.accuracy_finetuned == expected.accuracy_finetuned
    assert result.metric == "accuracy"
    for got, want in zip(compressed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_evaluate_accuracy_reads_datasets(data):
    x, y = data
    model = tiny(0)
    expected = lo.results.evaluate_accuracy(model, x, y)
    assert lo.results.evaluate_accuracy(model, as_input("dataset", x, y, training=False)) == expected
    assert lo.results.evaluate_accuracy(model, as_input("generator", x, y, training=False)) == expected
    assert expected == np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.keys = 0, set()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.keys |= set(logs)


def test_user_loss_metrics_callbacks_and_fit_options_reach_fit(data):
    x, y = data
    doubled = lambda y_true, y_pred: (
        2.0 * keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    )
    original = tiny(0, dropout=0.0)
    compressed = lo.materialize(original, {"fc": ("svd", 2)})
    student, teacher = compressed.predict(x, verbose=0), original.predict(x, verbose=0)
    recorder = Recorder()
    result = lo.finetune(
        compressed, data, validation_data=data, epochs=2, batch_size=len(x), original=original, alpha=0.4,
        temperature=2.0, loss=doubled, metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        callbacks=[recorder], steps_per_epoch=1, class_weight={0: 2.0, 1: 1.0, 2: 0.5},
    )  # fmt: skip
    hard = -2.0 * np.log(softmax(student)[np.arange(len(y)), y])
    p, q = softmax(teacher / 2.0), softmax(student / 2.0)
    soft = 4.0 * np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    weights = np.array([2.0, 1.0, 0.5])[y]
    assert first_step_loss(result) == pytest.approx(np.mean(weights * (0.4 * hard + 0.6 * soft)), rel=1e-5)
    assert recorder.batches == 2 and {"acc", "loss", "learning_rate"} <= recorder.keys
    assert "acc" in result.history and "accuracy" not in result.history


def test_distilled_model_from_a_dataset_saves_with_no_custom_objects(data, tmp_path):
    x, y = data
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "checkpoint.keras")  # sees the wrapper
    _, compressed = run(as_input("dataset", x, y, training=True), data, callbacks=[checkpoint])
    path = tmp_path / "compressed.keras"
    compressed.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects
    checkpointed = keras.models.load_model(tmp_path / "checkpoint.keras")  # the last epoch's
    assert len(reloaded.layers) == len(compressed.layers) == len(checkpointed.layers)
    for got, saved, want in zip(reloaded.get_weights(), checkpointed.get_weights(), compressed.get_weights()):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(saved, want)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), compressed.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("kind", ["dataset_xy", "dataset_x", "pydataset", "generator"])
def test_calibration_from_a_dataset_is_its_first_samples(data, kind):
    x, y = data
    model = tiny(0)
    source = {
        "dataset_xy": lambda: tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH),
        "dataset_x": lambda: tf.data.Dataset.from_tensor_slices(x).batch(BATCH),
        "pydataset": lambda: Batches(x, y),
        "generator": lambda: generator(x, y, forever=True),
    }[kind]
    data_source = source()
    np.testing.assert_array_equal(check_calibration(model, data_source, max_samples=40), x[:40])
    # run_study checks its input more than once: a generator read once gives the same samples again
    np.testing.assert_array_equal(check_calibration(model, data_source, max_samples=40), x[:40])
    np.testing.assert_array_equal(
        check_calibration(model, source(), max_samples=256),
        np.concatenate([x] * 3)[:256] if kind == "generator" else x,
    )
    np.testing.assert_array_equal(calibration_subset(source(), 50), x[:50])
    np.testing.assert_array_equal(calibration_subset(x, 50), calibration_subset(x, 50))  # arrays: drawn


def test_a_reshuffling_dataset_calibrates_on_the_same_samples_every_time(data):
    x, _ = data
    model = tiny(0)
    shuffled = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=1).batch(BATCH)
    first = check_calibration(model, shuffled, max_samples=40)
    np.testing.assert_array_equal(check_calibration(model, shuffled, max_samples=40), first)
    assert not np.array_equal(first, x[:40])  # it did shuffle: rows of x in another order
    assert {row.tobytes() for row in first} <= {row.tobytes() for row in x}


def test_bad_calibration_datasets_say_what_to_fix(data):
    x, _ = data
    model = tiny(0)
    empty = tf.data.Dataset.from_tensor_slices(x[:0]).batch(BATCH)
    with pytest.raises(ValueError, match=r"yielded no samples, expected at least 2\. Fix:"):
        check_calibration(model, empty)
    unbatched = tf.data.Dataset.from_tensor_slices(x)
    with pytest.raises(ValueError, match=r"expected \(samples, 6, 6, 1\).*a dataset must yield batches"):
        check_calibration(model, unbatched)
    bad = x.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"expected finite values, received NaN or Inf"):
        check_calibration(model, tf.data.Dataset.from_tensor_slices(bad).batch(BATCH))


def test_profile_from_a_dataset_equals_the_profile_from_its_arrays(data):
    x, y = data
    model = tiny(0)
    settings = lo.ProfileSettings(ranks_per_method=2)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    got = lo.profile_model(model, dataset, settings=settings, show_progress=False)
    want = lo.profile_model(model, x, settings=settings, show_progress=False)
    columns = [c for c in got.columns if c != "seconds"]
    assert set(got.layer) == {"conv", "fc", "head"}
    pd.testing.assert_frame_equal(got[columns], want[columns])


def test_without_distillation_the_user_loss_is_compiled_as_given(data):
    x, y = data
    summed = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    compressed = lo.materialize(tiny(0, dropout=0.0), {"fc": ("svd", 2)})
    expected = -np.log(softmax(compressed.predict(x, verbose=0))[np.arange(len(y)), y]).sum()
    result = lo.finetune(compressed, data, validation_data=data, batch_size=len(x), loss=summed)
    assert first_step_loss(result) == pytest.approx(expected, rel=1e-5)  # summed, not averaged


def test_search_reads_as_many_dataset_samples_as_the_profile_keeps():
    # More than the default 256: a dataset must give the profile's max_samples, not 256.
    x = np.random.default_rng(3).standard_normal((300, 6, 6, 1)).astype("float32")
    model = tiny(0)
    settings = lo.ProfileSettings(ranks_per_method=1, max_samples=300, max_positions=8)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(BATCH)
    got = lo.profile_model(model, dataset, settings=settings, show_progress=False)
    want = lo.profile_model(model, x, settings=settings, show_progress=False)
    columns = [c for c in got.columns if c != "seconds"]
    pd.testing.assert_frame_equal(got[columns], want[columns])
