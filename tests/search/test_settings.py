"""The settings record: written at creation, read back, compared on every resume (real SQLite)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.results._compress import compress_trial
from lrf_optuna.search._settings import DataSpec
from search_support import calibration, settings, tiny_cnn

COMPLETE = optuna.trial.TrialState.COMPLETE


def search(model, data, profile, url, n_trials=3, **options):
    options = {"population_size": 4, "show_progress": False, "profile": profile, "cache_dir": None, **options}
    return lo.run_study(model, data, storage=url, study_name="s", n_trials=n_trials, **options)


def snapshot(url: str) -> tuple:
    study = optuna.load_study(study_name="s", storage=lo.search.open_storage(url))
    return len(study.get_trials()), study.user_attrs


def test_round_trip_through_study_attrs():
    chosen = lo.SearchSettings(
        proxy="model", metric="nmse", aggregator="min", constraints=lo.Constraints(max_params=10),
        methods={"conv": ["cp"]}, profile_settings=settings(methods=("cp", "svd")), exclude=("c1", "d*"),
        fixed={"c2": ("cp", 3)}, min_rank_fraction=0.25, sampler="tpe", population_size=8, crossover="sbx",
        seed=3, model_fingerprint="ab" * 32, data_fingerprint="cd" * 32, model_path="/m.keras",
        data_spec=DataSpec("/d.npz", 64, 3),
    )  # fmt: skip
    assert lo.SearchSettings.from_attrs(chosen.to_attrs()) == chosen
    assert chosen.methods == {"conv": ("cp",), "dense": ()}


def test_a_study_recorded_before_the_settings_record_reads_as_it_was_searched():
    # the user attrs the previous version wrote (no exclude, fixed, fingerprints, inputs)
    old = {
        "lrf_optuna:proxy": "layerwise", "lrf_optuna:metric": "cka", "lrf_optuna:aggregator": "mean",
        "lrf_optuna:sampler": {"name": "nsga2", "population_size": 20, "crossover": "uniform"},
        "lrf_optuna:seed": 1, "lrf_optuna:methods": {"conv": ["tucker2", "cp"], "dense": ["svd"]},
        "lrf_optuna:constraints": {"max_params": None, "max_macs": None, "min_similarity": 0.5},
        "lrf_optuna:profile_settings": {**dataclasses.asdict(lo.ProfileSettings()), "methods": None},
        "lrf_optuna:profile_key": "0" * 64, "lrf_optuna:base_macs": 10, "lrf_optuna:base_params": 10,
    }  # fmt: skip
    recorded = lo.SearchSettings.from_attrs(old)
    assert recorded == lo.SearchSettings(
        metric="cka", population_size=20, seed=1, methods={"conv": ["cp", "tucker2"], "dense": ["svd"]},
        constraints=lo.Constraints(min_similarity=0.5), profile_key="0" * 64, objectives=("params", "macs", "similarity"),
    )  # fmt: skip
    # before 0.2 no methods were recorded: every method had been searched
    assert lo.SearchSettings.from_attrs({"lrf_optuna:base_params": 1}).methods is None


def test_an_old_study_resumes(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    # made before objectives were recorded: (params, macs, similarity), no metric names
    study = optuna.create_study(storage=url, study_name="s", directions=["minimize", "minimize", "maximize"])
    for key in ("proxy", "metric", "aggregator", "seed", "constraints", "methods", "profile_settings"):
        study.set_user_attr(f"lrf_optuna:{key}", lo.SearchSettings().to_attrs()[f"lrf_optuna:{key}"])
    study.set_user_attr("lrf_optuna:base_params", lo.model_cost(model).params)
    study = search(model, data, profile, url, n_trials=4)
    assert len(study.get_trials(states=(COMPLETE,))) == 4
    assert "lrf_optuna:model_fingerprint" not in study.user_attrs  # the record is not rewritten


DIFFERENCES = [
    ({"metric": "cka"}, "metric: study has 'cosine', this run asks 'cka'"),
    ({"aggregator": "min"}, "aggregator: study has 'mean', this run asks 'min'"),
    ({"proxy": "model"}, "proxy: study has 'layerwise', this run asks 'model'"),
    (
        {"constraints": lo.Constraints(max_params=1000)},
        "constraints.max_params: study has None, this run asks 1000",
    ),
    (
        {"methods": {"conv": ["cp"], "dense": ["svd"]}},
        "methods: study has {'conv': ['tucker2', 'cp', 'svd', 'spatial_svd'], 'dense': ['svd']}, "
        "this run asks {'conv': ['cp'], 'dense': ['svd']}",
    ),
    (
        {"profile_settings": settings(factorization="data_aware")},  # the default, but for the ranks
        "profile_settings.ranks_per_method: study has 8, this run asks 4",
    ),
    (
        {"profile_settings": lo.ProfileSettings(factorization="weights")},
        "profile_settings.factorization: study has 'data_aware', this run asks 'weights'",
    ),
    ({"exclude": ["c1"]}, "exclude: study has [], this run asks ['c1']"),
    ({"fixed": {"c1": ("svd", 2)}}, "fixed: study has {}, this run asks {'c1': ['svd', 2]}"),
    ({"min_rank_fraction": 0.5}, "min_rank_fraction: study has 0.0, this run asks 0.5"),
    ({"model": tiny_cnn(seed=1)}, "model weights: study has sha256 "),
    ({"data": calibration(32, seed=5)}, "calibration data: study has sha256 "),
]


@pytest.mark.parametrize(("change", "line"), DIFFERENCES, ids=[next(iter(c)) for c, _ in DIFFERENCES])
def test_each_difference_is_refused_and_nothing_is_written(model, data, profile, tmp_path, change, line):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search(model, data, profile, url)
    before = snapshot(url)
    change = dict(change)
    model, data = change.pop("model", model), change.pop("data", data)
    with pytest.raises(ValueError, match="Invalid settings for study 's'") as error:
        search(model, data, profile, url, n_trials=6, **change)
    message = str(error.value)
    assert f"\n  - {line}" in message, message
    assert message.count("\n  - ") == 1, message
    assert "or start a new study (another study_name / --study)" in message
    assert snapshot(url) == before


def test_every_difference_is_listed(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search(model, data, profile, url, metric="nmse", exclude=["d2"])
    with pytest.raises(ValueError) as error:
        search(model, data, profile, url, metric="cka", aggregator="product", exclude=["d2"])
    lines = str(error.value).split("\n  - ")[1:]
    assert [line.split(":")[0] for line in lines] == ["metric", "aggregator"]
    assert "leave these options out and the study's own are used" in str(error.value)


def test_resume_takes_the_recorded_settings_and_may_change_the_sampler(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search(model, data, profile, url, metric="nmse", fixed={"c1": ("svd", 2)})
    attrs = snapshot(url)[1]
    study = search(model, data, profile, url, n_trials=5)  # no options: the recorded ones
    study = search(model, data, profile, url, n_trials=7, metric="nmse", population_size=6, sampler="tpe")
    trials = study.get_trials(states=(COMPLETE,))
    assert len(trials) == 7
    assert all('"c1": "svd:2"' in t.user_attrs["plan"] for t in trials)
    assert study.user_attrs == attrs  # the record stays the creation's


def test_model_proxy_compares_the_seed(model, data, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    quick = {"proxy": "model", "profile_settings": settings(max_samples=8), "hull_seeds": False}
    search(model, data, None, url, n_trials=1, **quick)
    with pytest.raises(ValueError, match="seed: study has 0, this run asks 1"):
        search(model, data, None, url, n_trials=2, seed=1, **quick)


def test_record_holds_fingerprints_and_inputs(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = search(model, data, profile, url, model_path="/abs/m.keras", data_spec=DataSpec("x.npz", 32, 0))
    recorded = lo.SearchSettings.from_study(study)
    assert (
        recorded.model_fingerprint
        == lo.SearchSettings.from_study(search(model, data, profile, url)).model_fingerprint
    )
    assert len(recorded.model_fingerprint) == 64 and len(recorded.data_fingerprint) == 64
    assert (recorded.model_path, recorded.data_spec) == ("/abs/m.keras", DataSpec("x.npz", 32, 0))
    # informational: another path or data spec for the same weights and data is no difference
    search(model, data, profile, url, n_trials=4, model_path="/elsewhere.keras")


def test_worker_with_other_weights_is_refused(model, data, profile, tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    search(model, data, profile, url, n_trials=0)
    with pytest.raises(ValueError, match=r"(?s)Invalid settings for study 's'.*- model weights: study has"):
        lo.run_worker(tiny_cnn(seed=1), data, storage=url, study_name="s", n_trials=2, cache_dir=None)


def test_unknown_option_is_a_type_error(model, data, profile, tmp_path):
    with pytest.raises(TypeError, match=r"Invalid option 'metrc'"):
        search(model, data, profile, f"sqlite:///{tmp_path / 'x.db'}", metrc="cka")
    assert not (tmp_path / "x.db").exists()


def test_plan_from_trial_and_compress_trial_replay_the_recorded_space(model, data, profile, tmp_path):
    # Item 6: plan_from_trial ignored the methods a study recorded; compress_trial honoured them.
    url = f"sqlite:///{tmp_path / 'study.db'}"
    options = {"methods": {"conv": ["cp"], "dense": ["svd"]}, "fixed": {"d2": ("svd", 2)}}
    study = search(model, data, profile, url, n_trials=6, **options)
    trials = study.get_trials(states=(COMPLETE,))
    for trial in trials:
        plan = lo.plan_from_trial(model, trial, study=study)
        assert plan == {
            k: (v.split(":")[0], int(v.split(":")[1]))
            for k, v in json.loads(trial.user_attrs["plan"]).items()
        }
        assert plan == lo.plan_from_trial(lo.analyze(model), trial, settings=lo.SearchSettings(**options))
        assert plan["d2"] == ("svd", 2)
    with pytest.raises(ValueError, match=r"missing \['d2.method', 'd2.rank'\].*study=study"):
        lo.plan_from_trial(model, trials[-1])  # the default space searches d2
    with pytest.raises(ValueError, match="expected `study` or `settings`, received both"):
        lo.plan_from_trial(model, trials[-1], study=study, settings=lo.SearchSettings())
    x = calibration(24, seed=3)
    y = np.arange(24) % 10
    done = compress_trial(
        model, study, trials[-1], train=(x, y), test=(x[:8], y[:8]), output=tmp_path / "c.keras",
        artifact_dir=tmp_path / "artifacts", epochs=1,
    )  # fmt: skip
    assert done.plan == lo.plan_from_trial(model, trials[-1], study=study)
    assert [done.cost.params, done.cost.flops] == trials[-1].values[:2]


def test_compress_trial_refuses_other_weights(model, data, profile, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = search(model, data, profile, url, n_trials=2, model_path="/abs/m.keras")
    with pytest.raises(
        ValueError,
        match=r"Invalid model for study 's': expected the model it was searched with \(/abs/m.keras\)",
    ):
        compress_trial(
            tiny_cnn(seed=1), study, study.trials[1], train=(data, np.zeros(32)), test=(data, np.zeros(32)),
            output=tmp_path / "c.keras", artifact_dir=tmp_path / "artifacts",
        )  # fmt: skip
    assert not (tmp_path / "c.keras").exists()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"proxy": "model", "metric": "weight_error"},
            r"Invalid `metric`: expected one of \['cka', 'cosine', 'nmse'\]",
        ),
        ({"proxy": "nearest"}, r"Invalid `proxy`: expected one of \['layerwise', 'model'\]"),
        ({"aggregator": "median"}, r"Invalid `aggregator`"),
        ({"population_size": 1}, r"Invalid `population_size`"),
        ({"constraints": {"max_params": 3}}, r"Invalid `constraints`: expected a Constraints, received dict"),
    ],
)
def test_invalid_settings_are_refused_before_the_storage_is_created(
    model, data, profile, tmp_path, options, match
):
    with pytest.raises((ValueError, TypeError), match=match):
        search(model, data, profile, f"sqlite:///{tmp_path / 'x.db'}", **options)
    assert not (tmp_path / "x.db").exists()
