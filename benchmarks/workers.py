"""Worker scaling: trials per second for 1, 2 and 4 worker processes sharing one study.

For each storage (a Journal file; PostgreSQL when ``--postgres URL`` or
``$LRF_OPTUNA_TEST_POSTGRES_URL`` is given) and each objective, a study is created
once (``run_study(n_trials=0)``: settings, anchors, profile cache) and N worker
processes (``lrf_optuna.search._worker``, the code behind ``lrf-optuna worker``) run it to the
budget. Objectives: ``layerwise`` (the real objective, layerwise proxy) and ``trivial``
(the same parameter suggestions, constant values), so the gap shows what the objective
costs next to the storage and the sampler. Throughput = COMPLETE trials / (last trial
end - first trial start): process start-up (importing TensorFlow) is not counted.

The model: a VGG-like CNN (6 convolutions, 2 dense layers, 16 search parameters) with
seeded weights, 64 random calibration inputs; NSGA-II, population 50, seed 0.

    python benchmarks/workers.py [--quick] [--postgres URL]

``--quick``: Journal only, 2 workers, 12 trials (a smoke test). ``surplus``: trials
PRUNED by the budget protocol (see ``lrf_optuna/search/_worker.py``), never counted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one BLAS thread per worker

import argparse
import dataclasses
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import harness
import keras
import numpy as np
import optuna

L = keras.layers
POSTGRES_ENV = "LRF_OPTUNA_TEST_POSTGRES_URL"
OBJECTIVES = ("layerwise", "trivial")


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    trials: int
    workers: tuple[int, ...]
    postgres: bool
    ranks_per_method: int


FULL = Mode("full", trials=150, workers=(1, 2, 4), postgres=True, ranks_per_method=8)
QUICK = Mode("quick", trials=12, workers=(2,), postgres=False, ranks_per_method=2)


def vgg_like(seed: int = 0) -> keras.Model:
    inputs = keras.Input((32, 32, 3), name="image")
    x = inputs
    for block, filters in enumerate((32, 64, 128)):
        for index in range(2):
            x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}{index}")(x)
        x = L.MaxPooling2D(name=f"pool{block}")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    model = keras.Model(inputs, L.Dense(10, name="fc2")(x), name="vgg_like")
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
        weight.assign((rng.standard_normal(shape) / np.sqrt(fan_in)).astype("float32"))
    return model


def prepare(directory: Path) -> tuple[Path, Path]:
    model_path, data_path = directory / "model.keras", directory / "calibration.npy"
    vgg_like().save(model_path)
    np.save(data_path, np.random.default_rng(1).standard_normal((64, 32, 32, 3)).astype("float32"))
    return model_path, data_path


def create(storage: str, study: str, directory: Path, mode: Mode) -> None:
    import lrf_optuna as lo

    model, x = keras.models.load_model(directory / "model.keras"), np.load(directory / "calibration.npy")
    lo.run_study(
        model, x, storage=storage, study_name=study, n_trials=0, show_progress=False,
        cache_dir=directory / "cache",
        profile_settings=lo.ProfileSettings(ranks_per_method=mode.ranks_per_method),
    )  # fmt: skip


def child(args: argparse.Namespace) -> None:
    """One worker process: the real objective, or the trivial one on the same space."""
    import lrf_optuna as lo
    from lrf_optuna.search._space import SearchSpace
    from lrf_optuna.search._study import SamplerSettings, load_existing_study, make_sampler
    from lrf_optuna.search._worker import optimize_shared, worker_seed

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directory = Path(args.dir)
    model, x = keras.models.load_model(directory / "model.keras"), np.load(directory / "calibration.npy")
    if args.objective == "layerwise":
        lo.run_worker(
            model, x, storage=args.storage, study_name=args.study, n_trials=args.trials,
            worker_id=args.worker_id, cache_dir=directory / "cache",
        )  # fmt: skip
        return
    space = SearchSpace.from_analysis(lo.analyze(model))
    study = load_existing_study(args.storage, args.study, space)
    study.sampler = make_sampler(SamplerSettings(seed=worker_seed(0, args.worker_id, 0)))

    def trivial(trial: optuna.Trial) -> tuple[int, int, float]:
        space.suggest(trial)
        return 1, 1, 1.0

    optimize_shared(study, trivial, n_trials=args.trials)


def run_config(storage: str, objective: str, workers: int, mode: Mode, directory: Path) -> dict:
    study = f"bench-{objective}-{workers}-{uuid.uuid4().hex[:6]}"
    create(storage, study, directory, mode)
    trials = mode.trials
    command = [sys.executable, __file__, "--child", "--dir", str(directory), "--storage", storage,
               "--study", study, "--trials", str(trials), "--objective", objective]  # fmt: skip
    processes = [
        subprocess.Popen([*command, "--worker-id", str(i)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(workers)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=1800)
        if process.returncode:
            raise RuntimeError(f"worker failed ({process.returncode}):\n{errors.decode()[-3000:]}")
    from lrf_optuna.search._storage import open_storage

    loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
    complete = loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    seconds = (
        max(t.datetime_complete for t in complete) - min(t.datetime_start for t in complete)
    ).total_seconds()
    pruned = loaded.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    if storage.startswith("postgresql"):
        optuna.delete_study(study_name=study, storage=open_storage(storage))
    return {"trials": len(complete), "pruned": len(pruned), "seconds": seconds}


COLUMNS = (("storage", "<11"), ("objective", "<10"), ("workers", ">7"), ("trials", ">6"), ("surplus", ">7"),
           ("seconds", ">8.2f"), ("trials/s", ">9.2f"), ("speedup", ">8"))  # fmt: skip


def table(rows: list[dict]) -> str:
    """Speedup: trials/s over the same storage and objective's first (fewest workers) row."""
    cells, base = [], {}
    for row in rows:
        rate = row["trials"] / max(row["seconds"], 1e-9)
        key = (row["storage"], row["objective"])
        base.setdefault(key, rate)
        cells.append([row["storage"], row["objective"], row["workers"], row["trials"], row["pruned"],
                      row["seconds"], rate, f"{rate / base[key]:.2f}x"])  # fmt: skip
    return harness.fixed_width(COLUMNS, cells)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, quick_help="Journal only, 2 workers, 12 trials")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV), help=f"default: ${POSTGRES_ENV}")
    for name in ("--child", "--dir", "--storage", "--study", "--trials", "--objective", "--worker-id"):
        parser.add_argument(name, action="store_true" if name == "--child" else None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.trials, args.worker_id = int(args.trials), int(args.worker_id)
        child(args)
        return 0
    mode = QUICK if args.quick else FULL
    harness.start(progress=False)
    lines = [
        f"worker scaling ({mode.name} mode): {mode.trials} trials per study, NSGA-II population 50",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"optuna {optuna.__version__}",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        prepare(directory)
        storages = [("journal", f"journal:///{directory / 'bench.log'}")]
        if mode.postgres and args.postgres:
            storages.append(("postgresql", args.postgres))
        elif mode.postgres:
            lines.append(f"postgresql: skipped (no --postgres URL and ${POSTGRES_ENV} unset)")
        for name, base_url in storages:
            for objective in OBJECTIVES:
                for workers in mode.workers:
                    started = time.perf_counter()
                    url = base_url.replace("bench.log", f"{objective}-{workers}.log")  # a file per study
                    row = run_config(url, objective, workers, mode, directory)
                    rows.append({"storage": name, "objective": objective, "workers": workers, **row})
                    print(f"  {name} {objective} x{workers}: {time.perf_counter() - started:.1f} s wall",
                          file=sys.stderr, flush=True)  # fmt: skip
    harness.report("\n".join([*lines, table(rows)]), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
