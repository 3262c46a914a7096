"""Bad input: every mistake gives an error naming the problem and the fix, and leaves the
user's files untouched (hashed before and after); Ctrl-C leaves consistent state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
import zipfile

import keras
import numpy as np
import optuna
import pytest

import lrf_optuna as lo
from lrf_optuna.cli import build_parser, main
from lrf_optuna.files._models import load_model_file, save_model_atomic
from lrf_optuna.search._storage import open_storage
from search_support import INPUT_SHAPE, calibration, settings, tiny_cnn
from worker_support import cli, start, wait_for_line

L = keras.layers
State = optuna.trial.TrialState


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """tiny.keras, calibration.npy (32 inputs), data.npz (labelled), a cache with both profiles."""
    directory = tmp_path_factory.mktemp("bad_input")
    model = tiny_cnn()
    model.save(directory / "tiny.keras")
    x = calibration(32)
    np.save(directory / "calibration.npy", x)
    rng = np.random.default_rng(0)
    np.savez(
        directory / "data.npz", x_train=x, y_train=rng.integers(0, 10, 32),
        x_test=calibration(16, seed=2), y_test=rng.integers(0, 10, 16),
    )  # fmt: skip
    for profile_settings in (settings(), lo.ProfileSettings()):  # the API's and the CLI's
        lo.profile_model(
            model, x, settings=profile_settings, cache_dir=directory / "cache", show_progress=False
        )
    return directory


@pytest.fixture
def work(files, tmp_path, monkeypatch):
    """A fresh working directory (the CLI writes studies/ there) with the module's files."""
    for name in ("tiny.keras", "calibration.npy", "data.npz"):
        (tmp_path / name).symlink_to(files / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def common(files) -> list[str]:
    return ["--model", "tiny.keras", "--data", "calibration.npy", "--calibration", "32",
            "--cache-dir", str(files / "cache")]  # fmt: skip


def search(storage, *, model=None, x=None, study: str = "s", n_trials: int = 0, **options) -> optuna.Study:
    """``run_study`` on the tiny model (in memory by default: ``storage=None``)."""
    return lo.run_study(
        tiny_cnn() if model is None else model, calibration(32) if x is None else x,
        storage=storage, study_name=study, n_trials=n_trials, show_progress=False,
        profile_settings=settings(), population_size=6, **options,
    )  # fmt: skip


# ---- model files ----------------------------------------------------------------------


def test_missing_model_file(work, files, caplog):
    with pytest.raises(FileNotFoundError, match=r"expected an existing \.keras file.*model\.save"):
        load_model_file(work / "nope.keras")
    assert main(["worker", *common(files), "--model", "nope.keras", "--study", "s"]) == 2
    assert "Invalid model path" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("text.keras", b"this is not a model\n", r"expected a Keras 3 '\.keras' archive, received a \.keras"),
        ("legacy.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), r"received a \.h5 file.*model\.save"),
        ("empty.keras", b"", r"expected a Keras 3 '\.keras' archive"),
    ],
)
def test_not_a_keras_file(work, name, content, expected):
    path = work / name
    path.write_bytes(content)
    before = digest(path)
    with pytest.raises(ValueError, match=expected):
        load_model_file(path)
    assert digest(path) == before


def test_zip_that_is_not_a_keras_archive(work):
    path = work / "archive.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    before = digest(path)
    with pytest.raises(ValueError, match=r"received one that Keras cannot load.*config\.json"):
        load_model_file(path)
    assert digest(path) == before


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv, self.flat, self.dense = L.Conv2D(8, 3), L.Flatten(), L.Dense(4)

    def call(self, x):
        return self.dense(self.flat(self.conv(x)))


def test_subclassed_model(work):
    model = Subclassed()
    model(calibration(2))
    with pytest.raises(TypeError, match=r"subclassed model.*Functional"):
        search(None, model=model, x=calibration(4))
    model.save(work / "sub.keras")
    before = digest(work / "sub.keras")
    with pytest.raises(ValueError, match=r"class 'Subclassed' is not registered.*keras\.Model\(inputs"):
        load_model_file(work / "sub.keras")
    assert digest(work / "sub.keras") == before


def test_model_without_compressible_layer(work, caplog):
    inputs = keras.Input(INPUT_SHAPE)
    x = L.DepthwiseConv2D(3, name="dw")(inputs)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match=r"expected at least one layer"):
        search(None, model=model)
    model.save(work / "dw.keras")
    argv = ["search", "--model", "dw.keras", "--data", "calibration.npy", "--trials", "1"]
    assert main(argv) == 2
    assert "expected at least one layer" in caplog.text
    assert not (work / "studies" / "demo.db").exists()


# ---- calibration data and weights -----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "expected"),
    [
        (np.zeros((0, *INPUT_SHAPE), np.float32), ValueError, r"at least 2 samples, received 0"),
        (np.zeros((8, 8, 8, 3), np.float32), ValueError, r"shape: expected \(samples, 16, 16, 3\)"),
        (np.full((4, *INPUT_SHAPE), "x"), TypeError, r"dtype: expected real numbers, received <U1"),
        (np.full((4, *INPUT_SHAPE), np.nan, np.float32), ValueError, r"expected finite values"),
    ],
    ids=["empty", "wrong-shape", "strings", "nan"],
)
def test_bad_calibration_data(work, data, error, expected):
    with pytest.raises(error, match=expected):
        search(None, x=data, cache_dir=work / "cache")


def test_bad_calibration_file_through_the_cli(work, files, caplog):
    np.save(work / "strings.npy", np.full((4, *INPUT_SHAPE), "x"))
    before = digest(work / "strings.npy")
    argv = ["search", *common(files), "--data", "strings.npy", "--trials", "1"]
    assert main(argv) == 2
    assert "Invalid `calibration_x` dtype" in caplog.text
    assert digest(work / "strings.npy") == before


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_weights(work, value):
    model = tiny_cnn()
    kernel = model.get_layer("d1").kernel
    broken = keras.ops.convert_to_numpy(kernel).copy()
    broken[0, :3] = value
    kernel.assign(broken)
    with pytest.raises(ValueError, match=r"Invalid weights in layer 'd1': found 3 NaN/Inf value\(s\)"):
        search(None, model=model, cache_dir=None)


# ---- storages and studies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("studies/demo.db", r"expected a URL such as 'sqlite:///studies/demo\.db'"),
        ("nosuchdb://host/x", r"Invalid `storage` URL 'nosuchdb://host/x'.*Can't load plugin"),
    ],
)
def test_malformed_storage_url(work, url, expected):
    with pytest.raises(ValueError, match=expected):
        open_storage(url)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_postgresql_fails_fast(work, files, caplog):
    url = f"postgresql://lrf:secret@127.0.0.1:{closed_port()}/lrf"
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"cannot connect to the database.*start the database server"):
        open_storage(url)
    assert time.monotonic() - started < 15  # connect_timeout, not a long TCP hang
    assert main(["worker", *common(files), "--storage", url, "--study", "s"]) == 2
    assert "cannot connect" in caplog.text and "secret" not in caplog.text  # password masked


def test_unknown_study_for_worker_and_finetune(work, files, caplog):
    storage = f"journal:///{work / 'studies' / 'a.log'}"
    search(storage, study="a", cache_dir=files / "cache")
    with pytest.raises(ValueError, match=r"Invalid study name 'b': expected one of \['a'\].*--trials 0"):
        lo.run_worker(tiny_cnn(), calibration(32), storage=storage, study_name="b", n_trials=2)
    assert main(["worker", *common(files), "--storage", storage, "--study", "b"]) == 2
    assert "Invalid study name 'b'" in caplog.text
    finetune = ["finetune", "--model", "tiny.keras", "--data", "data.npz", "--storage", storage]
    assert main([*finetune, "--study", "b"]) == 2
    assert "Invalid --study: expected one of ['a']" in caplog.text


def test_worker_on_a_missing_storage_file_creates_nothing(work, files, caplog):
    assert main(["worker", *common(files), "--storage", "journal:///nope/s.log", "--study", "s"]) == 2
    assert "no journal file at 'nope/s.log'" in caplog.text and "--trials 0" in caplog.text
    assert not (work / "nope").exists()


def test_worker_with_other_calibration_data(work, files):
    storage = f"journal:///{work / 's.log'}"
    search(storage, cache_dir=files / "cache")
    with pytest.raises(
        ValueError,
        match=r"(?s)Invalid settings for study 's'.*calibration data: study has.*same --model, --data",
    ):
        lo.run_worker(tiny_cnn(), calibration(32, seed=7), storage=storage, study_name="s", n_trials=2)


def test_worker_joins_a_study_on_an_output_metric(work, files):
    # the recorded profile key is the one of the network-output profile the study searched
    storage = f"journal:///{work / 'o.log'}"
    search(storage, study="o", metric="output_cosine", cache_dir=files / "cache")
    study = lo.run_worker(tiny_cnn(), calibration(32), storage=storage, study_name="o", n_trials=2,
                          cache_dir=files / "cache")  # fmt: skip
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 2
    assert study.user_attrs["lrf_optuna:metric"] == "output_cosine"


def test_corrupt_sqlite_file(work, files, caplog):
    path = work / "corrupt.db"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    before = digest(path)
    with pytest.raises(ValueError, match=r"Invalid SQLite database.*not a database.*not modified"):
        open_storage(f"sqlite:///{path}")
    assert main(["search", *common(files), "--storage", f"sqlite:///{path}", "--trials", "1"]) == 2
    assert "Invalid SQLite database" in caplog.text
    assert digest(path) == before


def test_corrupt_journal_file(work):
    path = work / "corrupt.log"
    path.write_bytes(b'{"op_code": 0, "worker_id": "w"}\n' + np.random.default_rng(0).bytes(512))
    before = digest(path)
    with pytest.raises(ValueError, match=r"Invalid journal file.*cannot be replayed"):
        open_storage(f"journal:///{path}")
    assert digest(path) == before


# ---- profile cache ----------------------------------------------------------------------


def cache_file(directory):
    (path,) = directory.glob("profile-*.json")
    return path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "stale", "checksum"])
def test_corrupt_or_stale_profile_cache_is_recomputed(work, damage, caplog):
    model, x = tiny_cnn(), calibration(32)
    expected = lo.profile_model(model, x, settings=settings(), cache_dir=work / "c", show_progress=False)
    path = cache_file(work / "c")
    text = path.read_text()
    document = json.loads(text)
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "stale":
        path.write_text(json.dumps({**document, "key": "0" * 64}))
    else:
        document["rows"][0][5] = 0.123
        path.write_text(json.dumps(document))
    profile = lo.profile_model(model, x, settings=settings(), cache_dir=work / "c", show_progress=False)
    assert "ignoring profile cache" in caplog.text and "recomputing" in caplog.text
    assert profile.drop(columns="seconds").equals(expected.drop(columns="seconds"))  # times differ
    assert json.loads(path.read_text())["key"] == document["key"]  # rewritten, valid again


# ---- read-only output directories -------------------------------------------------------


def test_read_only_directory(work):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 0o500 does not stop root from writing (see the next test)")
    locked = work / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match=r"Invalid output directory.*expected a writable"):
            save_model_atomic(tiny_cnn(), locked / "m.keras")
    finally:
        locked.chmod(0o700)


def test_output_path_under_a_file(work, files, caplog):
    blocker = work / "file.txt"
    blocker.write_text("a file, not a directory")
    with pytest.raises(
        PermissionError, match=r"Invalid output directory '.*file\.txt/sub'.*received a file, not a directory"
    ):
        save_model_atomic(tiny_cnn(), blocker / "sub" / "m.keras")
    with pytest.raises(
        PermissionError,
        match=r"Invalid `cache_dir` \(--cache-dir\) '.*file\.txt': expected a writable directory",
    ):
        lo.profile_model(tiny_cnn(), calibration(32), settings=settings(), cache_dir=blocker)
    storage = f"journal:///{work / 's.log'}"
    search(storage, cache_dir=files / "cache", n_trials=3)
    finetune = ["finetune", "--model", "tiny.keras", "--data", "data.npz", "--storage", storage]
    assert main([*finetune, "--study", "s", "--output", "file.txt/m.keras"]) == 2
    assert "Invalid --output directory 'file.txt'" in caplog.text
    assert main(["report", "--model", "tiny.keras", "--storage", storage, "--study", "s",
                 "--out", "file.txt/report"]) == 2  # fmt: skip
    assert blocker.read_text() == "a file, not a directory"


# ---- Ctrl-C -----------------------------------------------------------------------------


def complete_trials(storage: str, study: str = "s") -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    return [t for t in trials if t.state == State.COMPLETE]


def test_ctrl_c_during_search_then_resume(work, files):
    # 100 trials (several seconds): with 20 the search could end before the signal arrived,
    # and a SIGINT during interpreter shutdown kills with -2 (seen once in CI)
    storage, budget = f"sqlite:///{work / 'studies' / 's.db'}", 100
    search(storage, cache_dir=files / "cache")  # the study exists: the test can poll it
    argv = ["search", *common(files), "--storage", storage, "--study", "s", "--trials", str(budget)]
    process = start(cli(*argv), work / "search.log")
    deadline = time.monotonic() + 120
    while len(complete_trials(storage)) < 3 and time.monotonic() < deadline:
        assert process.poll() is None, (work / "search.log").read_text()[-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, (work / "search.log").read_text()[-3000:]
    assert "interrupted" in (work / "search.log").read_text()
    trials = optuna.load_study(study_name="s", storage=open_storage(storage)).trials
    assert 3 <= len(complete_trials(storage)) < budget
    # the running trial finished first: nothing RUNNING, FAIL or half-written
    assert {t.state for t in trials} <= {State.COMPLETE, State.WAITING}
    assert main(argv) == 0  # the same command resumes
    assert len(complete_trials(storage)) == budget


def test_ctrl_c_during_finetuning_leaves_no_partial_model(work, files):
    rng = np.random.default_rng(0)
    np.savez(
        work / "big.npz", x_train=calibration(4096), y_train=rng.integers(0, 10, 4096),
        x_test=calibration(64, seed=2), y_test=rng.integers(0, 10, 64),
    )  # fmt: skip
    storage = f"journal:///{work / 's.log'}"
    search(storage, cache_dir=files / "cache", n_trials=3)
    output = work / "out" / "compressed.keras"
    argv = ["finetune", "--model", "tiny.keras", "--data", "big.npz", "--storage", storage,
            "--study", "s", "--epochs", "500", "--output", str(output)]  # fmt: skip
    log = work / "finetune.log"
    process = start(cli(*argv), log)
    wait_for_line(log, "fine-tuning 500 epoch(s)", process, timeout=120)  # logged as fit starts
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert not output.exists()
    assert not list(output.parent.glob("*.keras"))  # no .compressed.partial.keras either


def test_interrupted_save_keeps_the_previous_file(work, monkeypatch):
    model, path = tiny_cnn(), work / "m.keras"
    path.write_bytes(b"previous version")

    def interrupted_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as stream:
            stream.write(b"half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_model_atomic(model, path)
    assert path.read_bytes() == b"previous version"
    assert sorted(p.name for p in work.iterdir() if "partial" in p.name) == []


# ---- security ---------------------------------------------------------------------------


def test_dashboard_binds_localhost_by_default():
    assert build_parser().parse_args(["dashboard"]).host == "127.0.0.1"


def test_lambda_layer_is_refused(work):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(L.Lambda(lambda t: t * 2)(inputs)))
    model.save(work / "lambda.keras")
    before = digest(work / "lambda.keras")
    with pytest.raises(ValueError, match=r"Lambda layer holding Python code.*safe_mode=True"):
        load_model_file(work / "lambda.keras")
    assert digest(work / "lambda.keras") == before


def test_worker_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["worker", "--help"])
    assert exit_info.value.code == 0
    assert "--worker-id" in capsys.readouterr().out
