"""The calibration profile: its grid of ranks, its costs, and its similarities checked
against a direct computation through ``lo.materialize``."""

from __future__ import annotations

import logging
import re

import keras
import numpy as np
import pandas as pd
import pytest

import lrf_optuna as lo
from lrf_optuna.similarity._profile import PROFILE_COLUMNS, rank_grid
from search_support import LAYERS, METRIC_FUNCTIONS, calibration, nested_cnn, predict, settings, tiny_cnn

SCORES = ["cka", "cosine", "nmse"]
OUTPUT_SCORES = ["output_cka", "output_cosine", "output_nmse"]
COLUMNS = ["layer", "method", "rank", "params", "macs", *SCORES, *OUTPUT_SCORES, "weight_error", "seconds"]


@pytest.fixture(scope="module")
def linear_model():
    return tiny_cnn(activation=None)


@pytest.fixture(scope="module")
def linear_profile(linear_model, data):
    return lo.profile_model(linear_model, data, settings=settings(ranks_per_method=8), show_progress=False)


@pytest.fixture(scope="module")
def aware_profile(model, data):
    return lo.profile_model(model, data, settings=settings(factorization="data_aware"), show_progress=False)


def row(profile: pd.DataFrame, layer: str, method: str, rank: int) -> pd.Series:
    rows = profile[(profile.layer == layer) & (profile.method == method) & (profile["rank"] == rank)]
    assert len(rows) == 1
    return rows.iloc[0]


def middle_rank(profile: pd.DataFrame, layer: str, method: str) -> int:
    ranks = sorted(profile[(profile.layer == layer) & (profile.method == method)]["rank"])
    return int(ranks[len(ranks) // 2])


def direct_scores(model: keras.Model, plan: dict, x: np.ndarray) -> dict[str, float]:
    """Metrics between ``model`` and ``materialize(model, plan)`` outputs on ``x``."""
    reference = predict(model, x)
    candidate = predict(lo.materialize(model, plan), x)
    return {name: METRIC_FUNCTIONS[name](reference, candidate) for name in SCORES}


def truncated(model: keras.Model, layer: str) -> keras.Model:
    """The model up to (and including) ``layer``: it becomes the last layer."""
    return keras.Model(model.input, model.get_layer(layer).output)


# --------------------------------------------------------------------------- structure


def test_columns(profile):
    assert list(profile.columns) == COLUMNS == PROFILE_COLUMNS
    assert set(profile.layer) == set(LAYERS)
    assert profile[[*SCORES, *OUTPUT_SCORES, "weight_error", "seconds"]].notna().all().all()
    assert (profile["seconds"] >= 0).all()
    assert profile["rank"].dtype.kind == "i" and profile["params"].dtype.kind == "i"


def test_every_layer_and_useful_method_is_profiled(model, profile):
    analysis = lo.analyze(model)
    assert set(profile.layer) == set(analysis.specs) == {"c1", "c2", "d1", "d2"}
    for name, spec in analysis.specs.items():
        useful = {m for m, r in spec.useful_ranks.items() if r > 0}
        assert set(profile[profile.layer == name].method) == useful


def test_ranks_within_useful_range(model, profile):
    analysis = lo.analyze(model)
    per_method = settings().ranks_per_method
    for (layer, method), rows in profile.groupby(["layer", "method"]):
        ranks = rows["rank"].tolist()
        useful = analysis.specs[layer].useful_ranks[method]
        assert ranks == sorted(set(ranks)), (layer, method)
        assert min(ranks) >= 1 and max(ranks) <= useful, (layer, method, ranks, useful)
        assert len(ranks) <= per_method
        assert ranks[0] == 1 and ranks[-1] == useful  # both ends of the useful range
        assert len(ranks) == min(per_method, useful)


@pytest.mark.parametrize(("useful", "count"), [(1, 8), (5, 8), (8, 8), (9, 8), (60, 4), (2048, 16), (7, 1)])
def test_rank_grid(useful, count):
    grid = rank_grid(useful, count)
    assert grid == sorted(set(grid))
    assert grid[0] == 1 and len(grid) == min(useful, count)
    assert grid[-1] == (useful if count > 1 else 1)


def test_costs_equal_factorizer_costs(model, profile):
    analysis = lo.analyze(model)
    for record in profile.itertuples():
        geom = analysis.specs[record.layer].geometry
        cost = lo.factorizers.get_factorizer(geom.kind, record.method).cost(geom, record.rank)
        assert (record.params, record.macs) == (cost.params, cost.macs)
        # useful ranks only: strictly cheaper than the layer in params and MACs
        assert cost.strictly_below(analysis.specs[record.layer].cost)


def test_ranks_per_method_and_methods_settings(model, data):
    profile = lo.profile_model(
        model, data, settings=settings(ranks_per_method=2, methods=("svd",)), show_progress=False
    )
    assert set(profile.method) == {"svd"}
    assert profile.groupby("layer").size().max() == 2


# --------------------------------------------------------------------------- values


def test_scores_are_similarities(profile):
    for name in SCORES + OUTPUT_SCORES:
        assert (profile[name] <= 1.0 + 1e-9).all()
    assert (profile["cka"] >= 0).all() and (profile["nmse"] > 0).all()
    assert (profile["output_cka"] >= 0).all() and (profile["output_nmse"] > 0).all()
    assert ((profile["weight_error"] >= 0) & (profile["weight_error"] <= 1.0 + 1e-9)).all()


def test_svd_error_is_monotone_in_rank(linear_profile):
    # A truncated SVD removes orthogonal components: the output error of a linear
    # layer can only shrink as the rank grows.
    for layer, rows in linear_profile[linear_profile.method == "svd"].groupby("layer"):
        rows = rows.sort_values("rank")
        assert len(rows) >= 2
        assert np.all(np.diff(rows["nmse"]) >= -1e-9), layer
        assert np.all(np.diff(rows["weight_error"]) <= 1e-9), layer
        assert rows["nmse"].iloc[-1] > rows["nmse"].iloc[0]


def test_near_full_rank_approaches_one(linear_model, linear_profile):
    # d1 is 1152 x 64 and useful up to rank 60: nearly the whole kernel is kept.
    useful = lo.analyze(linear_model).specs["d1"].useful_ranks["svd"]
    top = row(linear_profile, "d1", "svd", useful)
    assert useful >= 56
    assert top.cka > 0.99 and top.cosine > 0.97 and top.nmse > 0.95
    assert top.cka > row(linear_profile, "d1", "svd", 1).cka + 0.3


def test_exactly_low_rank_kernel_scores_one(data):
    model = tiny_cnn(seed=3)
    layer = model.get_layer("d1")
    rng = np.random.default_rng(0)
    low_rank = rng.standard_normal((1152, 3)) @ rng.standard_normal((3, 64)) / 30.0
    layer.kernel.assign(low_rank.astype("float32"))
    profile = lo.profile_model(
        model, data, settings=settings(ranks_per_method=6, output_samples=256), show_progress=False
    )
    rows = profile[(profile.layer == "d1") & (profile.method == "svd")]
    exact, truncated_rows = rows[rows["rank"] >= 3], rows[rows["rank"] < 3]
    assert len(exact) >= 4 and len(truncated_rows) >= 1
    for name in SCORES + OUTPUT_SCORES:
        np.testing.assert_allclose(exact[name], 1.0, atol=1e-6)
        assert (truncated_rows[name] < 0.999).all()
    np.testing.assert_allclose(exact["weight_error"], 0.0, atol=1e-5)


SINGLE_LAYER_CASES = [
    ("c2", "svd"),
    ("c2", "tucker2"),
    ("c2", "cp"),
    ("c2", "spatial_svd"),
    ("c1", "tucker2"),
    ("d1", "svd"),
    ("d2", "svd"),
    ("d1", "tt"),
    ("d1", "tucker"),
]


@pytest.mark.parametrize(("layer", "method"), SINGLE_LAYER_CASES)
def test_similarity_equals_direct_computation(model, data, profile, layer, method):
    """Profile row == metrics(model-up-to-layer, its materialized version) on the same data."""
    rank = middle_rank(profile, layer, method)
    expected = direct_scores(truncated(model, layer), {layer: (method, rank)}, data)
    actual = row(profile, layer, method, rank)
    for name in SCORES:
        assert actual[name] == pytest.approx(expected[name], rel=2e-5, abs=1e-6), name
    assert actual.cka < 0.9999  # a real approximation, not the identity


@pytest.mark.parametrize(("layer", "method"), SINGLE_LAYER_CASES)
def test_output_similarity_equals_direct_computation(model, data, profile, layer, method):
    """Output columns == metrics(whole model, its materialized version with this layer only)."""
    rank = middle_rank(profile, layer, method)
    expected = direct_scores(model, {layer: (method, rank)}, data)
    actual = row(profile, layer, method, rank)
    for name in SCORES:
        assert actual[f"output_{name}"] == pytest.approx(expected[name], rel=2e-5, abs=1e-6), name
    assert actual.output_cka < 0.9999


@pytest.mark.parametrize(("layer", "method"), SINGLE_LAYER_CASES)
def test_data_aware_profile_scores_the_data_aware_factors(model, data, aware_profile, layer, method):
    """factorization="data_aware": rows == metrics of ``materialize(calibration=data,
    refit=False)`` (same statistics: same samples, positions and seed), and every rank
    scores at least as well on the layer's outputs as the weight-only factors (NMSE)."""
    aware = aware_profile
    rank = middle_rank(aware, layer, method)
    compressed = lo.materialize(
        truncated(model, layer), {layer: (method, rank)}, calibration=data, refit=False, max_positions=256
    )
    reference = predict(truncated(model, layer), data)
    actual = row(aware, layer, method, rank)
    for name in SCORES:
        expected = METRIC_FUNCTIONS[name](reference, predict(compressed, data))
        assert actual[name] == pytest.approx(expected, rel=2e-5, abs=1e-6), name


def test_data_aware_profile_is_better_on_the_calibration_outputs(aware_profile, profile):
    aware = aware_profile.drop(columns=OUTPUT_SCORES)
    merged = aware.merge(profile, on=["layer", "method", "rank"], suffixes=("_aware", "_weights"))
    assert len(merged) == len(profile) == len(aware)
    # svd: the closed-form optimum of the pre-activation error (ReLU after it): never
    # noticeably worse, even on c1 whose inputs are isotropic noise (both factors agree)
    linear = merged[merged.method == "svd"]
    assert (linear.nmse_aware >= linear.nmse_weights - 1e-3).all()
    assert (merged.nmse_aware > merged.nmse_weights + 1e-3).mean() > 0.5


def test_output_samples_uses_the_first_samples(model, data):
    profile = lo.profile_model(model, data, settings=settings(output_samples=8), show_progress=False)
    rank = middle_rank(profile, "c2", "tucker2")
    expected = direct_scores(model, {"c2": ("tucker2", rank)}, data[:8])
    actual = row(profile, "c2", "tucker2", rank)
    for name in SCORES:
        assert actual[f"output_{name}"] == pytest.approx(expected[name], rel=2e-5, abs=1e-6), name


def test_output_samples_zero_skips_the_network_columns(model, data, profile):
    skipped = lo.profile_model(model, data, settings=settings(output_samples=0), show_progress=False)
    assert skipped[OUTPUT_SCORES].isna().all().all()
    columns = [*SCORES, "weight_error"]
    pd.testing.assert_frame_equal(skipped[columns], profile[columns], rtol=1e-12, atol=0)
    analysis = lo.analyze(model)
    with pytest.raises(ValueError, match=r"Invalid `metric` 'output_cosine'.*`output_samples` 0 or None"):
        lo.similarity.LayerwiseProxy(skipped, analysis, metric="output_cosine", aggregator="mean")
    assert lo.similarity.LayerwiseProxy(skipped, analysis, metric="cosine", aggregator="mean")({}) == 1.0


def test_output_samples_default_follows_the_searched_metric(model, data, profile):
    default = lo.ProfileSettings(max_samples=100)
    assert default.output_samples is None
    assert default.for_metric("output_cka").output_samples == 100
    assert default.for_metric("cosine").output_samples == 0
    assert lo.ProfileSettings(output_samples=8).for_metric("cosine").output_samples == 8
    assert default.for_metric(None).output_samples == 0
    # a search on an output metric profiles the network outputs, a default search does not
    plan = {"c2": ("tucker2", middle_rank(profile, "c2", "tucker2"))}
    expected = row(profile, "c2", "tucker2", plan["c2"][1]).output_cosine
    searched = lo.search.make_objective(model, data, metric="output_cosine", aggregator="product",
                                 profile_settings=settings(), show_progress=False)  # fmt: skip
    assert searched.evaluate(plan)[2] == pytest.approx(expected, rel=1e-12)
    plain = lo.profile_model(model, data, settings=settings(), show_progress=False)
    assert plain[OUTPUT_SCORES].isna().all().all()


def test_weight_error_equals_relative_kernel_error(model, profile):
    analysis = lo.analyze(model)
    geom = analysis.specs["c2"].geometry
    factorizer = lo.factorizers.get_factorizer("conv", "svd")
    kernel = keras.ops.convert_to_numpy(model.get_layer("c2").kernel)
    for rank in profile[(profile.layer == "c2") & (profile.method == "svd")]["rank"]:
        approx = factorizer.reconstruct(
            factorizer.decompose(kernel, geom, int(rank), seed=0), geom, int(rank)
        )
        expected = np.linalg.norm(approx - kernel) / np.linalg.norm(kernel)
        assert row(profile, "c2", "svd", rank).weight_error == pytest.approx(expected, rel=1e-5)


def test_nested_model_layer(data):
    model = nested_cnn()
    profile = lo.profile_model(model, data, settings=settings(output_samples=256), show_progress=False)
    assert set(profile.layer) == {"stem", "inner/conv"}
    for method in ("svd", "tucker2", "cp", "spatial_svd"):
        rank = middle_rank(profile, "inner/conv", method)
        expected = direct_scores(model, {"inner/conv": (method, rank)}, data)
        actual = row(profile, "inner/conv", method, rank)
        for name in SCORES:
            assert actual[name] == pytest.approx(expected[name], rel=2e-5, abs=1e-6), (method, name)
            # the nested layer's output is the model's output: both columns agree
            assert actual[f"output_{name}"] == pytest.approx(expected[name], rel=2e-5, abs=1e-6)


def test_tiny_memory_budget_captures_in_several_passes(model, caplog):
    data = calibration(64, seed=5)
    reference = lo.profile_model(model, data, settings=settings(), show_progress=False)
    with caplog.at_level(logging.INFO, logger="lrf_optuna.similarity._capture"):
        # 11 MB (80 % planned: 8.8 MB): the largest layer (c1, ~8.1 MB with the metrics' float64
        # copies) alone, then the rest
        small = lo.profile_model(model, data, settings=settings(memory_budget_mb=11), show_progress=False)
    passes = [int(m) for m in re.findall(r"in (\d+) forward pass", caplog.text)]
    assert passes and passes[-1] >= 2
    columns = [c for c in COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(small[columns], reference[columns], rtol=1e-12, atol=0)


def test_max_samples_uses_the_first_samples(model):
    data = calibration(48, seed=6)
    limited = lo.profile_model(model, data, settings=settings(max_samples=16), show_progress=False)
    first = lo.profile_model(model, data[:16], settings=settings(), show_progress=False)
    columns = [c for c in COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(limited[columns], first[columns], rtol=1e-12, atol=0)


def test_position_subset_only_changes_conv_rows(model, data, profile):
    subset = lo.profile_model(model, data, settings=settings(max_positions=8), show_progress=False)
    dense = subset.layer.isin(["d1", "d2"])
    np.testing.assert_allclose(subset[dense][SCORES], profile[dense][SCORES], rtol=1e-12)
    assert not np.allclose(subset[~dense]["cka"], profile[~dense]["cka"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(subset["weight_error"], profile["weight_error"], rtol=1e-12)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ranks_per_method", 0),
        ("ranks_per_method", 17),
        ("max_samples", 0),
        ("memory_budget_mb", 0),
        ("output_samples", -1),
    ],
)
def test_invalid_settings(field, value):
    with pytest.raises(ValueError, match=f"Invalid `{field}`"):
        lo.ProfileSettings(**{field: value})


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((4, 8, 8, 3), "float32"), ValueError, r"shape: expected \(samples, 16, 16, 3\)"),
        (np.zeros((1, 16, 16, 3), "float32"), ValueError, "at least 2 samples"),
        (np.full((2, 16, 16, 3), np.nan, "float32"), ValueError, "finite"),
        (np.zeros((2, 16, 16, 3), bool), TypeError, "real numbers"),
    ],
)
def test_invalid_calibration(model, x, error, match, tmp_path):
    with pytest.raises(error, match=f"Invalid `calibration_x`.*{match}"):
        lo.profile_model(model, x, settings=settings(), cache_dir=tmp_path, show_progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing cached, no lock or temporary file left
