"""Functional graphs with raw operations on Keras tensors (``a + b``, ``keras.ops.relu``,
``keras.ops.concatenate``, slicing, ``keras.ops.mean``), a nested model holding some, and
models with two inputs: analyze -> materialize -> cost -> ``.keras`` round trip, profile,
search. Raw operations are ``keras.Operation``s, not layers: they have no weights."""

from __future__ import annotations

import sys

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from conftest import (
    FLOAT32_RTOL,
    assert_outputs_close,
    predict,
    randomize_weights,
    reconstructed_kernels,
    reference_model,
    set_canonical_kernel,
)
from lrf_optuna.files._models import load_model_file
from search_support import METRIC_FUNCTIONS, settings

L = keras.layers
SCORES = ("cka", "cosine", "nmse")
# Every raw operation of ``ops_model``, by type, in the outer graph and in the nested one.
OUTER_OPS = ["Relu", "Add", "Concatenate", "GetItem", "Mean"]
INNER_OPS = ["Relu", "Add"]


def ops_model() -> keras.Model:
    """Residual ``a + b``, ``keras.ops.relu``, ``concatenate``, slicing, ``mean``, and a nested
    Functional model whose residual branch is itself raw operations."""
    inner_in = keras.Input((8, 8, 6), name="inner_in")
    inner_out = keras.ops.relu(L.Conv2D(6, 3, padding="same", name="conv")(inner_in)) + inner_in
    inner = keras.Model(inner_in, inner_out, name="inner")
    inputs = keras.Input((8, 8, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", name="conv_a")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="conv_b")(keras.ops.relu(a))
    x = keras.ops.concatenate([a + b, inner(a)], axis=-1)
    x = L.Conv2D(8, 1, name="conv_c")(x[:, 1:-1, 1:-1, :10])
    x = keras.ops.mean(x, axis=(1, 2))
    return randomize_weights(keras.Model(inputs, L.Dense(4, name="fc")(x), name="ops_graph"), seed=3)


def two_input_model() -> keras.Model:
    """Two ``keras.Input``s, one conv per input, joined by a raw ``concatenate``."""
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((5,), name="extra")
    x = keras.ops.mean(L.Conv2D(6, 3, name="conv")(image), axis=(1, 2))
    y = keras.ops.concatenate([x, L.Dense(4, name="side")(extra)], axis=-1)
    return randomize_weights(keras.Model([image, extra], L.Dense(3, name="fc")(y), name="two_in"), seed=4)


def raw_ops(model: keras.Model) -> list[keras.Operation]:
    return [op for op in model.operations if not isinstance(op, L.Layer)]


def op_types(model: keras.Model) -> list[str]:
    return [type(op).__name__ for op in raw_ops(model)]


def images(samples: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, 8, 8, 3)).astype("float32")


def low_rank_plan() -> dict:
    return {
        "conv_a": ("tucker2", 2),
        "conv_b": ("cp", 3),
        "inner/conv": ("spatial_svd", 4),
        "conv_c": ("svd", 3),
        "fc": ("svd", 2),
    }


def full_rank_plan(model: keras.Model) -> dict:
    return {s.name: ("svd", s.max_rank) for s in lo.model.compressible_layers(model)}


def assert_round_trip(model: keras.Model, x, tmp_path) -> keras.Model:
    """Saved as ``.keras`` and reloaded, ``model`` gives exactly the same outputs."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(predict(reloaded, x), predict(model, x))
    return reloaded


# --------------------------------------------------------------------------- ops model


def test_analyze_sees_layers_through_operations():
    model = ops_model()
    assert op_types(model) == OUTER_OPS and op_types(model.get_layer("inner")) == INNER_OPS
    analysis = lo.analyze(model)
    assert list(analysis.specs) == ["conv_a", "conv_b", "inner/conv", "conv_c", "fc"]
    # conv_c reads the 6x6 slice of 10 channels; only layers carry cost
    assert analysis.specs["conv_c"].geometry.kernel_shape == (1, 1, 10, 8)
    assert analysis.specs["conv_c"].geometry.calls[0].in_positions == 36
    macs = 64 * 27 * 6 + 64 * 54 * 6 + 64 * 54 * 6 + 36 * 10 * 8 + 8 * 4
    assert analysis.cost == lo.core.Cost(model.count_params(), macs)


def test_copy_is_exact_and_operations_are_fresh():
    model = ops_model()
    x = images()
    copy = lo.materialize(model, {})
    np.testing.assert_array_equal(predict(copy, x), predict(model, x))
    assert op_types(copy) == OUTER_OPS and op_types(copy.get_layer("inner")) == INNER_OPS
    originals = {id(op) for op in raw_ops(model) + raw_ops(model.get_layer("inner"))}
    assert not originals & {id(op) for op in raw_ops(copy) + raw_ops(copy.get_layer("inner"))}
    assert copy.get_layer("inner") is not model.get_layer("inner")


def test_full_rank_is_exact_and_round_trips(tmp_path):
    model = ops_model()
    x = images()
    exact = lo.materialize(model, full_rank_plan(model))
    assert_outputs_close(predict(exact, x), predict(model, x), rtol=FLOAT32_RTOL)
    assert_round_trip(exact, x, tmp_path)


def test_low_rank_plan_matches_reference_cost_and_round_trip(tmp_path):
    model = ops_model()
    x = images()
    plan = low_rank_plan()
    compressed = lo.materialize(model, plan)
    # the original architecture with the reconstructed kernels computes the same function
    assert_outputs_close(predict(compressed, x), predict(reference_model(model, plan), x))
    assert lo.plan_cost(model, plan) == lo.model_cost(compressed)
    assert lo.plan_cost(model, plan).params == compressed.count_params()
    assert op_types(compressed) == OUTER_OPS
    reloaded = assert_round_trip(compressed, x, tmp_path)
    assert op_types(reloaded) == OUTER_OPS


def test_fine_tuning_the_compressed_model_leaves_the_original_alone():
    model = ops_model()
    before = [w.copy() for w in model.get_weights()]
    compressed = lo.materialize(model, low_rank_plan())
    compressed.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = images(8)
    compressed.train_on_batch(x, np.ones((8, 4), "float32"))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


class _Shift(keras.Operation):
    """A raw operation without a config (its argument is an array): it cannot be recreated."""

    def __init__(self, offset: np.ndarray):
        super().__init__()
        self.offset = offset

    def call(self, x):
        return x + self.offset

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def test_operation_without_config_is_carried_as_is():
    inputs = keras.Input((6,))
    shift = _Shift(np.arange(4, dtype="float32"))
    model = keras.Model(inputs, L.Dense(3, name="fc")(shift(L.Dense(4, name="d")(inputs))))
    randomize_weights(model, seed=2)
    with pytest.raises(NotImplementedError):
        shift.get_config()
    compressed = lo.materialize(model, {"d": ("svd", 4)})
    assert [op for op in compressed.operations if isinstance(op, _Shift)] == [shift]
    x = np.random.default_rng(0).standard_normal((5, 6)).astype("float32")
    assert_outputs_close(predict(compressed, x), predict(model, x))


OFFSET = 1.0


def _scaler(factor: float):
    def scale(t):  # a closure: its config cannot recreate it
        return t * factor

    return scale


def test_lambda_layers_are_reused_and_rebuild():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Lambda(lambda t: t * 2.0 + OFFSET, name="affine")(x)  # reads a global
    x = L.Lambda(_scaler(3.0), name="scale")(x)
    model = randomize_weights(keras.Model(inputs, L.Dense(2, name="fc")(L.Flatten()(x))), seed=6)
    compressed = lo.materialize(model, full_rank_plan(model))
    assert compressed.get_layer("affine") is model.get_layer("affine")
    x = images(4)
    assert_outputs_close(predict(compressed, x), predict(model, x))
    plan = {"conv": ("svd", 2), "fc": ("svd", 1)}
    reference = lo.materialize(model, {})  # clone_model's default copy refuses the lambdas
    for name, kernel in reconstructed_kernels(model, plan).items():
        set_canonical_kernel(reference.get_layer(name), kernel)
    assert_outputs_close(predict(lo.materialize(model, plan), x), predict(reference, x))


def test_factorized_graph_deeper_than_the_recursion_limit(tmp_path):
    """Keras maps graphs recursively: 120 Dense layers factorized are 240 deep, past a recursion
    limit set 150 frames above the test's own stack (as EfficientNetV2L with every layer factorized
    is past Python's default 1000). Checked: without ``recursion_headroom`` materialize fails here.
    (600 layers under the default limit checked the same at ~5x the CPU time.)"""
    inputs = keras.Input((4,))
    x = inputs
    for i in range(120):
        x = L.Dense(4, name=f"d{i}")(x)
    model = randomize_weights(keras.Model(inputs, x, name="deep"), seed=7)
    plan = {f"d{i}": ("svd", 4) for i in range(120)}
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    default, frame, depth = sys.getrecursionlimit(), sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    limit = depth + 150
    sys.setrecursionlimit(limit)
    try:
        compressed = lo.materialize(model, plan)
        assert sys.getrecursionlimit() == limit
        assert len(compressed.layers) == 1 + 2 * 120
        assert lo.plan_cost(model, plan) == lo.model_cost(compressed)
        assert_outputs_close(predict(compressed, x), predict(model, x), rtol=1e-4)
        path = tmp_path / "deep.keras"
        compressed.save(path)
        np.testing.assert_array_equal(predict(load_model_file(path), x), predict(compressed, x))
        assert sys.getrecursionlimit() == limit
    finally:
        sys.setrecursionlimit(default)


# --------------------------------------------------------------------------- profile and search


@pytest.fixture(scope="module")
def ops_profile():
    return lo.profile_model(ops_model(), images(), settings=settings(output_samples=256), show_progress=False)


def _row(profile, layer: str, method: str) -> tuple[int, dict]:
    rows = profile[(profile.layer == layer) & (profile.method == method)].sort_values("rank")
    picked = rows.iloc[len(rows) // 2]
    return int(picked["rank"]), picked


def _scores(reference: keras.Model, candidate: keras.Model, x: np.ndarray) -> dict[str, float]:
    a = predict(reference, x).reshape(len(x), -1)
    b = predict(candidate, x).reshape(len(x), -1)
    return {name: METRIC_FUNCTIONS[name](a, b) for name in SCORES}


@pytest.mark.parametrize(("layer", "method"), [("conv_b", "tucker2"), ("conv_c", "svd"), ("fc", "svd")])
def test_profile_equals_direct_computation(ops_profile, layer, method):
    model, x = ops_model(), images()
    assert set(ops_profile.layer) == set(lo.analyze(model).specs)
    rank, row = _row(ops_profile, layer, method)
    plan = {layer: (method, rank)}
    upto = keras.Model(model.input, model.get_layer(layer).output)  # the layer is the output
    for name, value in _scores(upto, lo.materialize(upto, plan), x).items():
        assert row[name] == pytest.approx(value, rel=2e-5, abs=1e-6), name
    for name, value in _scores(model, lo.materialize(model, plan), x).items():
        assert row[f"output_{name}"] == pytest.approx(value, rel=2e-5, abs=1e-6), name
    assert row.cka < 0.9999


def test_run_study_and_model_proxy(ops_profile):
    model, x = ops_model(), images()
    study = lo.run_study(
        model, x, storage=optuna.storages.InMemoryStorage(), n_trials=6, population_size=4,
        profile=ops_profile, show_progress=False,
    )  # fmt: skip
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6
    trial = max(complete, key=lambda t: t.values[0] if t.values[0] < lo.model_cost(model).params else -1)
    plan = lo.plan_from_trial(model, trial)
    compressed = lo.materialize(model, plan)
    # default objectives: params, FLOPs (2 x MACs), similarity
    assert (compressed.count_params(), 2 * lo.model_cost(compressed).macs) == tuple(trial.values[:2])
    # the model proxy swaps kernels into a copy of the graph: operations run too
    objective = lo.search.make_objective(
        model, x, proxy="model", metric="cosine", show_progress=False,
        profile_settings=settings(factorization="weights"),  # as materialize without calibration
    )  # fmt: skip
    expected = METRIC_FUNCTIONS["cosine"](
        predict(model, x).astype(np.float64), predict(compressed, x).astype(np.float64)
    )
    assert objective.evaluate(plan)[2] == pytest.approx(expected, rel=1e-5)
    # data-aware factors: statistics and refit passes run through the operations too
    aware = lo.materialize(model, plan, calibration=x)
    assert lo.model_cost(aware) == lo.plan_cost(model, plan)
    assert np.isfinite(predict(aware, x)).all()


# --------------------------------------------------------------------------- two inputs


def two_inputs(samples: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.standard_normal((samples, 8, 8, 3)).astype("float32"), rng.standard_normal((samples, 5))]


def test_two_input_model_analyzes_and_materializes(tmp_path):
    model = two_input_model()
    analysis = lo.analyze(model)
    assert list(analysis.specs) == ["conv", "side", "fc"]
    x = two_inputs()
    exact = lo.materialize(model, full_rank_plan(model))
    assert_outputs_close(predict(exact, x), predict(model, x))
    plan = {"conv": ("tucker2", 2), "side": ("svd", 2), "fc": ("svd", 1)}
    compressed = lo.materialize(model, plan)
    assert_outputs_close(predict(compressed, x), predict(reference_model(model, plan), x))
    assert lo.plan_cost(model, plan) == lo.model_cost(compressed)
    assert [t.name for t in compressed.inputs] == ["image", "extra"]
    assert_round_trip(compressed, x, tmp_path)


def test_two_input_model_fine_tunes_with_distillation():
    model = two_input_model()
    compressed = lo.materialize(model, {"conv": ("svd", 2)})
    before = [w.copy() for w in compressed.get_weights()]
    x, y = two_inputs(32), np.random.default_rng(0).integers(0, 3, 32)
    result = lo.finetune(compressed, (x, y), validation_data=(x, y), original=model, batch_size=8)
    assert any(not np.array_equal(a, b) for a, b in zip(before, compressed.get_weights()))
    accuracy = float(np.mean(np.argmax(predict(compressed, x), axis=-1) == y))
    assert result.accuracy_finetuned == pytest.approx(accuracy, abs=1e-9)


REFUSED = r"model 'two_in' has 2 inputs \('image', 'extra'\).*lo\.materialize"


def test_two_input_model_is_refused_by_profile_and_search(tmp_path):
    model, x = two_input_model(), two_inputs()
    with pytest.raises(ValueError, match=REFUSED):
        lo.profile_model(model, x, show_progress=False, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=REFUSED):
        lo.search.make_objective(model, x, proxy="model", show_progress=False)
    with pytest.raises(ValueError, match=REFUSED):
        lo.similarity.ModelProxy(model, lo.analyze(model), x, metric="cosine")
    db = tmp_path / "two.db"
    with pytest.raises(ValueError, match=REFUSED):
        lo.run_study(model, x, storage=f"sqlite:///{db}", n_trials=2, cache_dir=tmp_path / "cache")
    assert not db.exists() and not (tmp_path / "cache").exists()  # nothing written
