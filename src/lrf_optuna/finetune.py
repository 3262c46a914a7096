"""One-shot fine-tuning of a compressed model, optionally distilled from the original."""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np

__all__ = ["SCHEDULES", "FinetuneResult", "evaluate_accuracy", "finetune", "learning_rate_schedule"]

SCHEDULES = ("cosine", "constant")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """Accuracies on ``validation_data`` and the fine-tuning wall time (seconds)."""

    accuracy_original: float | None
    accuracy_compressed: float
    accuracy_finetuned: float
    seconds: float
    epochs: int
    history: dict = dataclasses.field(repr=False, default_factory=dict)


def _outputs_are_probabilities(model: keras.Model) -> bool:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def evaluate_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on integer labels ``y``."""
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y).reshape(-1)))


def _distillation_loss(probabilities: bool, temperature: float, alpha: float):
    """Loss on ``y = [label, teacher logits...]``: alpha * CE + (1 - alpha) * T^2 * KL."""
    ops = keras.ops

    def loss(y_true, y_pred):
        labels = ops.cast(y_true[:, 0], "int32")
        student = ops.log(ops.clip(y_pred, 1e-7, 1.0)) if probabilities else y_pred
        teacher = y_true[:, 1:]
        hard = keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
        soft_teacher = ops.softmax(teacher / temperature)
        log_student = ops.log_softmax(student / temperature)
        soft = ops.sum(soft_teacher * (ops.log(ops.clip(soft_teacher, 1e-12, 1.0)) - log_student), axis=-1)
        return alpha * hard + (1.0 - alpha) * temperature**2 * soft

    return loss


def _label_accuracy(y_true, y_pred):
    labels = keras.ops.cast(y_true[:, 0], "int32")
    return keras.ops.cast(keras.ops.equal(keras.ops.argmax(y_pred, axis=-1), labels), "float32")


class _RecordLearningRate(keras.callbacks.Callback):
    """Adds the optimizer's learning rate at each epoch's end to the history."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            logs["learning_rate"] = float(rate)


def learning_rate_schedule(
    learning_rate: float, *, schedule: str, steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``learning_rate`` held (``"constant"``) or decayed to 0 over ``steps`` (``"cosine"``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Invalid `schedule`: expected one of {list(SCHEDULES)}, received {schedule!r}")
    if not learning_rate > 0:
        raise ValueError(f"Invalid `learning_rate`: expected > 0, received {learning_rate}")
    if schedule == "constant":
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))


def _targets_and_loss(x_train, y_train, probabilities: bool, teacher, temperature: float, alpha: float):
    """Training targets (labels in column 0, then the teacher's logits if any) and their loss."""
    targets = np.asarray(y_train, np.float32).reshape(-1, 1)
    if teacher is None:
        loss = lambda y_true, y_pred: keras.losses.sparse_categorical_crossentropy(
            keras.ops.cast(y_true[:, 0], "int32"), y_pred, from_logits=not probabilities
        )
        return targets, loss
    logits = teacher.predict(x_train, batch_size=256, verbose=0)
    if _outputs_are_probabilities(teacher):
        logits = np.log(np.clip(logits, 1e-7, 1.0))
    targets = np.concatenate([targets, logits.astype(np.float32)], axis=1)
    return targets, _distillation_loss(probabilities, temperature, alpha)


def _seed_generators(layer: keras.layers.Layer) -> list[keras.random.SeedGenerator]:
    """The seed generators of ``layer`` and the layers nested in it, in layer order."""
    found = [value for value in vars(layer).values() if isinstance(value, keras.random.SeedGenerator)]
    for inner in getattr(layer, "layers", ()):
        found.extend(_seed_generators(inner))
    return found


def _reseed_random_layers(model: keras.Model, seed: int) -> None:
    """Restart every seed generator of ``model`` (Dropout's masks, ...) from ``seed``.

    A layer draws its generator's seed when it is built (at load or materialize time, from
    whatever the global RNG was then), so ``keras.utils.set_random_seed`` alone left the
    dropout masks, hence the fine-tuned weights, different in every process.
    """
    for offset, generator in enumerate(_seed_generators(model)):
        generator.state.assign(np.array([seed + offset, 0], dtype=generator.state.dtype))


def finetune(
    compressed: keras.Model,
    train_data: tuple[np.ndarray, np.ndarray],
    *,
    validation_data: tuple[np.ndarray, np.ndarray],
    epochs: int = 1,
    batch_size: int = 128,
    learning_rate: float = 3e-4,
    schedule: str = "cosine",
    original: keras.Model | None = None,
    distill: bool | None = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    seed: int = 0,
    verbose: int = 0,
) -> FinetuneResult:
    """Fine-tune ``compressed`` once (in place) and report accuracies and time.

    Adam from ``learning_rate`` decayed to 0 by a cosine over the run (``schedule="cosine"``).
    The default 3e-4 is the measured compromise (benchmarks/results/finetune_schedule.txt):
    it recovers more than a constant 1e-4 from every compressed plan tried, while a cosine
    from 1e-3, best on the most compressed plans, costs the *uncompressed* VGG-small 1.5
    points after one epoch on 10,000 images.
    With distillation, the loss mixes the labels with the original model's softened outputs
    (Hinton et al. 2015). ``distill=None`` (default) distills whenever ``original`` is given:
    on 15 of 16 (plan, learning rate) pairs from 0 to 90 % of params removed it ends higher
    than the labels alone, by up to 9 points, and 0.3 points lower on the 16th
    (benchmarks/results/finetune_distill.txt).
    ``distill=True`` needs ``original``; ``distill=False`` only reports its accuracy.
    ``seed`` sets Keras's global seed and restarts every seed generator of ``compressed``
    (Dropout's masks), so the same call gives the same weights in any process.
    """
    if epochs < 1:
        raise ValueError(f"Invalid `epochs`: expected >= 1, received {epochs}")
    if distill is None:
        distill = original is not None
    if distill and original is None:
        raise ValueError(
            "Invalid `distill=True`: expected the `original` model to distill from, received None"
        )
    steps = epochs * -(-len(train_data[0]) // batch_size)
    rate = learning_rate_schedule(learning_rate, schedule=schedule, steps=steps)
    keras.utils.set_random_seed(seed)
    _reseed_random_layers(compressed, seed)
    x_train, y_train = train_data
    x_val, y_val = validation_data
    accuracy_original = evaluate_accuracy(original, x_val, y_val) if original is not None else None
    accuracy_compressed = evaluate_accuracy(compressed, x_val, y_val)
    probabilities = _outputs_are_probabilities(compressed)
    teacher = original if distill else None
    targets, loss = _targets_and_loss(x_train, y_train, probabilities, teacher, temperature, alpha)
    compressed.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=[_label_accuracy])
    start = time.perf_counter()
    history = compressed.fit(
        x_train,
        targets,
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        shuffle=True,
        callbacks=[_RecordLearningRate()],
    )
    seconds = time.perf_counter() - start
    # Leave a compile state that serializes and reloads with no custom objects.
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
    compressed.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss_fn, metrics=["accuracy"])
    accuracy_finetuned = evaluate_accuracy(compressed, x_val, y_val)
    logger.info("fine-tuned %d epoch(s) in %.1f s: %.4f -> %.4f", epochs, seconds, accuracy_compressed,
                accuracy_finetuned)  # fmt: skip
    return FinetuneResult(
        accuracy_original, accuracy_compressed, accuracy_finetuned, seconds, epochs, history.history
    )
