"""Shared compression study of one reference model, with the library's Python API.

profile -> NSGA-II search (SQLite under ``--dir``) -> Pareto knee -> materialize ->
fine-tune once -> record in the study -> report. Running a script again resumes its
study. ``--quick`` is the smoke test's mode: few trials, a small fine-tuning subset.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import optuna

import lrf_optuna as lo
from lrf_optuna.files._models import load_model_file
from lrf_optuna.results._compress import calibration_subset, compress_trial
from lrf_optuna.search._storage import artifact_dir_for
from lrf_optuna.search._study import complete_search_trials

STUDIES_DIR = Path(__file__).resolve().parent
MODELS_DIR = STUDIES_DIR / "models"
QUICK = {"trials": 20, "epochs": 1, "calibration": 32, "train_size": 1000, "test_size": 1000}

logger = logging.getLogger("studies")


def parse_args(name: str, *, trials: int, epochs: int, argv: list[str] | None = None) -> argparse.Namespace:
    """Command line shared by the study scripts; ``name`` is the reference model's stem."""
    parser = argparse.ArgumentParser(description=f"Compress studies/models/{name}.keras on Fashion-MNIST.")
    parser.add_argument("--trials", type=int, default=trials, help="search budget (default: %(default)s)")
    parser.add_argument(
        "--epochs", type=int, default=epochs, help="fine-tuning epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--calibration", type=int, default=256, help="calibration images (default: %(default)s)"
    )
    parser.add_argument("--proxy", choices=["layerwise", "model"], default="layerwise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=STUDIES_DIR, help="where the study, model and report go")
    parser.add_argument("--quick", action="store_true", help=f"smoke-test mode: {QUICK}")
    args = parser.parse_args(argv)
    args.name, args.train_size, args.test_size = name, None, None
    if args.quick:
        vars(args).update(QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return args


def _fashion_mnist(args: argparse.Namespace):
    (x_train, y_train), (x_test, y_test) = lo.data.fashion_mnist()
    return (x_train[: args.train_size], y_train[: args.train_size]), (
        x_test[: args.test_size],
        y_test[: args.test_size],
    )


def run(args: argparse.Namespace) -> dict:
    """Search (or resume), compress the knee, report; returns the summary written as JSON."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = load_model_file(MODELS_DIR / f"{args.name}.keras")
    train, test = _fashion_mnist(args)
    study_name = f"{args.name}-{args.proxy}"
    storage = f"sqlite:///{args.dir / study_name}.db"
    args.dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    study = lo.run_study(
        model, calibration_subset(train[0], args.calibration, seed=args.seed), storage=storage,
        study_name=study_name, n_trials=args.trials, seed=args.seed, proxy=args.proxy,
        cache_dir=args.dir / "cache",
    )  # fmt: skip
    search_seconds = time.perf_counter() - start
    trial = lo.select_trial(study)
    done = compress_trial(
        model, study, trial, train=train, test=test, epochs=args.epochs, seed=args.seed,
        output=args.dir / f"{study_name}-trial{trial.number}.keras", artifact_dir=artifact_dir_for(storage),
    )  # fmt: skip
    lo.results.write_report(
        study, args.dir / f"{study_name}-report", layers=[s.name for s in lo.model.compressible_layers(model)]
    )
    print(lo.results.summary_table(done.original_cost, done.cost, done.result))
    summary = {
        "model": args.name, "study": study_name, "trials": complete_search_trials(study), "trial": trial.number,
        "similarity": trial.values[2], "params": done.cost.params, "macs": done.cost.macs,
        "original_params": done.original_cost.params, "original_macs": done.original_cost.macs,
        "search_seconds": round(search_seconds, 1), "accuracy_original": done.result.accuracy_original,
        "accuracy_compressed": done.result.accuracy_compressed, "accuracy_finetuned": done.result.accuracy_finetuned,
        "finetune_seconds": round(done.result.seconds, 1), "model_file": str(done.path),
    }  # fmt: skip
    (args.dir / f"{study_name}-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
