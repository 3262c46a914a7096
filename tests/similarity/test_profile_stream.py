"""The streamed capture (issue 21): the same profile as the capture that held full maps, on
every path it keeps inputs by, and a memory budget checked up front."""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import tracemalloc

import keras
import numpy as np
import pandas as pd
import pytest

import lrf_optuna as lo
from lrf_optuna.model._statistics import ledoit_wolf
from lrf_optuna.similarity import _capture as capture
from lrf_optuna.similarity import _capture_plan as capture_plan
from lrf_optuna.similarity import _metrics as metrics
from lrf_optuna.similarity._capture_plan import kept_inputs
from stream_support import GOLDEN, stream_cnn, stream_data, stream_profile

SCORES = ["cka", "cosine", "nmse"]


@pytest.fixture(scope="module")
def golden():
    return pd.read_csv(GOLDEN)


def test_every_input_mode_is_taken():
    model = stream_cnn()
    analysis = lo.analyze(model)
    modes = {}
    for name, spec in analysis.specs.items():
        call = spec.geometry.calls[0]
        kept = None if call.out_positions <= 8 else 8
        modes[name] = kept_inputs(analysis.layers[name], spec, call.in_spatial, kept)[0]
    assert modes == {
        "same": "windows", "strided": "windows", "dilated": "windows", "separable": "full",
        "pointwise": "windows", "shared": "windows", "transposed": "full", "dense_map": "rows", "head": "full",
    }  # fmt: skip


@pytest.mark.parametrize("factorization", ["weights", "data_aware"])
def test_streamed_profile_equals_the_full_map_profile(golden, factorization):
    expected = golden[golden.factorization == factorization].reset_index(drop=True)
    actual = stream_profile(factorization).reset_index(drop=True)
    exact = ["layer", "method", "rank", "params", "macs"]
    pd.testing.assert_frame_equal(actual[exact], expected[exact], check_dtype=False)
    # bit-identical here (measured); float32 rounding allowed: a "valid" conv on windows may sum in
    # another order than the conv on the full map
    np.testing.assert_allclose(actual[SCORES], expected[SCORES], rtol=1e-6, atol=0)
    np.testing.assert_allclose(actual["weight_error"], expected["weight_error"], rtol=1e-6, atol=1e-9)
    assert actual[["output_cka", "output_cosine", "output_nmse"]].isna().all().all()


def test_passes_from_the_frontier_equal_whole_passes_bit_for_bit(monkeypatch, tmp_path, caplog):
    # 4 MB: five groups (measured with plan_capture), so four frontiers written and read back
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="lrf_optuna.similarity._capture"):
        cut_profile = stream_profile("data_aware", memory_budget_mb=4)
    assert "5 forward pass(es), each from the previous one's frontier" in caplog.text
    assert caplog.text.count("frontier after pass") == 4
    assert list(tmp_path.iterdir()) == []  # the frontier files are gone
    monkeypatch.setattr(capture, "cut", lambda *args: None)  # the whole passes of before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lrf_optuna.similarity._capture"):
        whole_profile = stream_profile("data_aware", memory_budget_mb=4)
    assert "frontier" not in caplog.text
    pd.testing.assert_frame_equal(cut_profile, whole_profile)


def test_an_interrupted_capture_leaves_no_frontier_file(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []

    def failing_second_pass(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args)

    original = capture._segment_pass
    monkeypatch.setattr(capture, "_segment_pass", failing_second_pass)
    with pytest.raises(KeyboardInterrupt):
        stream_profile("weights", memory_budget_mb=4)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_frontier_directory_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def full_disk(path, mode="r", *args, **kwargs):
        if "a" in mode:
            raise OSError(28, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(capture, "open", full_disk, raising=False)
    with pytest.raises(
        OSError, match=r"Cannot write the profile's frontier to .*lrf_optuna_frontier_.*TMPDIR"
    ):
        stream_profile("weights", memory_budget_mb=4)
    assert list(tmp_path.iterdir()) == []


def test_budget_too_small_for_one_layer_is_refused_with_the_minimum():
    model, data = stream_cnn(), stream_data()
    # One rank of one method: the budget is set by the captured inputs, not by the candidates
    # (the full set of methods and ranks made this test take ~50 s of CPU for the same check).
    settings = lo.ProfileSettings(
        max_positions=8, batch_size=16, factorization="weights", memory_budget_mb=1,
        ranks_per_method=1, methods=("svd",),
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"Invalid `memory_budget_mb`: expected at least (\d+) \(MB\)"
    ) as error:
        lo.profile_model(model, data, settings=settings, show_progress=False)
    needed = int(re.search(r"at least (\d+)", str(error.value)).group(1))
    assert needed > 1
    enough = lo.profile_model(
        model, data, settings=dataclasses.replace(settings, memory_budget_mb=needed), show_progress=False
    )
    assert set(enough.layer) == set(lo.analyze(model).specs)
    with pytest.raises(ValueError, match=f"at least {needed} "):
        lo.profile_model(
            model,
            data,
            settings=dataclasses.replace(settings, memory_budget_mb=needed - 1),
            show_progress=False,
        )


def test_metrics_in_column_blocks_equal_whole_maps(monkeypatch):
    """The metrics read float32 maps in float64 column blocks (no float64 copy of whole maps):
    the same scores as NumPy on the whole float64 maps."""
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((6, 50)).astype("float32")
    candidate = (reference + 0.3 * rng.standard_normal((6, 50))).astype("float32")
    monkeypatch.setattr(metrics, "BLOCK", 12)  # 2 columns per block: 25 blocks
    assert len(metrics._blocks(reference)) == 25
    scores = metrics.ReferenceMaps(reference).scores(candidate)
    x, y = reference.astype(np.float64), candidate.astype(np.float64)
    center = np.eye(6) - 1 / 6
    gx, gy = center @ x @ x.T @ center, center @ y @ y.T @ center
    expected = {
        "cka": np.sum(gx * gy) / np.linalg.norm(gx) / np.linalg.norm(gy),
        "cosine": np.mean(np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)),
        "nmse": 1 / (1 + np.sum((x - y) ** 2) / np.sum(x**2)),
    }
    assert scores == pytest.approx(expected, rel=1e-12)


def test_profile_numpy_memory_stays_within_the_budget(monkeypatch):
    """What the profile holds in NumPy (traced by tracemalloc; TensorFlow's activations are not)
    stays within ``memory_budget_mb`` when one layer's capture fills most of it. Before the fix
    it peaked at 29.8 MB for a 20 MB budget: per-batch pieces concatenated at the end of a pass
    (twice a call's capture), the previous layer's capture held through the next pass (tqdm's
    frame, the loop variable), a float32 copy of the calibration array."""
    monkeypatch.setattr(metrics, "BLOCK", 1 << 12)  # the metrics' float64 blocks out of the way
    monkeypatch.setattr(capture_plan, "BLOCK", 1 << 12)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 8))
    hidden = keras.layers.Conv2D(16, 3, padding="same", name="a")(inputs)
    hidden = keras.layers.Conv2D(16, 3, padding="same", name="b")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(pooled))
    data = np.random.default_rng(0).standard_normal((128, 24, 24, 8)).astype("float32")
    # every position kept: 2.25 MB of inputs and 4.5 MB of outputs per layer for 128 samples
    settings = lo.ProfileSettings(
        max_samples=128, max_positions=1024, memory_budget_mb=20, batch_size=32, ranks_per_method=1,
        methods=("svd",), factorization="weights",
    )  # fmt: skip
    lo.profile_model(model, data[:8], settings=settings, show_progress=False)  # lazy imports first
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        profile = lo.profile_model(model, data, settings=settings, show_progress=False)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert len(profile) == 3
    assert peak <= settings.memory_budget_mb * 2**20, f"{peak / 2**20:.1f} MB"


def test_ledoit_wolf_needs_one_buffer_and_gives_the_textbook_values():
    """The shrinkage of a D x D moment holds one more D x D buffer (conv5 of ResNet50: 4608 x 4608,
    170 MB each); before the fix it peaked at 4 (an identity, the centred moment, its square)."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 400)) * rng.uniform(0.1, 3.0, 400)
    moment = vectors.T @ vectors / 300
    fourth = float(np.sum(np.sum(vectors**2, axis=1) ** 2))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        shrunk, weight = ledoit_wolf(moment, fourth, 300)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * moment.nbytes, peak / moment.nbytes
    mean = np.trace(moment) / 400
    spread = np.sum((moment - mean * np.eye(400)) ** 2) / 400
    noise = (fourth / 300 - np.sum(moment**2)) / (300 * 400)
    assert 0 < weight < 1 and weight == min(max(noise, 0.0), spread) / spread
    np.testing.assert_array_equal(shrunk, (1 - weight) * moment + weight * mean * np.eye(400))


def test_the_plan_fills_only_its_share_of_the_budget():
    """The forward batch, the model's copy and every group's bytes (``estimate``) stay within
    ``PLANNED_PERCENT`` of the budget, the rest being the allocators' reserve; the smallest
    budget the refusal names plans exactly what the largest layer needs."""
    model = stream_cnn()
    analysis = lo.analyze(model)
    specs, layers = list(analysis.specs.values()), analysis.layers
    options = dict(batch_size=16, limit=8, statistics=True)
    per_sample = capture_plan.forward_bytes(model)
    copy = 4 * sum(int(np.prod(w.shape)) for w in model.weights)
    budget = 3 * 2**20
    batch, probe, groups = capture_plan.plan_capture(model, specs, layers, 64, budget=budget, **options)
    planned = budget * capture_plan.PLANNED_PERCENT // 100
    assert len(groups) >= 2  # the share, not the whole budget, decides the groups
    for group in groups:
        sizes = [
            capture_plan.estimate(layers[s.name], s, 64, batch_size=probe, limit=8, statistics=True)
            for s in group
        ]
        held = sum(kept for kept, _ in sizes) + max(transient for _, transient in sizes)
        assert copy + batch * per_sample + held <= planned
    with pytest.raises(ValueError, match=r"expected at least (\d+) \(MB\)") as error:
        capture_plan.plan_capture(model, specs, layers, 4096, budget=budget, **options)
    minimum = int(re.search(r"at least (\d+)", str(error.value)).group(1)) * 2**20
    capture_plan.plan_capture(model, specs, layers, 4096, budget=minimum, **options)  # fits


def test_the_largest_forward_batch_beside_the_largest_layer_keeps_full_probes(monkeypatch):
    """When one layer's kept maps dominate (ResNet50 at 224x224 with 256 images), shrinking the
    probe batch frees little: the plan keeps the largest forward batch that fits beside that
    layer, then the largest probe batch that keeps it (halving both used to leave batches of 2
    where 4 and 32 fit)."""
    model = stream_cnn()
    analysis = lo.analyze(model)
    specs, layers = list(analysis.specs.values()), analysis.layers
    copy = 4 * sum(int(np.prod(w.shape)) for w in model.weights)
    kb = 2**10
    monkeypatch.setattr(capture_plan, "forward_bytes", lambda _: 10 * kb)
    largest = specs[0].name

    def estimate(layer, spec, samples, *, batch_size, limit, statistics):
        # the largest layer: 50 kB kept and 0.25 kB of probe maps per sample; the others small
        return (50 * kb, batch_size * kb // 4) if spec.name == largest else (kb, kb)

    monkeypatch.setattr(capture_plan, "estimate", estimate)

    def plan(room: int) -> tuple[int, int]:
        budget = -(-(copy + room) * 100 // capture_plan.PLANNED_PERCENT)  # planned = copy + room
        batch, probe, _ = capture_plan.plan_capture(
            model, specs, layers, 256, budget=budget, batch_size=32, limit=8, statistics=False
        )
        return batch, probe

    # 100 kB: half of it would hold 5 samples, but 4 (40 kB) fit beside 50 + 8 kB: probes of 32
    assert plan(100 * kb) == (4, 32)
    # 97.5 kB: probes of 32 leave room for 3 samples, of 16 for 4: the larger forward batch wins
    assert plan(97 * kb + kb // 2) == (4, 16)
