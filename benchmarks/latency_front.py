"""The evidence mode of benchmarks/latency.py (``--front``): predicted vs measured latency (issue 17).

For each model and runtime (TFLite: batch 1, 1 thread; Keras: batch 64, TensorFlow's threads),
a seeded (params, latency, similarity) search with that runtime's latency table; then plans
spread over its Pareto front, each materialized as searched (data-aware on the calibration
images, refit) and MEASURED with ``lo.measure_latency`` on the same runtime, beside the table's
prediction, with the Spearman rank correlation of the two; then the knee (``lo.select_trial``):
measured latency against the original's, params and FLOPs removed, and its test accuracy
before and after one fine-tuning run (``lo.finetune``'s defaults, distilled from the original).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import optuna
from harness import fixed_width
from scipy.stats import spearmanr

import lrf_optuna as lo
from lrf_optuna.results._compress import materialize_as_searched
from lrf_optuna.runtime._latency import calls_per_sample, model_call, time_calls
from lrf_optuna.runtime._latency_table import MIN_SAMPLE_MS, LatencySettings
from lrf_optuna.search._objective import trial_metrics

# runtime -> (batch size, threads; None: TensorFlow's own pool), as issue 17 states the goals
RUNTIMES = {"tflite": (1, 1), "keras": (64, None)}
KNEE_GOALS = {"tflite": 0.5, "keras": 0.8}  # measured knee / original latency, at most
SPEARMAN_GOAL = 0.9


@dataclasses.dataclass(frozen=True)
class FrontSettings:
    """Budgets of one (model, runtime) search and of its measurements."""

    trials: int = 300
    population: int = 50
    plans: int = 24
    epochs: int = 1
    seed: int = 0
    warmup: int = 5
    runs: int = 50
    rounds: int = 3  # alternating measurements of the knee and the original
    front_runs: int = 200  # timed samples of each front plan, in `passes` round-robin passes
    passes: int = 10
    table_runs: int = 20
    table_ranks: int = 8
    keras_batch: int = 64
    profile: lo.ProfileSettings = dataclasses.field(default_factory=lo.ProfileSettings)
    hull_seeds: bool = True


QUICK = FrontSettings(
    trials=24, population=8, plans=6, warmup=1, runs=5, table_runs=3, table_ranks=2, keras_batch=8,
    front_runs=4, passes=2, profile=lo.ProfileSettings(max_samples=16, ranks_per_method=3), hull_seeds=False,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Data:
    """Calibration images (the search's profile and the data-aware factors), fine-tuning and test sets."""

    calibration: np.ndarray
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def batch_threads(runtime: str, settings: FrontSettings) -> tuple[int, int | None]:
    batch, threads = RUNTIMES[runtime]
    return (settings.keras_batch if runtime == "keras" else batch), threads


def measured_ms(model: keras.Model, runtime: str, settings: FrontSettings) -> float:
    batch, threads = batch_threads(runtime, settings)
    return lo.measure_latency(
        model, runtime=runtime, batch_size=batch, threads=threads, warmup=settings.warmup, runs=settings.runs
    ).median_ms


def search(model, calibration, runtime: str, settings: FrontSettings, cache_dir) -> optuna.Study:
    batch, threads = batch_threads(runtime, settings)
    latency = LatencySettings(
        runtime=runtime, batch_size=batch, threads=threads, runs=settings.table_runs,
        ranks_per_method=settings.table_ranks,
    )  # fmt: skip
    return lo.run_study(
        model, calibration, storage=optuna.storages.InMemoryStorage(), study_name=f"{model.name}-{runtime}",
        n_trials=settings.trials, objectives=("params", "latency", "similarity"), latency_settings=latency,
        profile_settings=settings.profile, population_size=settings.population, seed=settings.seed,
        cache_dir=cache_dir, show_progress=False, hull_seeds=settings.hull_seeds,
    )  # fmt: skip


def front_rows(
    model, analysis, study, data: Data, runtime: str, settings: FrontSettings
) -> tuple[list, float]:
    """Up to ``settings.plans`` plans spread over the front (the unfactorized plan left out), with
    the original, timed round robin (``round_robin_ms``): ``measured`` is each plan's median over
    the passes; ``even``/``odd``, its median over every other pass, give the retest ceiling.
    Also the original's median over the passes."""
    names = study.metric_names
    front = [t for t in lo.results.pareto_trials(study) if lo.plan_from_trial(analysis, t, study=study)]
    rows, models = [], [model]
    for trial in lo.results.spread_trials(front, settings.plans, metric_names=names):
        plan = lo.plan_from_trial(analysis, trial, study=study)
        models.append(materialize_as_searched(
            model, plan, study, data.train[0], calibration=data.calibration, seed=settings.seed,
            analysis=analysis,
        ))  # fmt: skip
        metrics, cost = trial_metrics(trial, names), analysis.plan_cost(plan)
        rows.append(
            {"trial": trial.number, "layers": len(plan), "params": cost.params, "mflops": 2 * cost.macs / 1e6,
             "similarity": metrics["similarity"], "predicted": metrics["latency"]}
        )  # fmt: skip
    passes = round_robin_ms(models, runtime, settings)
    for row, column in zip(rows, passes[:, 1:].T, strict=True):
        row.update(
            measured=float(np.median(column)), even=np.median(column[::2]), odd=np.median(column[1::2])
        )
    logging.info("%s / %s: %d front plans measured (front of %d)", model.name, runtime, len(rows), len(front))
    return rows, float(np.median(passes[:, 0]))


def round_robin_ms(models: list[keras.Model], runtime: str, settings: FrontSettings) -> np.ndarray:
    """``[pass, model]``: median ms of ``front_runs / passes`` samples of each model per pass; the
    passes go over all models in alternating order, so drift and bursts of load spread over all.
    A sample lasts at least ``MIN_SAMPLE_MS`` (the mean of back-to-back calls), like the table's."""
    batch, threads = batch_threads(runtime, settings)
    calls = [model_call(m, runtime=runtime, batch_size=batch, threads=threads)[0] for m in models]
    for call in calls:
        time_calls(call, warmup=settings.warmup, runs=0)
    repeats = [calls_per_sample(call, MIN_SAMPLE_MS) for call in calls]
    block = max(1, settings.front_runs // settings.passes)
    medians = np.empty((settings.passes, len(calls)))
    for index in range(settings.passes):
        order = range(len(calls)) if index % 2 == 0 else reversed(range(len(calls)))
        for position in order:
            samples = time_calls(calls[position], warmup=0, runs=block, repeat=repeats[position])
            medians[index, position] = np.median(samples)
    return medians


def spearman(rows: list[dict], first: str = "predicted", second: str = "measured") -> float:
    """Rank correlation of two columns (predicted and measured latency); NaN with fewer than 3 plans."""
    if len(rows) < 3:
        return math.nan
    return float(spearmanr([r[first] for r in rows], [r[second] for r in rows]).statistic)


def paired_ms(original, compressed, runtime: str, settings: FrontSettings) -> tuple[float, float]:
    """Medians of ``settings.rounds`` alternating measurements of each model, so that a burst of
    load during one measurement cannot decide the ratio alone."""
    times = [
        (measured_ms(original, runtime, settings), measured_ms(compressed, runtime, settings))
        for _ in range(settings.rounds)
    ]
    return float(np.median([t[0] for t in times])), float(np.median([t[1] for t in times]))


def knee_row(model, analysis, study, data: Data, runtime: str, settings: FrontSettings) -> dict:
    """The knee measured against the original, then fine-tuned once (in place)."""
    trial = lo.select_trial(study)
    plan = lo.plan_from_trial(analysis, trial, study=study)
    compressed = materialize_as_searched(
        model, plan, study, data.train[0], calibration=data.calibration, seed=settings.seed, analysis=analysis
    )
    original, measured = paired_ms(model, compressed, runtime, settings)
    result = lo.finetune(
        compressed, data.train, validation_data=data.test, epochs=settings.epochs, original=model,
        seed=settings.seed,
    )  # fmt: skip
    cost, base = analysis.plan_cost(plan), analysis.cost
    return {
        "trial": trial.number, "layers": len(plan), "params_removed": 100 * (1 - cost.params / base.params),
        "flops_removed": 100 * (1 - cost.macs / base.macs), "measured": measured, "original": original,
        "ratio": measured / original, "acc_original": result.accuracy_original,
        "acc_before": result.accuracy_compressed, "acc_after": result.accuracy_finetuned,
    }  # fmt: skip


def run_model(name: str, model: keras.Model, data: Data, runtimes, settings: FrontSettings, cache_dir):
    """``{runtime: {"rows": front rows, "knee": knee row, "original": ms, "search_s": seconds}}``."""
    analysis = lo.analyze(model)
    results = {}
    for runtime in runtimes:
        start = time.perf_counter()
        study = search(model, data.calibration, runtime, settings, cache_dir)
        searched = time.perf_counter() - start
        rows, original = front_rows(model, analysis, study, data, runtime, settings)
        knee = knee_row(model, analysis, study, data, runtime, settings)
        results[runtime] = {"rows": rows, "knee": knee, "original": original, "search_s": searched}
        logging.info("%s / %s done in %.0f s", name, runtime, time.perf_counter() - start)
    return results


def runtime_label(runtime: str, settings: FrontSettings) -> str:
    batch, threads = batch_threads(runtime, settings)
    return f"{runtime} b{batch}" + (f" t{threads}" if threads else "")


def plan_table(name: str, runtime: str, result: dict, settings: FrontSettings) -> str:
    columns = [("model", "<16"), ("runtime", "<13"), ("trial", ">6d"), ("layers", ">6d"), ("params", ">9d"),
               ("MFLOPs", ">8.2f"), ("similarity", ">10.4f"), ("predicted ms", ">12.4f"),
               ("measured ms", ">11.4f"), ("pred/meas", ">9.2f")]  # fmt: skip
    label = runtime_label(runtime, settings)
    original = [[name, label, "-", 0, "-", "-", "-", "-", result["original"], "-"]]
    rows = [
        [name, label, r["trial"], r["layers"], r["params"], r["mflops"], r["similarity"], r["predicted"],
         r["measured"], r["predicted"] / r["measured"]]
        for r in sorted(result["rows"], key=lambda r: r["predicted"])
    ]  # fmt: skip
    return fixed_width(columns, original + rows)


def summary_table(results: dict[str, dict], settings: FrontSettings) -> str:
    columns = [("model", "<16"), ("runtime", "<13"), ("plans", ">5d"), ("spearman", ">8.3f"),
               ("goal >= 0.9", ">12"), ("retest", ">7.3f"), ("median |pred/meas-1|", ">20.3f"),
               ("search s", ">8.0f")]  # fmt: skip
    rows = []
    for name, by_runtime in results.items():
        for runtime, result in by_runtime.items():
            rho, plans = spearman(result["rows"]), result["rows"]
            error = np.median([abs(r["predicted"] / r["measured"] - 1) for r in plans]) if plans else math.nan
            met = "met" if rho >= SPEARMAN_GOAL else "NOT met"
            retest = spearman(plans, "even", "odd")
            rows.append(
                [
                    name,
                    runtime_label(runtime, settings),
                    len(plans),
                    rho,
                    met,
                    retest,
                    error,
                    result["search_s"],
                ]
            )
    return fixed_width(columns, rows)


def knee_table(results: dict[str, dict], settings: FrontSettings) -> str:
    columns = [("model", "<16"), ("runtime", "<13"), ("trial", ">6d"), ("params -%", ">9.1f"),
               ("FLOPs -%", ">8.1f"), ("knee ms", ">9.4f"), ("orig ms", ">9.4f"), ("x", ">6.2f"),
               ("goal", ">18"), ("fastest x", ">9.2f"), ("acc orig", ">8.4f"), ("acc knee", ">8.4f"), ("acc FT", ">8.4f")]  # fmt: skip
    rows = []
    for name, by_runtime in results.items():
        for runtime, result in by_runtime.items():
            k, goal = result["knee"], KNEE_GOALS[runtime]
            met = f"<= {goal}x: " + ("met" if k["ratio"] <= goal else "NOT met")
            fastest = min((r["measured"] for r in result["rows"]), default=math.nan) / result["original"]
            rows.append([name, runtime_label(runtime, settings), k["trial"], k["params_removed"],
                         k["flops_removed"], k["measured"], k["original"], k["ratio"], met, fastest,
                         k["acc_original"], k["acc_before"], k["acc_after"]])  # fmt: skip
    return fixed_width(columns, rows)


def report(results: dict[str, dict], settings: FrontSettings, data: Data) -> str:
    plans = "\n\n".join(
        plan_table(name, runtime, result, settings)
        for name, by_runtime in results.items()
        for runtime, result in by_runtime.items()
    )
    return (
        f"search: NSGA-II (params, latency, similarity), {settings.trials} trials, population "
        f"{settings.population}, seed {settings.seed}, calibration {len(data.calibration)} training images; "
        f"latency table: {settings.table_runs} samples per timing, {settings.table_ranks} ranks per method\n"
        f"measured: {settings.front_runs} timed samples (each >= {MIN_SAMPLE_MS:g} ms of back-to-back calls) of "
        f"each front plan and the original ({settings.warmup} untimed calls first) in {settings.passes} "
        "round-robin passes, median of the pass medians; plans "
        f"materialized as searched (data-aware, refit); up to {settings.plans} plans spread over each front "
        "(the unfactorized plan left out)\n"
        f"knee: lo.select_trial, measured alternately with the original {settings.rounds} times (medians; "
        "'orig ms' here, the round robin's in the plan rows); 'fastest x': the fastest front plan / the "
        "original, both from the round robin; fine-tuning: lo.finetune defaults (distilled), "
        f"{settings.epochs} epoch(s) "
        f"on {len(data.train[0])} seeded training images, accuracy on {len(data.test[0])} test images\n\n"
        "predicted vs measured latency per front plan\n" + plans + "\n\n"
        "rank correlation of predicted with measured latency (retest: of the medians over the even and "
        "over the odd passes, each half the runs: how reproducible the measured order itself is)\n"
        + summary_table(results, settings)
        + "\n\n"
        "the knee of each search, measured\n" + knee_table(results, settings)
    )
