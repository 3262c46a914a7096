"""Fine-tuning losses: what a model's head outputs, the label and distillation terms, the wrapper.

Targets are one of three kinds (``target_kind``): ``"sparse"`` class ids, ``"onehot"`` per-class
targets, or ``"regression"``. Classification distills with Hinton et al. (2015)'s softened KL on
logits (a softmax head's probabilities are turned back into logits by their log); regression
distills with the mean squared error between the two models' outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

__all__ = [
    "TARGET_KINDS",
    "Distiller",
    "distillation_loss",
    "label_loss",
    "outputs_probabilities",
    "soft_loss",
    "stock_loss",
    "target_kind",
]

TARGET_KINDS = ("sparse", "onehot", "regression")
_REGRESSION_LOSSES = (
    keras.losses.MeanSquaredError, keras.losses.MeanAbsoluteError, keras.losses.Huber, keras.losses.LogCosh,
    keras.losses.MeanSquaredLogarithmicError, keras.losses.MeanAbsolutePercentageError,
)  # fmt: skip
_REGRESSION_FUNCTIONS = (
    keras.losses.mean_squared_error, keras.losses.mean_absolute_error, keras.losses.huber,
    keras.losses.log_cosh, keras.losses.mean_squared_logarithmic_error,
    keras.losses.mean_absolute_percentage_error,
)  # fmt: skip


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether ``model`` ends in a softmax: a ``Softmax`` layer or operation, ``Activation("softmax")``
    or a layer with ``activation="softmax"`` (nested models are looked into)."""
    last = (getattr(model, "operations", None) or model.layers)[-1]
    if isinstance(last, keras.Model):
        return outputs_probabilities(last)
    # keras.layers.Softmax, and keras.ops.softmax's operation (a class with no public name)
    if type(last).__name__ == "Softmax":
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def _is_regression_loss(loss) -> bool:
    resolved = keras.losses.get(loss) if isinstance(loss, str) else loss
    return isinstance(resolved, _REGRESSION_LOSSES) or resolved in _REGRESSION_FUNCTIONS


def _is_one_hot(labels: np.ndarray) -> bool:
    if np.issubdtype(labels.dtype, np.integer):
        return True
    flat = labels.reshape(-1, labels.shape[-1])
    return bool(np.isin(flat, (0, 1)).all() and (flat.sum(axis=-1) == 1).all())


def target_kind(model: keras.Model, labels, loss=None) -> str:
    """``"regression"`` for a regression ``loss`` (MSE, MAE, Huber, ...), or labels of the outputs'
    shape on a head with one output or no softmax that are not one-hot (0/1 rows summing to 1);
    ``"onehot"`` for other labels of the outputs' shape; ``"sparse"`` for class ids (samples,)."""
    if loss is not None and _is_regression_loss(loss):
        return "regression"
    labels = np.asarray(labels)
    outputs = tuple(model.outputs[0].shape[1:])
    shape = labels.shape[1:]
    if outputs[-1] == 1 and shape in ((), (1,)):
        return "regression"
    if shape == outputs:
        return "onehot" if outputs_probabilities(model) or _is_one_hot(labels) else "regression"
    if shape in ((), (1,)) and len(outputs) == 1:
        return "sparse"
    raise ValueError(
        f"Invalid labels of shape {labels.shape}: expected class ids (samples,) or targets of the "
        f"model's output shape (samples, {', '.join(map(str, outputs))}). Fix: pass labels that match "
        "the model's outputs."
    )


def label_loss(kind: str, probabilities: bool, loss=None) -> Callable:
    """The per-sample loss on the labels: the user's ``loss``, or cross-entropy / MSE by ``kind``."""
    if loss is not None:
        loss = keras.losses.get(loss)
        return loss.call if isinstance(loss, keras.losses.Loss) else loss  # .call: not reduced
    if kind == "regression":
        return keras.losses.mean_squared_error
    fn = (
        keras.losses.sparse_categorical_crossentropy
        if kind == "sparse"
        else keras.losses.categorical_crossentropy
    )
    return lambda y_true, y_pred: fn(y_true, y_pred, from_logits=not probabilities)


def stock_loss(kind: str, probabilities: bool) -> keras.losses.Loss:
    """The built-in loss object for ``kind`` (serializes with no custom objects)."""
    if kind == "regression":
        return keras.losses.MeanSquaredError()
    if kind == "sparse":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
    return keras.losses.CategoricalCrossentropy(from_logits=not probabilities)


def _logits(outputs, probabilities: bool):
    return keras.ops.log(keras.ops.clip(outputs, 1e-7, 1.0)) if probabilities else outputs


def soft_loss(kind: str, *, student_probabilities: bool, teacher_probabilities: bool, temperature: float):
    """Per-sample ``(student, teacher) -> loss``: KL(softmax(t/T) || softmax(s/T)) on logits (to be
    scaled by T^2), or the mean squared difference of the outputs for regression."""
    ops = keras.ops
    if kind == "regression":
        return lambda student, teacher: ops.mean(ops.square(student - teacher), axis=-1)

    def soft(student, teacher):
        teacher = ops.softmax(_logits(teacher, teacher_probabilities) / temperature)
        log_student = ops.log_softmax(_logits(student, student_probabilities) / temperature)
        return ops.sum(teacher * (ops.log(ops.clip(teacher, 1e-12, 1.0)) - log_student), axis=-1)

    return soft


def distillation_loss(
    hard: Callable, soft: Callable, *, width: int, alpha: float, scale: float = 1.0
) -> Callable:
    """Per-sample ``alpha * hard(y, student) + (1 - alpha) * scale * soft(student, teacher)`` on
    the student's and the teacher's outputs joined on the last axis (``Distiller``'s ``y_pred``)."""

    def loss(y_true, joined):
        student, teacher = joined[..., :width], joined[..., width:]
        return alpha * hard(y_true, student) + (1.0 - alpha) * scale * soft(student, teacher)

    return loss


class Distiller(keras.Model):
    """Trains ``student``; its loss sees ``[student(x), teacher(x)]`` joined on the last axis.

    The teacher runs in the same step, in inference mode and without gradient, on whatever
    batches ``fit`` reads, so any data ``fit`` accepts works. It is no tracked attribute: the
    wrapper's weights, ``save`` and ``save_weights`` are the student's (what callbacks see).
    Metrics see the student's outputs alone.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model):
        super().__init__(name=f"{student.name}_distiller")
        self.student = student
        self._teach = lambda x: keras.ops.stop_gradient(teacher(x, training=False))

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        joined = keras.ops.concatenate([y_pred, self._teach(x)], axis=-1)
        return super().compute_loss(x=x, y=y, y_pred=joined, sample_weight=sample_weight, training=training)

    def save(self, *args, **kwargs):
        return self.student.save(*args, **kwargs)

    def save_weights(self, *args, **kwargs):
        return self.student.save_weights(*args, **kwargs)
