"""The evidence mode of benchmarks/latency.py (``--front``): predicted vs measured latency (issue 17).

For each model and runtime (TFLite: batch 1, 1 thread; Keras: batch 64, TensorFlow's threads),
a seeded (params, latency, similarity) search with that runtime's latency table; then plans
spread over its Pareto front and its knee (``lo.select_trial``), each materialized as searched
(data-aware on the calibration images, refit) and MEASURED in one round robin with the original
and its free stand-in (``stand_in.py``) on the same runtime, beside the table's prediction, with
the Spearman rank correlation of the two; then the knee against the original: params and FLOPs
removed, its test accuracy before and after one fine-tuning run (``lo.finetune``'s defaults,
distilled from the original), and two floors beside it: the lowest latency the table predicts
for any plan, and the stand-in's measured one (below which no factorization can go).
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
from stand_in import with_free_stand_ins

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

    trials: int = 1000  # lo.run_study's default: the search a user runs (300 is short of converged)
    population: int = 50
    plans: int = 24
    epochs: int = 1
    seed: int = 0
    warmup: int = 5
    front_runs: int = 200  # timed samples of each front plan, in `passes` round-robin passes
    passes: int = 10
    table_runs: int = 20
    table_ranks: int = 8
    keras_batch: int = 64
    profile: lo.ProfileSettings = dataclasses.field(default_factory=lo.ProfileSettings)
    hull_seeds: bool = True


QUICK = FrontSettings(
    trials=24, population=8, plans=6, warmup=1, table_runs=3, table_ranks=2, keras_batch=8,
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


def search(model, calibration, runtime: str, settings: FrontSettings, cache_dir):
    """The seeded search and its latency table (``lo.search.make_objective``'s: cached, not measured again)."""
    batch, threads = batch_threads(runtime, settings)
    latency = LatencySettings(
        runtime=runtime, batch_size=batch, threads=threads, runs=settings.table_runs,
        ranks_per_method=settings.table_ranks,
    )  # fmt: skip
    search_settings = lo.SearchSettings(
        objectives=("params", "latency", "similarity"), latency_settings=latency,
        profile_settings=settings.profile, population_size=settings.population, seed=settings.seed,
    )  # fmt: skip
    study = lo.run_study(
        model, calibration, storage=optuna.storages.InMemoryStorage(), study_name=f"{model.name}-{runtime}",
        n_trials=settings.trials, settings=search_settings, cache_dir=cache_dir, show_progress=False,
        hull_seeds=settings.hull_seeds,
    )  # fmt: skip
    objective = lo.search.make_objective(
        model, calibration, settings=search_settings, cache_dir=cache_dir, show_progress=False
    )
    return study, objective.latency


def table_floor(table) -> float:
    """The lowest latency ``table`` predicts for any plan, / its base: each layer at its most
    negative delta (the lowest grid rank of its cheapest method; deltas rise with rank), or
    left alone when every delta is positive."""
    best: dict[str, tuple[float, str, int]] = {}
    for (layer, method), (ranks, _) in table.deltas.items():
        delta = table.delta(layer, method, ranks[0])
        if delta < best.get(layer, (0.0,))[0]:
            best[layer] = (delta, method, ranks[0])
    plan = {layer: (method, rank) for layer, (_, method, rank) in best.items()}
    return table.predict(plan) / table.base_ms


def front_rows(model, analysis, study, data: Data, runtime: str, settings: FrontSettings) -> dict:
    """Up to ``settings.plans`` plans spread over the front (the unfactorized plan left out) and
    the knee (``lo.select_trial``; an extra row unless it is one of them), timed round robin with
    the original and its free stand-in (``round_robin_ms``, ``stand_in.py``): ``measured`` is each
    plan's median over the passes; ``even``/``odd``, its median over every other pass, give the
    retest ceiling. ``{"rows", "original", "stand_in" (ms), "knee_model"}``."""
    names = study.metric_names
    front = [t for t in lo.results.pareto_trials(study) if lo.plan_from_trial(analysis, t, study=study)]
    knee = lo.select_trial(study)
    trials = lo.results.spread_trials(front, settings.plans, metric_names=names)
    trials += [knee] if knee.number not in {t.number for t in trials} else []
    rows, models = [], [model, with_free_stand_ins(model)]
    for trial in trials:
        plan = lo.plan_from_trial(analysis, trial, study=study)
        models.append(materialize_as_searched(
            model, plan, study, data.train[0], calibration=data.calibration, seed=settings.seed,
            analysis=analysis,
        ))  # fmt: skip
        metrics, cost = trial_metrics(trial, names), analysis.plan_cost(plan)
        rows.append(
            {"trial": trial.number, "layers": len(plan), "params": cost.params, "mflops": 2 * cost.macs / 1e6,
             "similarity": metrics["similarity"], "predicted": metrics["latency"],
             "knee": trial.number == knee.number}
        )  # fmt: skip
    passes = round_robin_ms(models, runtime, settings)
    for row, column in zip(rows, passes[:, 2:].T, strict=True):
        row.update(
            measured=float(np.median(column)), even=np.median(column[::2]), odd=np.median(column[1::2])
        )
    logging.info("%s / %s: %d front plans measured (front of %d)", model.name, runtime, len(rows), len(front))
    original, stand_in = (float(np.median(passes[:, index])) for index in (0, 1))
    knee_model = models[2 + [r["knee"] for r in rows].index(True)]
    return {"rows": rows, "original": original, "stand_in": stand_in, "knee_model": knee_model}


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


def knee_row(model, analysis, data: Data, front: dict, settings: FrontSettings) -> dict:
    """The knee (``front_rows``' row and model: measured in its round robin), then fine-tuned once
    (in place, after the timing)."""
    row = next(r for r in front["rows"] if r["knee"])
    result = lo.finetune(
        front["knee_model"], data.train, validation_data=data.test, epochs=settings.epochs, original=model,
        seed=settings.seed,
    )  # fmt: skip
    base = analysis.cost
    return {
        "trial": row["trial"], "layers": row["layers"], "params_removed": 100 * (1 - row["params"] / base.params),
        "flops_removed": 100 * (1 - row["mflops"] * 1e6 / (2 * base.macs)), "measured": row["measured"],
        "original": front["original"], "ratio": row["measured"] / front["original"],
        "acc_original": result.accuracy_original, "acc_before": result.accuracy_compressed,
        "acc_after": result.accuracy_finetuned,
    }  # fmt: skip


def run_model(name: str, model: keras.Model, data: Data, runtimes, settings: FrontSettings, cache_dir):
    """``{runtime: {"rows": front rows, "knee": knee row, "original": ms, "search_s": seconds}}``."""
    analysis = lo.analyze(model)
    results = {}
    for runtime in runtimes:
        start = time.perf_counter()
        study, table = search(model, data.calibration, runtime, settings, cache_dir)
        searched = time.perf_counter() - start
        front = front_rows(model, analysis, study, data, runtime, settings)
        knee = knee_row(model, analysis, data, front, settings)
        results[runtime] = {
            "rows": front["rows"], "knee": knee, "original": front["original"], "search_s": searched,
            "stand_in": front["stand_in"], "table_floor": table_floor(table),
        }  # fmt: skip
        logging.info("%s / %s done in %.0f s", name, runtime, time.perf_counter() - start)
    return results


def runtime_label(runtime: str, settings: FrontSettings) -> str:
    batch, threads = batch_threads(runtime, settings)
    return f"{runtime} b{batch}" + (f" t{threads}" if threads else "")


def plan_table(name: str, runtime: str, result: dict, settings: FrontSettings) -> str:
    columns = [("model", "<16"), ("runtime", "<13"), ("trial", ">6d"), ("layers", ">6d"), ("params", ">9d"),
               ("MFLOPs", ">8.2f"), ("similarity", ">10.4f"), ("predicted ms", ">12.4f"),
               ("measured ms", ">11.4f"), ("pred/meas", ">9.2f"), ("knee", ">4")]  # fmt: skip
    label = runtime_label(runtime, settings)
    original = [[name, label, "-", 0, "-", "-", "-", "-", result["original"], "-", "-"]]
    rows = [
        [name, label, r["trial"], r["layers"], r["params"], r["mflops"], r["similarity"], r["predicted"],
         r["measured"], r["predicted"] / r["measured"], "*" if r["knee"] else "-"]
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
               ("goal", ">18"), ("fastest x", ">9.2f"), ("floor x", ">7.2f"),
               ("stand-in x", ">10.2f"), ("acc orig", ">8.4f"), ("acc knee", ">8.4f"), ("acc FT", ">8.4f")]  # fmt: skip
    rows = []
    for name, by_runtime in results.items():
        for runtime, result in by_runtime.items():
            k, goal = result["knee"], KNEE_GOALS[runtime]
            met = f"<= {goal}x: " + ("met" if k["ratio"] <= goal else "NOT met")
            fastest = min((r["measured"] for r in result["rows"]), default=math.nan) / result["original"]
            rows.append([name, runtime_label(runtime, settings), k["trial"], k["params_removed"],
                         k["flops_removed"], k["measured"], k["original"], k["ratio"], met, fastest,
                         result["table_floor"], result["stand_in"] / result["original"],
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
        f"each front plan, the original and its free stand-in ({settings.warmup} untimed calls first) in "
        f"{settings.passes} round-robin passes, median of the pass medians; plans materialized as searched "
        f"(data-aware, refit); up to {settings.plans} plans spread over each front (the unfactorized plan "
        "left out), and the knee ('*') if it is not one of them\n"
        "knee: lo.select_trial, timed in that round robin ('orig ms': the original's there); 'fastest x': "
        "the fastest measured front plan / the original; 'floor x': the lowest latency the search's table "
        "predicts for any plan (every layer at its most negative delta) / the table's base; 'stand-in x': "
        "the model with every compressible layer replaced by a free stand-in (stand_in.py: its first input "
        "channel through a 1x1 conv: no more ops, nor work, than any factorized chain) / the original, "
        "measured: a floor for every factorization; fine-tuning: lo.finetune defaults (distilled), "
        f"{settings.epochs} epoch(s) "
        f"on {len(data.train[0])} seeded training images, accuracy on {len(data.test[0])} test images\n\n"
        "predicted vs measured latency per front plan\n" + plans + "\n\n"
        "rank correlation of predicted with measured latency (retest: of the medians over the even and "
        "over the odd passes, each half the runs: how reproducible the measured order itself is)\n"
        + summary_table(results, settings)
        + "\n\n"
        "the knee of each search, measured\n" + knee_table(results, settings)
    )
