"""Walking and rebuilding Keras graphs: the only code that rewires Keras models.

``rebuild`` recreates a Sequential or Functional model (nested models included,
recursively) through ``keras.models.clone_model``; a visitor decides what each layer
becomes and how each call is made, so one call can turn into a chain of layers.
Sequential models (top level or nested) come back as Functional ones. Raw operations
on Keras tensors (``a + b``, ``keras.ops.relu(x)``, ``x[:, 0]``) are ``keras.Operation``s
that are not layers: they hold no weights, so the walker carries them over itself and
visitors only ever see layers.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Protocol

import keras

from lrf_optuna.model._segments import TopLevelCall, keras_tensors

__all__ = [
    "CopyVisitor",
    "GraphVisitor",
    "carry_operation",
    "check_graph_model",
    "check_single_input",
    "copy_model",
    "fresh_copy",
    "rebuild",
    "recursion_headroom",
]

SUBCLASSED_HELP = (
    "lrf_optuna needs the layer graph, which a subclassed model does not expose. "
    "Build the same network as a Functional model (keras.Model(inputs, outputs)) or a "
    "keras.Sequential, copy the weights with set_weights, and pass that model instead."
)


class GraphVisitor(Protocol):
    def clone(self, layer: keras.layers.Layer, path: str) -> Any:
        """What replaces ``layer`` (called once per layer object)."""

    def call(self, layer: keras.layers.Layer, replacement: Any, path: str, *args, **kwargs) -> Any:
        """Apply ``replacement`` to the arguments of one call of ``layer``."""


def check_graph_model(model: Any) -> None:
    """Raise a TypeError unless ``model`` is a Sequential or Functional Keras model."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Invalid `model`: expected a keras.Model, received {type(model).__name__}. "
            "Load it with keras.models.load_model(path) first."
        )
    if isinstance(model, keras.Sequential):
        if not getattr(model, "inputs", None):
            raise ValueError(
                f"Invalid `model` '{model.name}': expected a built Sequential model, received "
                "one with no input shape. Start it with keras.Input(shape) or call it on data."
            )
        return
    if not isinstance(model, keras.Function):
        raise TypeError(
            f"Invalid `model` '{model.name}': expected a Sequential or Functional model, "
            f"received a subclassed model ({type(model).__name__}). {SUBCLASSED_HELP}"
        )


def check_single_input(model: keras.Model) -> None:
    """ValueError for a model with several inputs, where one array of calibration samples is needed."""
    if len(model.inputs) <= 1:
        return
    names = ", ".join(repr(t.name) for t in model.inputs)
    raise ValueError(
        f"Invalid `model`: expected one input for calibration (profile, search, model proxy), but "
        f"model '{model.name}' has {len(model.inputs)} inputs ({names}). lo.analyze, lo.plan_cost and "
        "lo.materialize work on it: pick a plan yourself (lo.model.compressible_layers lists the layers) and "
        "call lo.materialize(model, plan); or search a single-input part of it, e.g. "
        "keras.Model(one_input, some_layer.output), and apply that part's plan to the whole model."
    )


def fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new, unbuilt layer with the same configuration (weights are copied later).

    A ``Lambda`` layer is reused as it is: its Python function does not survive a config
    round trip (safe mode refuses it; globals and closures are lost), and it has no weights.
    """
    if isinstance(layer, keras.layers.Lambda):
        return layer
    return layer.__class__.from_config(layer.get_config())


def carry_operation(operation: keras.Operation) -> keras.Operation:
    """A raw operation for the new graph: a fresh one from its config, as clone_model's default
    does, or the operation itself when it has no config (it has no weights to share)."""
    try:
        return operation.__class__.from_config(operation.get_config())
    except NotImplementedError:
        return operation


class CopyVisitor:
    """Visitor making a faithful copy: fresh layers, weights copied by ``copy_weights``."""

    def __init__(self):
        self.pending: list[tuple[keras.layers.Layer, list]] = []
        self.by_path: dict[str, keras.layers.Layer] = {}

    def clone(self, layer: keras.layers.Layer, path: str) -> Any:
        new = fresh_copy(layer)
        self.pending.append((new, layer.get_weights()))
        self.by_path[path] = new
        return new

    def call(self, layer: keras.layers.Layer, replacement: Any, path: str, *args, **kwargs) -> Any:
        return replacement(*args, **kwargs)

    def copy_weights(self) -> None:
        """Set the recorded weights, once the new graph has built every layer."""
        for new, weights in self.pending:
            new.set_weights(weights)
        self.pending = []  # the NumPy copies of every weight: as large as the model (issue 21)


def _is_model(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _is_raw_operation(operation: Any) -> bool:
    return not isinstance(operation, keras.layers.Layer)


class _Walker:
    def __init__(self, visitor: GraphVisitor, calls: list | None = None):
        self.visitor = visitor
        self.calls = calls  # top-level calls, recorded for ``_segments.cut``
        self.replacements: dict[int, Any] = {}  # id(original) -> replacement, keeps sharing
        self.originals: dict[int, tuple[Any, str]] = {}  # id(replacement) -> (original, path)

    def replacement(self, layer: Any, path: str) -> Any:
        if id(layer) not in self.replacements:
            if _is_model(layer):
                check_graph_model(layer)
                new = self.rebuild(layer, prefix=path + "/")
            elif _is_raw_operation(layer):
                new = carry_operation(layer)
            else:
                new = self.visitor.clone(layer, path)
            self.replacements[id(layer)] = new
            self.originals[id(new)] = (layer, path)
        return self.replacements[id(layer)]

    def call(self, new: Any, *args, **kwargs) -> Any:
        layer, path = self.originals[id(new)]
        if _is_model(layer) or _is_raw_operation(layer):
            result = new(*args, **kwargs)
        else:
            result = self.visitor.call(layer, new, path, *args, **kwargs)
        if self.calls is not None and "/" not in path:  # Keras names never hold "/": top level
            self.calls.append(TopLevelCall(path, keras_tensors((args, kwargs)), keras_tensors(result)))
        return result

    def rebuild(self, model: keras.Model, prefix: str = "") -> keras.Model:
        if isinstance(model, keras.Sequential):
            spec = model.inputs[0]
            inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
            outputs = inputs
            for layer in model.layers:
                outputs = self.call(self.replacement(layer, prefix + layer.name), outputs)
            return keras.Model(inputs, outputs, name=model.name)
        return keras.models.clone_model(
            model,
            clone_function=lambda layer: self.replacement(layer, prefix + layer.name),
            call_function=self.call,
        )


@contextlib.contextmanager
def recursion_headroom(frames: int) -> Iterator[None]:
    """Python's recursion limit raised to ``frames`` (never lowered) inside the block.

    Keras maps a Functional graph recursively, one frame per node of the deepest path
    (when building a model and when loading one): a factorized deep model (EfficientNetV2L,
    every layer factorized) exceeds Python's default limit of 1000.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, frames))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _count_operations(model: keras.Model) -> int:
    if not isinstance(model, keras.Sequential | keras.Function):
        return 1  # a subclassed model exposes no graph; the walk refuses it with the reason
    operations = model.layers if isinstance(model, keras.Sequential) else model.operations
    return sum(_count_operations(op) if _is_model(op) else 1 for op in operations)


def rebuild(model: keras.Model, visitor: GraphVisitor, *, calls: list | None = None) -> keras.Model:
    """A new model with the same graph as ``model``, each layer as ``visitor`` decides;
    ``calls`` (a list) receives its top-level calls in graph order (``TopLevelCall``)."""
    check_graph_model(model)
    # a factorized layer becomes at most 3 layers, plus Keras' own frames
    with recursion_headroom(1000 + 4 * _count_operations(model)):
        return _Walker(visitor, calls).rebuild(model)


def copy_model(model: keras.Model) -> tuple[keras.Model, dict[str, keras.layers.Layer]]:
    """An independent copy of ``model`` and its new layers by path."""
    visitor = CopyVisitor()
    copy = rebuild(model, visitor)
    visitor.copy_weights()
    return copy, visitor.by_path
