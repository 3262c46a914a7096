"""`lrf-optuna export` and `lrf-optuna bench` on tiny models (real files, real SQLite, real runs)."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import optuna
import pytest
from cli_support import digest, write_random_data

import lrf_optuna as lo
from lrf_optuna.cli import QUANTIZATIONS, build_parser, main
from lrf_optuna.runtime._tflite import load_interpreter, run_interpreter


def _tiny(filters: int) -> keras.Model:
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(filters, 3, activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(keras.layers.Flatten()(h)))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    _tiny(8).save(tmp_path / "tiny.keras")
    _tiny(4).save(tmp_path / "smaller.keras")
    write_random_data(tmp_path, train=64)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tflite_matches(tflite_path, keras_path, atol: float) -> None:
    model = keras.models.load_model(keras_path, compile=False)
    x = np.random.default_rng(5).random((3, 12, 12, 1), dtype=np.float32)
    expected = model.predict_on_batch(x)
    actual = run_interpreter(load_interpreter(model_path=tflite_path), x)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol * max(1.0, np.abs(expected).max()))


def test_cli_quantization_names_match_the_library():
    assert [None if name == "none" else name for name in QUANTIZATIONS] == list(lo.runtime.QUANTIZATIONS)


def test_export_and_bench_have_help(capsys):
    for command in ("export", "bench"):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, "--help"])
        assert exit_info.value.code == 0 and "usage: lrf-optuna" in capsys.readouterr().out


def test_export_of_a_studys_finetuned_trial(workspace, capsys, caplog):
    common = ["--model", "tiny.keras", "--data", "data.npz", "--calibration", "16", "--study", "t"]
    assert main(["search", *common, "--trials", "8", "--population", "4"]) == 0
    assert main(["export", "--study", "t"]) == 2  # nothing fine-tuned yet
    assert "Run `lrf-optuna finetune --study t` first" in caplog.text
    assert main(["finetune", *common, "--learning-rate", "1e-4", "--output", "studies/tuned.keras"]) == 0
    tuned = workspace / "studies" / "tuned.keras"
    before = digest(tuned)
    assert main(["export", "--study", "t"]) == 0
    assert f"TFLite model: {os.path.join('studies', 'tuned.tflite')}" in capsys.readouterr().out
    _tflite_matches(workspace / "studies" / "tuned.tflite", tuned, atol=1e-4)
    assert digest(tuned) == before

    # The artifact is the recorded model: a later overwrite of model_file does not change the export.
    _tiny(8).save(tuned)
    assert main(["export", "--study", "t", "--quantization", "float16", "--output", "f16.tflite"]) == 0
    (record,) = [t for t in _study_trials() if "model_artifact_id" in t.user_attrs]
    artifact = workspace / "studies" / "t.db.artifacts" / record.user_attrs["model_artifact_id"]
    (workspace / "artifact.keras").write_bytes(artifact.read_bytes())
    _tflite_matches(workspace / "f16.tflite", workspace / "artifact.keras", atol=1e-2)

    tuned_trial = record.user_attrs["lrf_optuna:finetuned_from"]
    other = next(t.number for t in _study_trials() if t.number != tuned_trial)
    caplog.clear()
    assert main(["export", "--study", "t", "--trial", str(other)]) == 2
    assert f"trials fine-tuned so far: [{tuned_trial}]" in caplog.text
    assert f"Run `lrf-optuna finetune --study t --trial {other}` first" in caplog.text
    assert not (workspace / "studies" / f"t-trial{other}.tflite").exists()

    # Without the artifact store, model_file is read; without either, the error says so.
    shutil.rmtree(workspace / "studies" / "t.db.artifacts")
    assert main(["export", "--study", "t", "--output", "from_file.tflite"]) == 0
    _tflite_matches(workspace / "from_file.tflite", tuned, atol=1e-4)
    tuned.unlink()
    assert main(["export", "--study", "t", "--output", "gone.tflite"]) == 2
    assert "found neither. Fine-tune the trial again" in caplog.text
    assert not (workspace / "gone.tflite").exists()


def _study_trials() -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="t", storage="sqlite:///studies/t.db").trials


def test_export_of_any_keras_file(workspace, capsys, caplog):
    assert main(["export", "--model", "tiny.keras", "--quantization", "dynamic"]) == 0
    assert "tiny-dynamic.tflite" in capsys.readouterr().out
    _tflite_matches(workspace / "tiny-dynamic.tflite", workspace / "tiny.keras", atol=1e-1)
    assert main(["export", "--model", "tiny.keras", "--output", "out/m.tflite"]) == 0
    _tflite_matches(workspace / "out" / "m.tflite", workspace / "tiny.keras", atol=1e-4)
    assert main(["export", "--model", "missing.keras"]) == 2
    assert "expected an existing .keras file, received 'missing.keras'" in caplog.text
    assert main(["export", "--model", "tiny.keras", "--output", "m.onnx"]) == 2
    assert "expected a file name ending in .tflite" in caplog.text
    assert main(["export", "--model", "tiny.keras", "--trial", "3"]) == 2
    assert "expected it with --study only" in caplog.text
    assert main(["export", "--study", "nope"]) == 2  # no database: nothing created
    assert not (workspace / "studies").exists()


def test_bad_quantization_names_the_choices(workspace, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "tiny.keras", "--quantization", "int8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.replace("'", "")  # quoted or not, by Python version
    assert "invalid choice: int8 (choose from none, float16, dynamic)" in err


def test_bench_compares_two_models(workspace, capsys):
    assert main(["bench", "--model", "tiny.keras", "--compare", "smaller.keras", "--runs", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["tiny.keras", "smaller.keras", "smaller.keras", "/", "tiny.keras"]
    rows = {line[:40].strip(): line[40:].split() for line in lines[1:]}
    assert list(rows) == [
        "params",
        "FLOPs per sample",
        ".keras file (KB)",
        "Keras latency, batch 1 (ms)",
        "Keras latency, batch 64 (ms)",
        "TFLite latency, batch 1, 1 thread (ms)",
    ]
    costs = [lo.model_cost(keras.models.load_model(workspace / n)) for n in ("tiny.keras", "smaller.keras")]
    params = [c.params for c in costs]
    assert rows["params"] == [f"{params[0]:,}", f"{params[1]:,}", f"{params[1] / params[0]:.2f}x"]
    assert rows["FLOPs per sample"][:2] == [f"{2 * c.macs:,}" for c in costs]
    size = (workspace / "tiny.keras").stat().st_size / 1e3
    assert rows[".keras file (KB)"][0] == f"{size:,.1f}"
    for label in list(rows)[3:]:
        median, spread, ratio = rows[label][0], rows[label][1], rows[label][4]
        low, high = (float(v) for v in spread.strip("()").split("-"))
        assert 0 < low <= float(median) <= high and float(ratio.rstrip("x")) > 0


def test_bench_refuses_a_bad_file_before_timing(workspace, caplog):
    (workspace / "broken.keras").write_bytes(b"not a zip")
    assert main(["bench", "--model", "tiny.keras", "--compare", "broken.keras"]) == 2
    assert "Invalid model file 'broken.keras'" in caplog.text
