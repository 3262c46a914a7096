"""One-shot fine-tuning of a compressed model, optionally distilled from the original."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import keras
import numpy as np

from lrf_optuna.core._batches import DATA_TYPES, batches, is_arrays, is_one_shot, replayable, steps_per_epoch
from lrf_optuna.results._distill import (
    Distiller,
    distillation_loss,
    label_loss,
    outputs_probabilities,
    soft_loss,
    stock_loss,
    target_kind,
)

__all__ = ["SCHEDULES", "FinetuneResult", "evaluate_accuracy", "finetune", "learning_rate_schedule"]

SCHEDULES = ("cosine", "constant")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """Scores on ``validation_data`` and the fine-tuning wall time (seconds).

    ``metric`` names the scores: ``"accuracy"`` (top-1, classification) or ``"mse"`` (mean
    squared error, lower is better: regression heads); the fields keep their ``accuracy_`` names.
    """

    accuracy_original: float | None
    accuracy_compressed: float
    accuracy_finetuned: float
    seconds: float
    epochs: int
    history: dict = dataclasses.field(repr=False, default_factory=dict)
    metric: str = "accuracy"


def _class_ids(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    one_hot = labels.ndim == predictions.ndim and labels.shape[-1] == predictions.shape[-1] > 1
    return np.argmax(labels, axis=-1) if one_hot else labels.reshape(-1)


def _predictions(model: keras.Model, data, batch_size: int):
    """``(predictions, labels)`` pairs: one for arrays, one per batch otherwise."""
    if is_arrays(data) and len(data) >= 2:
        yield model.predict(data[0], batch_size=batch_size, verbose=0), np.asarray(data[1])
        return
    for x, y, _ in batches(data):
        if y is None:
            raise ValueError(
                "Invalid `validation_data`: expected (x, y) arrays or batches, received x alone. "
                "Fix: give the labels with the inputs."
            )
        # called directly: predict_on_batch would trace a function per model and batch shape
        yield keras.ops.convert_to_numpy(model(x, training=False)), np.asarray(y)


def evaluate_accuracy(model: keras.Model, x, y=None, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` arrays (class ids or one-hot ``y``), or on
    ``x``: a tf.data.Dataset, PyDataset or finite generator yielding ``(x, y)`` batches."""
    data = replayable(x if y is None else (x, y))
    correct = total = 0
    for predictions, labels in _predictions(model, data, batch_size):
        ids = _class_ids(labels, predictions)
        correct += int(np.sum(np.argmax(predictions, axis=-1) == ids))
        total += len(ids)
    return _ratio(correct, total)


def _mean_squared_error(model: keras.Model, data, *, batch_size: int = 256) -> float:
    squares = count = 0.0
    for predictions, labels in _predictions(model, data, batch_size):
        difference = predictions.astype(np.float64) - labels.reshape(predictions.shape)
        squares, count = squares + float(np.sum(difference**2)), count + difference.size
    return _ratio(squares, count)


def _ratio(total: float, count: float) -> float:
    if count == 0:
        raise ValueError("Invalid validation data: expected at least one sample, received none")
    return total / count


def _evaluate(model: keras.Model, data, kind: str) -> float:
    return _mean_squared_error(model, data) if kind == "regression" else evaluate_accuracy(model, data)


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


def _first_labels(data):
    """``(data, labels)``: the labels of the whole arrays or of the first batch (a one-shot
    iterator is given back with that batch put in front again)."""
    if is_arrays(data):
        if len(data) != 2:
            raise ValueError(f"Invalid `train_data`: expected (x, y) arrays, received {len(data)} items")
        return data, np.asarray(data[1])
    if is_one_shot(data):
        first = next(data, None)
        # a generator again: fit refuses other iterators
        data = data if first is None else (item for item in itertools.chain([first], data))
        found = [] if first is None else [keras.utils.unpack_x_y_sample_weight(first)]
    else:
        found = list(itertools.islice(batches(data), 1))
    if not found or found[0][1] is None:
        raise ValueError(
            f"Invalid `train_data`: expected {DATA_TYPES} yielding (x, y) batches, received "
            f"{'no batch' if not found else 'batches of x alone'}. Fix: yield the labels with the inputs."
        )
    return data, keras.ops.convert_to_numpy(found[0][1])


def _training_model(compressed, teacher, kind: str, loss, *, temperature: float, alpha: float):
    """The model to fit and its per-sample loss: ``compressed`` itself, or a ``Distiller``."""
    probabilities = outputs_probabilities(compressed)
    hard = label_loss(kind, probabilities, loss)
    if teacher is None:
        return compressed, hard if loss is None else loss  # the user's loss as given (its reduction)
    shapes = tuple(compressed.outputs[0].shape[1:]), tuple(teacher.outputs[0].shape[1:])
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"Invalid `original`: expected outputs of the compressed model's shape {shapes[0]}, "
            f"received {shapes[1]}. Fix: distill from the model that was compressed, or distill=False."
        )
    soft = soft_loss(kind, student_probabilities=probabilities, temperature=temperature,
                     teacher_probabilities=outputs_probabilities(teacher))  # fmt: skip
    scale = 1.0 if kind == "regression" else temperature**2
    combined = distillation_loss(hard, soft, width=shapes[0][-1], alpha=alpha, scale=scale)
    return Distiller(compressed, teacher), combined


def _fit(
    model: keras.Model, data, *, batch_size: int, fit_kwargs: dict, **options
) -> keras.callbacks.History:
    if is_arrays(data):
        return model.fit(*data, batch_size=batch_size, **{"shuffle": True, **options, **fit_kwargs})
    # fit's shuffle=True reorders a PyDataset's batches; for other data Keras ignores it, with a warning
    defaults = {} if isinstance(data, keras.utils.PyDataset) else {"shuffle": False}
    return model.fit(data, **{**defaults, **options, **fit_kwargs})


def finetune(
    compressed: keras.Model,
    train_data,
    *,
    validation_data,
    epochs: int = 1,
    batch_size: int = 128,
    learning_rate: float = 3e-4,
    schedule: str = "cosine",
    original: keras.Model | None = None,
    distill: bool | None = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    loss=None,
    metrics: list | None = None,
    callbacks: list | tuple = (),
    seed: int = 0,
    verbose: int = 0,
    **fit_kwargs,
) -> FinetuneResult:
    """Fine-tune ``compressed`` once (in place) and report its scores and time.

    ``train_data`` and ``validation_data`` are what ``model.fit`` takes: ``(x, y)`` arrays
    (shuffled, ``batch_size`` per batch), or a tf.data.Dataset, ``keras.utils.PyDataset`` or
    generator yielding ``(x, y)`` batches; a validation generator is read once into memory.
    Labels are class ids, one-hot rows, or regression targets (``distill.target_kind``).
    ``fit_kwargs`` (``steps_per_epoch``, ``class_weight``, ``shuffle``, ...) and ``callbacks``
    go to ``fit``; ``metrics`` replace the default ``["accuracy"]`` (``["mse"]`` for regression).
    ``loss`` (anything ``compile`` takes) replaces the label loss, cross-entropy (or MSE); with
    distillation it is still mixed with the soft term: alpha * loss + (1 - alpha) * soft.

    Adam from ``learning_rate`` decayed to 0 by a cosine over the run (``schedule="cosine"``,
    which needs the number of steps: data of unknown length needs ``steps_per_epoch``).
    The default 3e-4 is the measured compromise (benchmarks/results/finetune_schedule.txt):
    it recovers more than a constant 1e-4 from every compressed plan tried, while a cosine
    from 1e-3, best on the most compressed plans, costs the *uncompressed* VGG-small 1.5
    points after one epoch on 10,000 images.
    With distillation, the loss mixes the labels with the original model's softened outputs
    (Hinton et al. 2015; T^2 * KL on logits, a softmax head's outputs read as probabilities)
    or, for regression, the squared difference of the two models' outputs. The original runs
    on each training batch beside the compressed model. ``distill=None`` (default) distills
    whenever ``original`` is given: on 15 of 16 (plan, learning rate) pairs from 0 to 90 % of
    params removed it ends higher than the labels alone, by up to 9 points, and 0.3 points
    lower on the 16th (benchmarks/results/finetune_distill.txt).
    ``distill=True`` needs ``original``; ``distill=False`` only reports its score.
    ``seed`` sets Keras's global seed and restarts every seed generator of ``compressed``
    (Dropout's masks), so the same call gives the same weights in any process.
    The model is left compiled with a stock loss and metric, so it saves and reloads with no
    custom objects: compile it again to train it with your own.
    """
    if epochs < 1:
        raise ValueError(f"Invalid `epochs`: expected >= 1, received {epochs}")
    if distill is None:
        distill = original is not None
    if distill and original is None:
        raise ValueError(
            "Invalid `distill=True`: expected the `original` model to distill from, received None"
        )
    if {"x", "y"} & fit_kwargs.keys():
        raise TypeError("Invalid fit argument `x`/`y`: pass the data as `train_data` instead")
    steps = steps_per_epoch(train_data, batch_size=batch_size, given=fit_kwargs.get("steps_per_epoch"))
    if steps is None and schedule == "cosine":
        raise ValueError(
            f"Invalid `train_data` for schedule='cosine': expected data of known length, received a "
            f"{type(train_data).__name__} of unknown length. Fix: pass `steps_per_epoch=...` or "
            "schedule='constant'."
        )
    rate = learning_rate_schedule(learning_rate, schedule=schedule, steps=epochs * (steps or 1))
    train_data, labels = _first_labels(train_data)
    validation_data = replayable(validation_data)
    kind = target_kind(compressed, labels, loss)
    keras.utils.set_random_seed(seed)
    _reseed_random_layers(compressed, seed)
    score_original = _evaluate(original, validation_data, kind) if original is not None else None
    score_compressed = _evaluate(compressed, validation_data, kind)
    teacher = original if distill else None
    model, loss_fn = _training_model(compressed, teacher, kind, loss, temperature=temperature, alpha=alpha)
    metric = "mse" if kind == "regression" else "accuracy"
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss_fn, metrics=metrics or [metric])
    logger.info("fine-tuning %d epoch(s)", epochs)  # also the mark a test interrupts fit on
    start = time.perf_counter()
    history = _fit(model, train_data, epochs=epochs, batch_size=batch_size, verbose=verbose,
                   callbacks=[_RecordLearningRate(), *callbacks], fit_kwargs=fit_kwargs)  # fmt: skip
    seconds = time.perf_counter() - start
    # Leave a compile state that serializes and reloads with no custom objects.
    stock = stock_loss(kind, outputs_probabilities(compressed))
    compressed.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=stock, metrics=[metric])
    score_finetuned = _evaluate(compressed, validation_data, kind)
    logger.info("fine-tuned %d epoch(s) in %.1f s: %s %.4f -> %.4f", epochs, seconds, metric,
                score_compressed, score_finetuned)  # fmt: skip
    return FinetuneResult(
        score_original, score_compressed, score_finetuned, seconds, epochs, history.history, metric
    )
