"""The `lrf-optuna` CLI on a tiny model and tiny .npz data (real files, real SQLite)."""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import optuna
import pytest
from cli_support import digest, write_random_data

from lrf_optuna.cli import build_parser, main


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(h))
    model.save(tmp_path / "tiny.keras")
    write_random_data(tmp_path, train=96)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_command_has_help(capsys):
    parser = build_parser()
    for command in ("demo", "profile", "search", "finetune", "report", "dashboard"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: lrf-optuna" in capsys.readouterr().out


def test_search_finetune_report_round_trip(workspace, capsys):
    common = ["--model", "tiny.keras", "--data", "data.npz", "--calibration", "32", "--study", "t"]
    before = digest(workspace / "tiny.keras")
    assert main(["search", *common, "--trials", "16", "--population", "6"]) == 0
    storage = "sqlite:///studies/t.db"
    study = optuna.load_study(study_name="t", storage=storage)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 16
    assert main(["search", *common, "--trials", "20", "--population", "6"]) == 0  # resumes
    assert len(optuna.load_study(study_name="t", storage=storage).trials) == 20
    assert main(["finetune", *common, "--learning-rate", "0"]) == 2  # refused before training
    assert not list((workspace / "studies").glob("t-trial*.keras"))
    assert (
        main(["finetune", *common, "--epochs", "1", "--schedule", "constant", "--learning-rate", "1e-4"]) == 0
    )
    out = capsys.readouterr().out
    assert "params" in out and "accuracy" in out and "Compressed model" in out
    saved = list((workspace / "studies").glob("t-trial*.keras"))
    assert len(saved) == 1
    number = int(saved[0].stem.removeprefix("t-trial"))  # the saved model is that trial's plan
    trial = optuna.load_study(study_name="t", storage=storage).trials[number]
    assert keras.models.load_model(saved[0]).count_params() == trial.values[0]
    records = [
        t
        for t in optuna.load_study(study_name="t", storage=storage).trials
        if "lrf_optuna:finetuned_from" in t.user_attrs
    ]
    assert len(records) == 1 and "accuracy_finetuned" in records[0].user_attrs
    artifact = records[0].user_attrs["model_artifact_id"]
    assert (workspace / "studies" / "t.db.artifacts" / artifact).is_file()
    assert main(["report", *common]) == 0
    assert (
        workspace / "studies" / "t-report" / "pareto_2d.html"
    ).stat().st_size > 100_000  # plotly.js embedded
    assert digest(workspace / "tiny.keras") == before  # the input model is never modified


def test_missing_model_is_a_clear_error(workspace, caplog):
    assert main(["search", "--model", "nope.keras", "--data", "data.npz"]) == 2
    assert "expected an existing .keras file" in caplog.text


def test_unknown_study_for_finetune(workspace, caplog):
    assert (
        main(
            [
                "search",
                "--model",
                "tiny.keras",
                "--data",
                "data.npz",
                "--study",
                "a",
                "--trials",
                "3",
                "--calibration",
                "16",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "finetune",
                "--model",
                "tiny.keras",
                "--data",
                "data.npz",
                "--study",
                "b",
                "--storage",
                "sqlite:///studies/a.db",
            ]
        )
        == 2
    )
    assert "Invalid --study" in caplog.text


def test_schedule_choices_are_the_librarys():
    import lrf_optuna as lo

    parser = build_parser()
    for schedule in lo.results.SCHEDULES:  # the CLI spells them out to keep --help free of TensorFlow
        assert parser.parse_args(["finetune", "--schedule", schedule]).schedule == schedule
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", "--schedule", "step"])


def test_distill_defaults_to_the_librarys_and_can_be_turned_off():
    import lrf_optuna as lo

    parser = build_parser()
    assert (
        inspect.signature(lo.finetune).parameters["distill"].default is None
    )  # distill when given the original
    assert parser.parse_args(["finetune"]).distill is None  # left to lo.finetune
    assert parser.parse_args(["finetune", "--no-distill"]).distill is False
    assert parser.parse_args(["finetune", "--distill"]).distill is True


def test_metric_choices_are_the_librarys():
    import lrf_optuna as lo
    from lrf_optuna.cli import METRICS

    assert METRICS == lo.similarity.LAYERWISE_METRICS  # spelled out in the CLI, as the schedules are
    parser = build_parser()
    for command in ("search", "profile"):
        for metric in lo.similarity.LAYERWISE_METRICS:
            assert parser.parse_args([command, "--metric", metric]).metric == metric
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--metric", "output_l2"])


def test_profile_prints_and_caches_the_searchs_profile(workspace, capsys):
    common = ["--model", "tiny.keras", "--data", "data.npz", "--calibration", "32"]  # the search's ranks
    assert main(["profile", *common]) == 0
    plain = capsys.readouterr().out
    header = plain.splitlines()[0].split()
    assert {"layer", "method", "rank", "cosine", "output_cosine"} <= set(header), plain
    rows = [dict(zip(header, line.split(), strict=True)) for line in plain.splitlines()[1:]]
    assert {row["layer"] for row in rows} == {"conv1", "conv2", "fc"}, plain
    assert all(row["output_cosine"] == "NaN" and row["cosine"] != "NaN" for row in rows), plain
    assert len(list((workspace / "studies" / "cache").glob("*.json"))) == 1

    assert main(["profile", *common, "--metric", "output_cosine"]) == 0  # network outputs too
    outputs = capsys.readouterr().out
    rows = [line.split() for line in outputs.splitlines()[1:]]
    column = header.index("output_cosine")
    assert all(-1.0 <= float(row[column]) <= 1.0 for row in rows), outputs
    assert len(list((workspace / "studies" / "cache").glob("*.json"))) == 2  # its own entry

    assert main(["search", *common, "--study", "p", "--trials", "4", "--metric", "output_cosine"]) == 0
    assert len(list((workspace / "studies" / "cache").glob("*.json"))) == 2  # the search reused it


def test_method_choices_are_the_librarys():
    import lrf_optuna as lo

    parser = build_parser()
    for kind in ("conv", "dense"):
        option = f"--{kind}-methods"
        args = parser.parse_args(["search", option, *lo.factorizers.methods_for(kind)])
        assert getattr(args, f"{kind}_methods") == lo.factorizers.methods_for(kind)
        assert set(lo.search.DEFAULT_METHODS[kind]) <= set(lo.factorizers.methods_for(kind))
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "--dense-methods", "tucker2"])


def test_the_study_remembers_its_model_and_data(workspace, tmp_path_factory, monkeypatch, caplog, capsys):
    # `report --study mob` failed looking for the default ResNet model: the study now records
    # the model path (absolute) and the data spec, so later commands need only --study.
    common = ["--model", "tiny.keras", "--data", "data.npz", "--calibration", "32", "--study", "t"]
    assert main(["search", *common, "--trials", "6", "--population", "4", "--seed", "2"]) == 0
    storage = f"sqlite:///{workspace / 'studies' / 't.db'}"
    attrs = optuna.load_study(study_name="t", storage=storage).user_attrs
    assert attrs["lrf_optuna:model_path"] == str(workspace / "tiny.keras")
    assert attrs["lrf_optuna:data_spec"] == {
        "source": str(workspace / "data.npz"),
        "calibration": 32,
        "seed": 2,
    }
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)  # relative paths would no longer resolve
    assert main(["search", "--study", "t", "--storage", storage, "--trials", "8"]) == 0  # resumes
    assert len(optuna.load_study(study_name="t", storage=storage).trials) >= 8
    assert main(["report", "--study", "t", "--storage", storage]) == 0
    assert (elsewhere / "studies" / "t-report" / "pareto.csv").is_file()
    only_study = ["--study", "t", "--storage", storage, "--epochs", "1", "--output", "c.keras"]
    assert main(["finetune", *only_study]) == 0
    assert "Compressed model" in capsys.readouterr().out
    (workspace / "tiny.keras").rename(workspace / "moved.keras")
    assert main(["report", "--study", "t", "--storage", storage]) == 2
    assert f"its recorded model file '{workspace / 'tiny.keras'}', which no longer exists" in caplog.text
    assert "Pass --model PATH" in caplog.text
    assert (
        main(["report", "--study", "t", "--storage", storage, "--model", str(workspace / "moved.keras")]) == 0
    )


def test_per_layer_flags_are_recorded_and_a_changed_setting_refused(workspace, caplog):
    common = ["--model", "tiny.keras", "--data", "data.npz", "--calibration", "32", "--study", "f"]
    flags = ["--exclude", "fc", "--fixed", "conv2=svd:2", "--min-rank-fraction", "0.5", "--max-params", "900"]
    assert main(["search", *common, "--trials", "4", "--population", "4", *flags]) == 0
    study = optuna.load_study(study_name="f", storage="sqlite:///studies/f.db")
    attrs = study.user_attrs
    assert (attrs["lrf_optuna:exclude"], attrs["lrf_optuna:fixed"]) == (["fc"], {"conv2": ["svd", 2]})
    assert attrs["lrf_optuna:min_rank_fraction"] == 0.5
    assert attrs["lrf_optuna:constraints"]["max_params"] == 900
    assert set(study.trials[0].params) == {"conv1.method", "conv1.rank"}
    trials = len(study.trials)
    assert main(["search", "--study", "f", "--trials", "6", "--metric", "cka", "--max-macs", "5000"]) == 2
    assert "metric: study has 'cosine', this run asks 'cka'" in caplog.text
    assert "constraints.max_macs: study has None, this run asks 5000" in caplog.text
    assert "constraints.max_params" not in caplog.text  # each constraint flag changes one limit
    assert len(optuna.load_study(study_name="f", storage="sqlite:///studies/f.db").trials) == trials
    assert main(["search", *common, "--study", "g", "--exclude", "dense*"]) == 2
    assert "pattern 'dense*'" in caplog.text and "['conv1', 'conv2', 'fc']" in caplog.text
    assert not (workspace / "studies" / "g.db").exists()  # refused before the storage is created
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--fixed", "conv2=svd"])
    assert build_parser().parse_args(["search", "--fixed", "a=cp:3", "b/c=svd:1"]).fixed == [
        ("a", ("cp", 3)),
        ("b/c", ("svd", 1)),
    ]


def test_report_of_a_study_made_in_python_asks_for_the_model(workspace, caplog):
    import lrf_optuna as lo

    model = keras.models.load_model(workspace / "tiny.keras")
    x = np.load(workspace / "data.npz")["x_train"][:32]
    lo.run_study(
        model, x, study_name="py", n_trials=3, population_size=4, show_progress=False
    )  # no model_path
    assert main(["report", "--study", "py"]) == 2
    assert "study ('py') that recorded none" in caplog.text and "Pass --model PATH" in caplog.text
    assert main(["report", "--study", "py", "--model", "tiny.keras"]) == 0  # no --data needed
    assert main(["finetune", "--study", "py", "--model", "tiny.keras"]) == 2
    assert "Invalid --data: expected the study's recorded data" in caplog.text


def test_search_flags_default_to_the_record_and_their_help_to_the_dataclass(capsys):
    import lrf_optuna as lo

    args = build_parser().parse_args(["search"])
    settings = [
        "proxy",
        "metric",
        "aggregator",
        "sampler",
        "population",
        "exclude",
        "fixed",
        "min_rank_fraction",
    ]
    names = settings + ["model", "data", "calibration", "seed", "max_params", "conv_methods", "dense_methods"]
    assert all(getattr(args, name) is None for name in names)  # None: the study's recorded value
    defaults, data = lo.SearchSettings(), lo.search.DataSpec()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for value in (defaults.proxy, defaults.metric, defaults.aggregator, defaults.sampler, data.source):
        assert f"default: {value}" in help_text or f"else {value}" in help_text, value
    for value in (defaults.population_size, data.calibration, data.seed):
        assert f"default: {value})" in help_text or f"else {value})" in help_text, value


def test_objective_choices_are_the_librarys():
    from lrf_optuna.cli import OBJECTIVES
    from lrf_optuna.search._objective import OBJECTIVES as LIBRARY

    assert tuple(name for name in LIBRARY if name != "macs") == OBJECTIVES  # "macs": older studies only
    args = build_parser().parse_args(
        ["search", "--objectives", "params", "latency", "--latency-runtime", "keras"]
    )
    assert (args.objectives, args.latency_runtime) == (["params", "latency"], "keras")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--objectives", "params", "speed"])
