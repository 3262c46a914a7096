"""Start-up of the CLI and the package: no TensorFlow before it is needed, no TensorFlow log lines."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lrf_optuna as lo

HEAVY = ("tensorflow", "keras", "optuna", "numpy", "tensorly", "sqlalchemy")
# TensorFlow's native log lines: absl's glog-style prefix, its pre-init banner, the oneDNN notice
TF_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN custom operations|cpu_feature_guard", re.M
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    src = str(Path(lo.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return {**env, **extra}


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300
    )


def test_importing_the_cli_and_the_package_imports_nothing_heavy():
    code = f"import sys, lrf_optuna, lrf_optuna.cli\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"`import lrf_optuna.cli` imported {done.stdout.strip()}"


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["--help"], 0, "usage: lrf-optuna"),
        (["search", "--help"], 0, "--trials"),
        (["search", "--trials", "many"], 2, "invalid int value: 'many'"),
        (["nosuchcommand"], 2, "invalid choice: 'nosuchcommand'"),
    ],
)
def test_help_and_argument_errors_answer_fast_without_tensorflow(argv, code, expected):
    started = time.monotonic()
    done = _python("-X", "importtime", "-m", "lrf_optuna.cli", *argv)
    elapsed = time.monotonic() - started
    assert done.returncode == code, done.stderr[-2000:]
    assert expected in done.stdout + done.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line
    }
    assert not {"tensorflow", "keras"} & imported, "help/argument errors imported TensorFlow or Keras"
    # 2 s is the bound; measured ~0.1 s here (TensorFlow alone takes 2-4 s to import)
    assert elapsed < 2.0, f"`lrf-optuna {' '.join(argv)}` took {elapsed:.1f} s"


def _tiny_model_and_inputs(directory: Path) -> None:
    import keras
    import numpy as np

    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="c1")(inputs))
    keras.Model(inputs, keras.layers.Dense(3, name="fc")(hidden)).save(directory / "tiny.keras")
    np.save(directory / "x.npy", np.random.default_rng(0).random((16, 8, 8, 1), np.float32))


def test_tensorflow_native_log_lines_only_with_verbose(tmp_path):
    _tiny_model_and_inputs(tmp_path)
    argv = ["profile", "--model", "tiny.keras", "--data", "x.npy", "--calibration", "8"]
    argv += ["--cache-dir", "cache", "--ranks", "2"]
    quiet = _python("-m", "lrf_optuna.cli", *argv, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "c1" in quiet.stdout  # the profile table: TensorFlow did run
    assert not TF_LOG_LINE.search(quiet.stderr), f"TensorFlow log lines on stderr:\n{quiet.stderr}"
    # the pattern does match what TensorFlow prints, as -v shows (the profile is cached now)
    verbose = _python("-m", "lrf_optuna.cli", "-v", *argv, cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert TF_LOG_LINE.search(verbose.stderr), f"-v should show TensorFlow's log lines:\n{verbose.stderr}"


# ---- the lazy package --------------------------------------------------------------------


def test_every_public_name_resolves_from_the_module_it_is_declared_in():
    tree = ast.parse(Path(lo.__file__).read_text())
    (checking,) = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    declared = {
        alias.name: node.module
        for node in checking.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert set(declared) | {"__version__"} == set(lo.__all__)
    for name, module in declared.items():
        owner = importlib.import_module(module)
        expected = (
            importlib.import_module(f"lrf_optuna.{name}") if module == "lrf_optuna" else getattr(owner, name)
        )
        assert getattr(lo, name) is expected, name
        assert name in dir(lo)
    with pytest.raises(AttributeError, match="has no attribute 'nosuchname'"):
        _ = lo.nosuchname


def test_importing_a_submodule_does_not_hide_the_function_of_the_same_name():
    # the package attribute `finetune` is the function, whatever submodules were imported
    code = (
        "import lrf_optuna.results._finetune, lrf_optuna.cli._commands\n"
        "import lrf_optuna as lo\n"
        "from lrf_optuna import finetune, run_study, data\n"
        "print(callable(lo.finetune), finetune is lo.finetune, run_study.__module__, data.__name__)"
    )
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "lrf_optuna.search._run", "lrf_optuna.data"]


LOAD = "keras.models.load_model(sys.argv[1]).get_layer('tt').__class__.__module__"


@pytest.fixture(scope="module")
def tt_model_file(tmp_path_factory) -> str:
    # Saved in this process (it has Keras already); only the loads need fresh interpreters.
    import keras

    from lrf_optuna.layers import TTDense

    path = str(tmp_path_factory.mktemp("tt") / "tt.keras")
    inputs = keras.Input((8,))
    keras.Model(inputs, TTDense((2, 4), (2, 3), (1, 2, 1), name="tt")(inputs)).save(path)
    return path


@pytest.mark.parametrize(
    "imports", ["import lrf_optuna, sys; import keras", "import keras, sys; import lrf_optuna"]
)
def test_import_lrf_optuna_still_registers_its_layers_for_load_model(tt_model_file, imports):
    # the eager imports registered TTDense/TuckerDense on `import lrf_optuna`; lazily, in either order
    # (that `import lrf_optuna` alone imports no Keras is checked above)
    loaded = _python("-c", f"{imports}\nprint({LOAD})", tt_model_file)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["lrf_optuna.layers"]
