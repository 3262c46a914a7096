"""Worker processes for the scale-out tests: files, commands, and a worker that hangs.

``python tests/worker_support.py --storage URL --study NAME --n-trials N --model M
--data D --cache-dir C --hang-after K`` runs ``lo.run_worker`` whose objective hangs
(prints "HANGING-IN-TRIAL <number>", then sleeps) at the end of its (K+1)-th call: the test then SIGKILLs it mid-trial.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POSTGRES_ENV = "LRF_OPTUNA_TEST_POSTGRES_URL"
HANG_MARK = "HANGING-IN-TRIAL"
SHORT_HEARTBEAT = {"LRF_OPTUNA_HEARTBEAT_INTERVAL": "1", "LRF_OPTUNA_HEARTBEAT_GRACE": "3"}


def write_inputs(directory: Path) -> tuple[Path, Path]:
    """The tiny CNN of ``search_support`` as .keras and 32 calibration inputs as .npy."""
    sys.path.insert(0, str(HERE))
    from search_support import calibration, tiny_cnn

    directory.mkdir(parents=True, exist_ok=True)
    model_path, data_path = directory / "tiny.keras", directory / "calibration.npy"
    tiny_cnn().save(model_path)
    np.save(data_path, calibration(32))
    return model_path, data_path


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrf_optuna.cli", *args]


def worker_command(inputs, storage: str, study: str, trials: int, worker_id: int) -> list[str]:
    """``lrf-optuna worker`` on the tiny model; ``inputs`` = (model, data, cache_dir)."""
    model, data, cache = inputs
    return cli(
        "worker", "--model", str(model), "--data", str(data), "--calibration", "32",
        "--cache-dir", str(cache), "--storage", storage, "--study", study,
        "--trials", str(trials), "--worker-id", str(worker_id),
    )  # fmt: skip


def start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``command`` in ``log``'s directory, its output in ``log``."""
    with log.open("w") as stream:
        return subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, env=child_env(**env), cwd=log.parent
        )


def finish(processes: list[subprocess.Popen], logs: list[Path], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    for process, log in zip(processes, logs):
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"worker timed out; log:\n{log.read_text()[-3000:]}") from None
        assert code == 0, f"worker exited with {code}; log:\n{log.read_text()[-3000:]}"


def wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert process.poll() is None, f"process ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def _hanging_worker(args: argparse.Namespace) -> None:
    import keras

    import lrf_optuna as lo
    from lrf_optuna.search import _worker as worker

    build, calls = worker.objective_for, 0

    def objective_for(*a, **k):
        objective = build(*a, **k)

        def hanging(trial):
            nonlocal calls
            calls += 1
            values = objective(trial)  # the trial has its params, then never ends
            if calls > args.hang_after:
                print(HANG_MARK, trial.number, flush=True)
                time.sleep(600)
            return values

        hanging.space = objective.space
        return hanging

    worker.objective_for = objective_for
    lo.run_worker(
        keras.models.load_model(args.model),
        np.load(args.data),
        storage=args.storage,
        study_name=args.study,
        n_trials=args.n_trials,
        worker_id=args.worker_id,
        cache_dir=args.cache_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--storage", "--study", "--model", "--data", "--cache-dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--n-trials", type=int, required=True)
    parser.add_argument("--worker-id", type=int, default=99)
    parser.add_argument("--hang-after", type=int, default=2)
    _hanging_worker(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
