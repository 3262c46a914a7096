"""A rebuilt model cut into consecutive segments, each run from the tensors its predecessor left.

The profile captures layers in groups, one pass over the calibration set per group (issue 21).
Run from the model's input, pass k recomputes every layer before group k: at 224x224, ResNet50's
18 groups cost 18 full forward passes. Cut instead after each group's last top-level call, pass k
runs only its own segment, from the tensors that cross the cut (its *frontier*), which pass k - 1
wrote out. The same layers run on the same batches in the same order, so every value is the one
a full pass computes.

``rebuild(..., calls=...)`` records the top-level calls in graph order; ``cut`` makes the
segment models with public Keras APIs (a Functional model built between intermediate tensors).
It answers None where a cut cannot be made that way (a tensor made by an operation the walk
did not record, a group reaching back before its predecessor's cut, a graph Keras refuses to
split): the caller then runs whole passes, as before.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import keras

__all__ = ["Segment", "TopLevelCall", "cut", "keras_tensors"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TopLevelCall:
    """One call of the rebuilt model's own graph (a layer, a nested model or a raw operation)."""

    path: str
    inputs: tuple
    outputs: tuple


@dataclasses.dataclass(frozen=True)
class Segment:
    """``model`` maps the previous frontier (the model's inputs for the first segment) to the
    tensors this segment makes of its own frontier, its first outputs; the outputs after those
    are discarded (they make every call of the group run). ``frontier`` says where each tensor
    of its frontier comes from: ``("made", i)`` the model's output i, ``("carried", i)`` its
    input i, passed on unchanged (Keras builds no model whose output is one of its inputs)."""

    model: keras.Model
    frontier: tuple[tuple[str, int], ...]

    def frontier_of(self, inputs: list, outputs: list) -> list:
        """This segment's frontier, from what its model was given and gave back."""
        return [outputs[i] if kind == "made" else inputs[i] for kind, i in self.frontier]


def keras_tensors(structure: Any) -> tuple:
    """The Keras tensors in a nested structure of call arguments or results, in order."""
    return tuple(t for t in keras.tree.flatten(structure) if isinstance(t, keras.KerasTensor))


def _group_calls(calls: list[TopLevelCall], groups: list[set[str]]) -> list[list[int]] | None:
    """Indices of each group's top-level calls (a nested layer's: its model's); None when a
    group has a call at or before the previous group's last (a shared layer, or two groups
    inside one nested model)."""
    indices, previous = [], -1
    for group in groups:
        tops = {path.split("/")[0] for path in group}
        mine = [i for i, call in enumerate(calls) if call.path in tops]
        if not mine or min(mine) <= previous:
            return None
        previous = max(mine)
        indices.append(mine)
    return indices


def _frontier(calls: list[TopLevelCall], inputs: tuple, end: int) -> list | None:
    """Tensors made at or before ``end`` (or model inputs) that a later call consumes."""
    made = {id(t): -1 for t in inputs}
    for index, call in enumerate(calls):
        made.update((id(t), index) for t in call.outputs)
    frontier, seen = [], set()
    for call in calls[end + 1 :]:
        for tensor in call.inputs:
            if id(tensor) not in made:
                return None  # made by something the walk did not see
            if made[id(tensor)] <= end and id(tensor) not in seen:
                seen.add(id(tensor))
                frontier.append(tensor)
    return frontier


def _extra_outputs(calls: list[TopLevelCall], start: int, mine: list[int]) -> list:
    """The group's own call outputs and the segment's dead ends: every call of the group runs."""
    consumed = {id(t) for call in calls for t in call.inputs}
    dead = [t for call in calls[start : mine[-1] + 1] for t in call.outputs if id(t) not in consumed]
    return [t for i in mine for t in calls[i].outputs] + dead


def _unique(tensors: list) -> list:
    """First occurrences, by identity (a KerasTensor's ``==`` is symbolic)."""
    seen: set[int] = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]


def cut(copy: keras.Model, calls: list[TopLevelCall], groups: list[set[str]]) -> list[Segment] | None:
    """One segment per group of layer paths (in graph order), or None (see the module docstring)."""
    indices = _group_calls(calls, groups)
    if indices is None:
        return None
    segments, previous, start = [], list(copy.inputs), 0
    for number, mine in enumerate(indices):
        end = mine[-1]
        frontier = [] if number == len(indices) - 1 else _frontier(calls, tuple(copy.inputs), end)
        if frontier is None:
            return None
        given = {id(t): i for i, t in enumerate(previous)}
        made = [t for t in frontier if id(t) not in given]
        sources = iter(range(len(made)))
        where = tuple(
            ("carried", given[id(t)]) if id(t) in given else ("made", next(sources)) for t in frontier
        )
        outputs = _unique(made + [t for t in _extra_outputs(calls, start, mine) if id(t) not in given])
        try:
            model = keras.Model(previous, outputs)
        except ValueError as error:  # Keras cannot split this graph here
            logger.info("whole forward passes: the graph cannot be cut after call %d (%s)", end, error)
            return None
        segments.append(Segment(model, where))
        previous, start = frontier, end + 1
    return segments
