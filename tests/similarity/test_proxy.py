"""Similarity proxies: layerwise interpolation/aggregation of the profile, and the
model proxy against the outputs of ``lo.materialize``."""

from __future__ import annotations

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.model._statistics import collect_statistics
from lrf_optuna.similarity._proxy import ModelProxy
from search_support import LAYERS, METRIC_FUNCTIONS, calibration, nested_cnn, predict, settings

PLANS = [
    {"c2": ("svd", 5)},
    {"c1": ("tucker2", 3), "d1": ("svd", 20)},
    {"c1": ("cp", 4), "c2": ("spatial_svd", 9), "d1": ("tt", 2), "d2": ("tucker", 3)},
]


@pytest.fixture(scope="module")
def analysis(model):
    return lo.analyze(model)


@pytest.fixture(scope="module")
def model_objectives(model, data):
    """One model-proxy objective per metric (each holds a model copy)."""
    return {
        # weight-only profile settings: these tests compare with materialize without calibration
        metric: lo.search.make_objective(
            model, data, proxy="model", metric=metric, show_progress=False, profile_settings=settings()
        )
        for metric in ("cka", "cosine", "nmse")
    }


def curve(profile, layer: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    rows = profile[(profile.layer == layer) & (profile.method == method)].sort_values("rank")
    return rows["rank"].to_numpy(), rows


def layerwise(profile, analysis, metric="cka", aggregator="mean") -> lo.similarity.LayerwiseProxy:
    return lo.similarity.LayerwiseProxy(profile, analysis, metric=metric, aggregator=aggregator)


# --------------------------------------------------------------------------- layerwise


@pytest.mark.parametrize("aggregator", ["mean", "product", "min", "weighted"])
@pytest.mark.parametrize("metric", ["cka", "cosine", "nmse", "output_cosine", "weight_error"])
def test_layerwise_all_none_scores_one(model, data, profile, analysis, metric, aggregator):
    assert layerwise(profile, analysis, metric, aggregator)({}) == pytest.approx(1.0, abs=1e-6)
    objective = lo.search.make_objective(model, data, profile=profile, metric=metric, aggregator=aggregator)
    none_params = {f"{name}.method": "none" for name in LAYERS} | {f"{n}.rank": 3 for n in LAYERS}
    plan = objective.space.plan_of(optuna.trial.FixedTrial(none_params))
    assert plan == {}
    params, flops, similarity = objective.evaluate(plan)  # FLOPs = 2 x MACs
    assert (params, flops) == (analysis.cost.params, 2 * analysis.cost.macs)
    assert similarity == pytest.approx(1.0, abs=1e-6)


def test_layerwise_values_at_profiled_ranks(profile, analysis):
    proxy = layerwise(profile, analysis, "nmse")
    for record in profile.itertuples():
        assert proxy.layer_similarity(record.layer, record.method, record.rank) == record.nmse


@pytest.mark.parametrize(("layer", "method"), [("c2", "cp"), ("d1", "svd"), ("c2", "spatial_svd")])
def test_layerwise_interpolation_is_piecewise_linear(profile, analysis, layer, method):
    proxy = layerwise(profile, analysis, "cka")
    ranks, rows = curve(profile, layer, method)
    values = rows["cka"].to_numpy()
    assert np.any(np.diff(ranks) > 1)  # there are gaps to interpolate
    for (r0, v0), (r1, v1) in zip(zip(ranks, values), zip(ranks[1:], values[1:])):
        for rank in range(int(r0), int(r1) + 1):
            expected = v0 + (v1 - v0) * (rank - r0) / (r1 - r0)
            assert proxy.layer_similarity(layer, method, rank) == pytest.approx(expected, rel=1e-12)
    # beyond the profiled range the ends are held
    assert proxy.layer_similarity(layer, method, int(ranks[-1]) + 5) == values[-1]


def test_layerwise_aggregators(profile, analysis):
    plan = {"c2": ("svd", 5), "d1": ("tt", 3)}
    s_c2 = float(np.interp(5, *_curve_values(profile, "c2", "svd", "cka")))
    s_d1 = float(np.interp(3, *_curve_values(profile, "d1", "tt", "cka")))
    scores = {"c1": 1.0, "c2": s_c2, "d1": s_d1, "d2": 1.0}
    weights = {name: analysis.specs[name].cost.params for name in scores}
    expected = {
        "mean": sum(scores.values()) / 4,
        "product": s_c2 * s_d1,
        "min": min(s_c2, s_d1),
        "weighted": sum(weights[n] * scores[n] for n in scores) / sum(weights.values()),
    }
    for aggregator, value in expected.items():
        assert layerwise(profile, analysis, "cka", aggregator)(plan) == pytest.approx(value, rel=1e-12)
    assert expected["weighted"] != pytest.approx(expected["mean"], rel=1e-3)  # weights matter


def test_layerwise_output_metric_reads_its_column(profile, analysis):
    plan = {"c1": ("tucker2", 2), "d1": ("svd", 4)}
    for metric in ("output_cka", "output_cosine", "output_nmse"):
        s_c1 = float(np.interp(2, *_curve_values(profile, "c1", "tucker2", metric)))
        s_d1 = float(np.interp(4, *_curve_values(profile, "d1", "svd", metric)))
        assert layerwise(profile, analysis, metric, "product")(plan) == pytest.approx(s_c1 * s_d1, rel=1e-12)
        assert s_c1 != pytest.approx(
            float(np.interp(2, *_curve_values(profile, "c1", "tucker2", metric[7:])))
        )


def _curve_values(profile, layer, method, metric):
    ranks, rows = curve(profile, layer, method)
    return ranks.astype(float), rows[metric].to_numpy()


def test_layerwise_weight_error_becomes_a_score(profile, analysis):
    proxy = layerwise(profile, analysis, "weight_error", "min")
    ranks, rows = curve(profile, "c1", "svd")
    for rank, error in zip(ranks, rows["weight_error"]):
        assert proxy({"c1": ("svd", int(rank))}) == pytest.approx(1.0 - min(error, 1.0), rel=1e-12)


def test_layerwise_unknown_method_is_refused(profile, analysis):
    partial = profile[profile.method != "cp"]
    proxy = layerwise(partial, analysis)
    with pytest.raises(ValueError, match=r"method 'cp' is not in the profile"):
        proxy({"c1": ("cp", 2)})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "mse"}, "Invalid `metric`"),
        ({"aggregator": "max"}, "Invalid `aggregator`"),
        ({"proxy": "network"}, "Invalid `proxy`"),
        ({"proxy": "model", "metric": "weight_error"}, "Invalid `metric`"),
        ({"proxy": "model", "metric": "output_cosine"}, "Invalid `metric`"),
    ],
)
def test_invalid_choices(model, data, profile, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lo.search.make_objective(model, data, profile=profile, show_progress=False, **kwargs)


# --------------------------------------------------------------------------- model proxy


@pytest.mark.parametrize("metric", ["cka", "cosine", "nmse"])
def test_model_proxy_all_none_scores_one(model_objectives, analysis, metric):
    params, flops, similarity = model_objectives[metric].evaluate({})
    assert (params, flops) == (analysis.cost.params, 2 * analysis.cost.macs)
    assert similarity == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("plan", PLANS, ids=["one-layer", "two-layers", "all-layers"])
@pytest.mark.parametrize("metric", ["cka", "cosine", "nmse"])
def test_model_proxy_equals_materialized_model(model, data, model_objectives, plan, metric):
    reference = predict(model, data)
    candidate = predict(lo.materialize(model, plan), data)
    expected = METRIC_FUNCTIONS[metric](reference, candidate)
    similarity = model_objectives[metric].evaluate(plan)[2]
    assert similarity == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert similarity < 0.9999


@pytest.mark.parametrize("plan", PLANS, ids=["one-layer", "two-layers", "all-layers"])
def test_model_proxy_with_statistics_equals_data_aware_materialize(model, data, analysis, plan):
    layers = {name: (analysis.layers[name], spec.geometry) for name, spec in analysis.specs.items()}
    stats = collect_statistics(model, layers, data, batch_size=128, max_positions=64, seed=0)
    proxy = ModelProxy(model, analysis, data, metric="cosine", stats=stats)
    candidate = predict(lo.materialize(model, plan, calibration=data, refit=False), data)
    expected = METRIC_FUNCTIONS["cosine"](predict(model, data), candidate)
    assert proxy(analysis.resolve(plan)) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    weight_only = ModelProxy(model, analysis, data, metric="cosine")(analysis.resolve(plan))
    assert abs(weight_only - expected) > 1e-4  # the statistics really change the kernels


def test_model_proxy_restores_kernels(model, data, model_objectives):
    objective = model_objectives["cka"]
    before = [w.copy() for w in model.get_weights()]
    first = objective.evaluate(PLANS[2])[2]
    assert first < 0.999
    assert objective.evaluate({})[2] == pytest.approx(1.0, abs=1e-6)
    copy = objective.proxy.swapper.copy
    for original, restored in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(original, restored)
    for original, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(original, now)  # the user's model is never touched
    # switching back and forth gives the same scores (kernels cached and reassigned)
    second = objective.evaluate(PLANS[0])[2]
    assert objective.evaluate(PLANS[2])[2] == pytest.approx(first, rel=1e-6)
    assert objective.evaluate(PLANS[0])[2] == pytest.approx(second, rel=1e-6)


def test_model_proxy_uses_the_first_max_samples(model):
    data = calibration(40, seed=4)
    objective = lo.search.make_objective(
        model, data, proxy="model", metric="cosine", profile_settings=settings(max_samples=8)
    )
    plan = PLANS[1]
    expected = METRIC_FUNCTIONS["cosine"](
        predict(model, data[:8]), predict(lo.materialize(model, plan), data[:8])
    )
    assert objective.evaluate(plan)[2] == pytest.approx(expected, rel=1e-4)
    assert len(objective.proxy.swapper.data) == 8


def test_model_proxy_on_a_nested_model():
    model, data = nested_cnn(), calibration(16)
    objective = lo.search.make_objective(
        model, data, proxy="model", metric="nmse", profile_settings=settings()
    )
    plan = {"inner/conv": ("tucker2", 4), "stem": ("svd", 2)}
    expected = METRIC_FUNCTIONS["nmse"](predict(model, data), predict(lo.materialize(model, plan), data))
    assert objective.evaluate(plan)[2] == pytest.approx(expected, rel=1e-4)
    assert objective.evaluate({})[2] == pytest.approx(1.0, abs=1e-6)
    assert isinstance(objective.proxy.swapper.copy, keras.Model)


def test_model_proxy_search_scores_the_factors_materialize_builds(model, data, analysis):
    # A data-aware profile setting makes the model proxy score data-aware kernels, with the
    # statistics materialize collects at the same positions.
    profile_settings = settings(factorization="data_aware", max_positions=64)
    objective = lo.search.make_objective(
        model, data, proxy="model", metric="cosine", profile_settings=profile_settings
    )
    plan = PLANS[1]
    candidate = lo.materialize(model, plan, calibration=data, refit=False, max_positions=64)
    expected = METRIC_FUNCTIONS["cosine"](predict(model, data), predict(candidate, data))
    assert objective.evaluate(plan)[2] == pytest.approx(expected, rel=1e-4, abs=1e-5)
