"""Cutting a rebuilt model into segments that run from each other's frontier (issue 21)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lrf_optuna.model._graph import CopyVisitor, rebuild
from lrf_optuna.model._segments import cut

L = keras.layers


def residual_model() -> keras.Model:
    """A skip from the input, a residual add, a raw operation and a nested model."""
    keras.utils.set_random_seed(1)
    inner_in = keras.Input((8, 8, 6))
    inner = keras.Model(inner_in, L.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in), name="block")
    inputs = keras.Input((8, 8, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="a")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="b")(a)
    c = L.Add(name="add")([a, b])
    d = inner(keras.ops.relu(c))
    e = L.Concatenate(name="concat")([d, L.Conv2D(2, 1, name="skip")(inputs)])
    f = L.Conv2D(4, 1, name="f")(e)
    return keras.Model(inputs, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(f)), name="residual")


def copy_with_calls(model):
    visitor, calls = CopyVisitor(), []
    copy = rebuild(model, visitor, calls=calls)
    visitor.copy_weights()
    return copy, calls


def chained(segments, x):
    """Each segment's outputs, run from the previous segment's frontier."""
    results, inputs = [], [x]
    for segment in segments:
        outputs = [np.asarray(t) for t in keras.tree.flatten(segment.model(inputs, training=False))]
        results.append(outputs)
        inputs = segment.frontier_of(inputs, outputs)
    return results


def test_segments_chained_compute_what_the_whole_model_computes():
    model = residual_model()
    copy, calls = copy_with_calls(model)
    paths = [c.path for c in calls]
    # raw operations too (Keras numbers their names process-wide: relu, relu_20, ...)
    assert paths[:3] == ["a", "b", "add"] and paths[3].startswith("relu") and paths[4] == "block"
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 3)).astype("float32")
    made = {call.path: call.outputs[0] for call in calls}
    # built before the cut: Keras rewires the history of the tensors a segment starts from
    expected = keras.Model(copy.inputs, [made[n] for n in ("b", "block", "f", "head")])([x])
    segments = cut(copy, calls, [{"a", "b"}, {"block/inner_conv"}, {"skip", "f"}, {"head"}])
    assert len(segments) == 4
    # a and b (for the add) and the image (for skip); then the image, carried on, and the block
    assert [s.frontier for s in segments] == [
        (("made", 0), ("made", 1), ("carried", 0)),
        (("carried", 2), ("made", 0)),
        (("made", 0),),
        (),
    ]
    results = chained(segments, x)
    for outputs, want in zip(results, expected):  # each group's own calls' outputs are among them
        assert any(o.shape == np.shape(want) and np.array_equal(o, np.asarray(want)) for o in outputs)
    np.testing.assert_array_equal(results[3][0], np.asarray(model(x)))  # bit for bit
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(model(x)))  # the copy still runs


def test_groups_that_reach_back_cannot_be_cut():
    copy, calls = copy_with_calls(residual_model())
    assert cut(copy, calls, [{"f"}, {"a"}]) is None  # out of graph order
    assert cut(copy, calls, [{"a", "head"}, {"f"}]) is None  # f runs inside the first group's span


def test_two_groups_inside_one_nested_model_cannot_be_cut():
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((4,))
    h = L.Dense(4, name="d1")(inner_in)
    inner = keras.Model(inner_in, L.Dense(4, name="d2")(h), name="inner")
    inputs = keras.Input((4,))
    copy, calls = copy_with_calls(keras.Model(inputs, L.Dense(2, name="out")(inner(inputs))))
    assert cut(copy, calls, [{"inner/d1"}, {"inner/d2"}]) is None
    # the whole nested model in one group: two segments, the second from the nested model's output
    whole = cut(copy, calls, [{"inner/d1", "inner/d2"}, {"out"}])
    assert [s.frontier for s in whole] == [(("made", 0),), ()]


@pytest.mark.parametrize("shared_split", [False, True])
def test_a_shared_layer_is_cut_only_when_its_calls_share_a_group(shared_split):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    shared = L.Dense(4, name="shared")
    h = L.Dense(4, name="mid")(shared(inputs))
    copy, calls = copy_with_calls(keras.Model(inputs, L.Dense(2, name="out")(shared(h))))
    groups = [{"shared"}, {"mid"}, {"out"}] if shared_split else [{"shared", "mid"}, {"out"}]
    assert (cut(copy, calls, groups) is None) == shared_split
