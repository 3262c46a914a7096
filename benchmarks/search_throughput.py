"""Search throughput: what the objective costs next to Optuna's own bookkeeping.

For one model, one sampler (NSGA-II, same seed and population) and one storage, it
times ``study.optimize`` with the real objective (layerwise proxy) and with a trivial
objective that suggests the same parameters (``objective.space.suggest``) and returns
constants; the ratio real/trivial of trials per second says how much of the search
the objective takes. Storages: in memory, and SQLite (``lo.open_storage``, a fresh
file per run). It also times ``objective.evaluate(plan)`` alone for the layerwise
proxy (target: <= 2 ms on ResNet50) and the model proxy, and the profile that the
layerwise proxy needs (computed once into a temporary cache).

Full mode (default) uses keras.applications.ResNet50(weights=None, 64x64x3, 10
classes); ``--quick`` uses a tiny CNN and few trials (a smoke test, < 60 s).

    python benchmarks/search_throughput.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import optuna

import lrf_optuna as lo
from lrf_optuna.study import SamplerSettings, open_study

TARGET_MS = 2.0


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    trials: int
    population: int
    layerwise_plans: int
    model_plans: int
    samples: int
    ranks_per_method: int


FULL = Mode("full", trials=300, population=50, layerwise_plans=2000, model_plans=4, samples=32, ranks_per_method=8)
QUICK = Mode("quick", trials=30, population=10, layerwise_plans=200, model_plans=3, samples=16, ranks_per_method=3)


def tiny_cnn() -> keras.Model:
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, activation="relu", name="c1")(inputs)
    x = layers.Conv2D(32, 3, strides=2, activation="relu", name="c2")(x)
    x = layers.Dense(64, activation="relu", name="d1")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(10, name="d2")(x), name="tiny_cnn")


def build_model(mode: Mode) -> tuple[keras.Model, str]:
    keras.utils.set_random_seed(0)
    if mode is QUICK:
        return tiny_cnn(), "tiny CNN (16x16x3: 2 Conv2D + 2 Dense)"
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    return model, "ResNet50 (weights=None, 64x64x3, 10 classes)"


def timed(function: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def trivial_objective(space: lo.SearchSpace) -> Callable[[optuna.Trial], tuple[int, int, float]]:
    def objective(trial: optuna.Trial) -> tuple[int, int, float]:
        space.suggest(trial)
        return 1, 1, 1.0

    return objective


def throughput(objective: lo.Objective, mode: Mode, storage_kind: str, workdir: Path) -> list[tuple]:
    """(storage, objective, trials, seconds, trials/s) for the trivial then the real objective."""
    rows = []
    settings = SamplerSettings(name="nsga2", population_size=mode.population, seed=0)
    for label, function in (("trivial", trivial_objective(objective.space)), ("layerwise", objective)):
        if storage_kind == "sqlite":
            path = workdir / f"{label}.db"
            storage = lo.open_storage(f"sqlite:///{path}")
        else:
            storage = optuna.storages.InMemoryStorage()
        study = open_study(storage, f"throughput-{label}", settings, objective.space)
        _, seconds = timed(lambda: study.optimize(function, n_trials=mode.trials))  # noqa: B023
        done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        rows.append((storage_kind, label, done, seconds, done / seconds))
    return rows


def random_plans(space: lo.SearchSpace, count: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(study.ask()) for _ in range(count)]


def evaluate_times(objective: lo.Objective, plans: list[dict]) -> list[float]:
    """Milliseconds per ``objective.evaluate(plan)``."""
    times = []
    for plan in plans:
        _, seconds = timed(lambda: objective.evaluate(plan))  # noqa: B023
        times.append(1000 * seconds)
    return times


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers, *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _stats(label: str, times: list[float], target: str) -> list:
    return [label, len(times), statistics.mean(times), statistics.median(times), max(times), target]


def run(mode: Mode) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model, description = build_model(mode)
    data = np.random.default_rng(0).standard_normal((mode.samples, *model.inputs[0].shape[1:]))
    data = data.astype("float32")
    analysis = lo.analyze(model)
    profile_settings = lo.ProfileSettings(ranks_per_method=mode.ranks_per_method)
    report = [
        f"search throughput ({mode.name} mode), lrf_optuna {lo.__version__}, optuna {optuna.__version__}, "
        f"keras {keras.__version__} ({keras.backend.backend()}), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU(s)",
        f"model: {description}: {len(analysis.specs)} searchable layers, "
        f"{2 * len(analysis.specs)} parameters per trial, {analysis.cost.params:,} params, "
        f"{analysis.cost.macs:,} MACs",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="lrf-throughput-") as workdir:
        workdir = Path(workdir)
        profile, profile_seconds = timed(
            lambda: lo.profile_model(
                model, data, settings=profile_settings, cache_dir=workdir / "cache", show_progress=False
            )
        )
        methods = sorted(profile["method"].unique())
        report += [
            "profile (computed once, then cached)",
            table(
                ["samples", "methods", "ranks/method", "decompositions", "seconds", "ms/decomposition"],
                [
                    [
                        mode.samples,
                        ",".join(methods),
                        mode.ranks_per_method,
                        len(profile),
                        profile_seconds,
                        1000 * profile_seconds / len(profile),
                    ]
                ],
            ),
            "",
        ]
        objective, load_seconds = timed(
            lambda: lo.make_objective(
                model, data, profile_settings=profile_settings, cache_dir=workdir / "cache", show_progress=False
            )
        )
        rows = []
        for storage_kind in ("memory", "sqlite"):
            runs = throughput(objective, mode, storage_kind, workdir)
            trivial_rate = runs[0][4]
            rows += [[*r, r[4] / trivial_rate if r[1] != "trivial" else 1.0] for r in runs]
        report += [
            f"study.optimize: NSGA-II (population {mode.population}, seed 0, uniform crossover), "
            f"{mode.trials} trials per run, anchors included; trivial = same suggestions, constant values",
            table(["storage", "objective", "trials", "seconds", "trials/s", "real/trivial"], rows),
            "",
        ]

        plans = random_plans(objective.space, mode.layerwise_plans)
        evaluate_times(objective, plans[:20])  # warm the cost cache as a search would
        layerwise = evaluate_times(objective, plans)
        verdict = "OK" if statistics.median(layerwise) <= TARGET_MS else "over target"
        model_objective, model_setup = timed(
            lambda: lo.make_objective(
                model, data, proxy="model", profile_settings=profile_settings, show_progress=False
            )
        )
        model_plans = plans[: mode.model_plans]
        cold = evaluate_times(model_objective, model_plans)
        warm = evaluate_times(model_objective, model_plans)
        factorized = statistics.mean(len(p) for p in model_plans)
        report += [
            f"objective.evaluate(plan) on random plans (uniform over the space; model proxy plans "
            f"factorize {factorized:.0f} of {len(analysis.specs)} layers on average)",
            table(
                ["proxy", "plans", "mean ms", "median ms", "max ms", "target"],
                [
                    _stats("layerwise", layerwise, f"<= {TARGET_MS:g} ms: {verdict}"),
                    _stats("model, new kernels", cold, "reported"),
                    _stats("model, cached kernels", warm, "reported"),
                ],
            ),
            f"setup: layerwise objective from the cached profile {load_seconds:.2f} s; "
            f"model proxy (copy + reference outputs on {mode.samples} samples) {model_setup:.2f} s",
        ]
    return "\n".join(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, few trials: a smoke test")
    args = parser.parse_args(argv)
    print(run(QUICK if args.quick else FULL), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
