"""Measured latency of compressed models vs their originals, in Keras and TFLite (issue 17).

For each reference model (studies/models/*.keras) the original and fixed compressed plans
(every layer the method makes cheaper, at a quarter of its full rank: Tucker-2 convs, CP
convs, SVD convs; dense layers SVD in each) are materialized (weights do not change timing,
so nothing is fine-tuned) and timed with ``lo.measure_latency``: Keras ``predict_on_batch``
at batch 1 and 64 (TensorFlow's threads), the TFLite interpreter at batch 1 on one thread;
median milliseconds over warm runs, and each compressed/original ratio. ``--knee STUDY`` adds
the Pareto knee of an existing study of ``--knee-model`` (``make demo``'s: ``--knee demo``),
and the same knee with its depthwise stages built as the grouped convs of before issue 17's
layer fix (``grouped_stages.py``).

``--front`` (the evidence of issue 17, ``latency_front.py``): per reference model and runtime
(TFLite batch 1 on 1 thread, Keras batch 64), a seeded (params, latency, similarity) search,
predicted vs measured latency over plans spread on its Pareto front (Spearman goal >= 0.9),
and its knee measured against the original (goals <= 0.5x TFLite, <= 0.8x Keras) with its
accuracy before and after one fine-tuning run, beside two floors (the lowest latency the
table predicts, and the measured free stand-in of ``stand_in.py``); the full run writes
benchmarks/results/latency_front.txt.

Timings need a quiet machine: run the full mode alone, never beside other jobs.

    python benchmarks/latency.py                     # full: every reference model
    python benchmarks/latency.py --knee demo         # plus make demo's knee
    python benchmarks/latency.py --quick             # smoke test: a tiny model, a tiny search
    python benchmarks/latency.py --front             # evidence: front plans and knees, all models
    python benchmarks/latency.py --front --quick     # its smoke test (tiny model, tiny budgets)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

import harness
import keras
import latency_front
import numpy as np
import optuna
from grouped_stages import with_grouped_stages

import lrf_optuna as lo
from lrf_optuna.files._models import load_model_file
from lrf_optuna.results._compress import calibration_subset
from lrf_optuna.runtime._tflite import convert_tflite
from lrf_optuna.search._storage import default_storage_url, open_storage

FRONT_RESULTS = harness.RESULTS / "latency_front.txt"
CONV_METHODS = ("tucker2", "cp", "svd")
RANK_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class Settings:
    keras_batches: tuple[int, ...] = (1, 64)
    warmup: int = 5
    runs: int = 50


QUICK = Settings(keras_batches=(1, 8), warmup=1, runs=5)


def quarter_plan(model: keras.Model, conv_method: str) -> dict[str, tuple[str, int]]:
    """``conv_method`` on every conv it makes cheaper, SVD on every dense one, rank max_rank / 4."""
    plan = {}
    for spec in lo.model.compressible_layers(model):
        method = "svd" if spec.kind == "dense" else conv_method
        rank = max(1, round(spec.max_rank * RANK_FRACTION))
        if method in spec.methods and 0 < rank <= spec.useful_ranks.get(method, 0):
            plan[spec.name] = (method, rank)
    return plan


def knee_plan(model: keras.Model, study: optuna.Study) -> dict[str, tuple[str, int]]:
    """The plan of the study's Pareto knee (what ``lrf-optuna finetune`` picks by default)."""
    return lo.plan_from_trial(model, lo.select_trial(study), study=study)


def measure(model: keras.Model, settings: Settings) -> list[float]:
    """[params, MFLOPs, .tflite KB, Keras ms per batch size..., TFLite ms]."""
    cost = lo.model_cost(model)
    timing = {"warmup": settings.warmup, "runs": settings.runs}
    keras_ms = [
        lo.measure_latency(model, runtime="keras", batch_size=batch, **timing).median_ms
        for batch in settings.keras_batches
    ]
    tflite_ms = lo.measure_latency(model, runtime="tflite", batch_size=1, threads=1, **timing).median_ms
    size = len(convert_tflite(model)) / 1e3
    return [cost.params, 2 * cost.macs / 1e6, size, *keras_ms, tflite_ms]


def rows_for(
    name: str,
    model: keras.Model,
    plans: dict[str, dict],
    settings: Settings,
    *,
    before_fix: tuple[str, ...] = (),
) -> list[list]:
    """The original and each plan materialized; for the labels in ``before_fix``, also the same
    model with its depthwise stages built as the grouped convs of before issue 17's fix."""
    original = measure(model, settings)
    rows = [[name, "original", *_with_ratios(original, original)]]
    for label, plan in plans.items():
        if not plan:
            logging.info("%s: %s leaves every layer as it is; skipped", name, label)
            continue
        compressed = lo.materialize(model, plan, seed=0)
        rows.append(
            [name, f"{label} ({len(plan)} layers)", *_with_ratios(measure(compressed, settings), original)]
        )
        if label in before_fix:
            grouped = with_grouped_stages(compressed, model)
            rows.append(
                [name, f"{label}, pre-fix layers", *_with_ratios(measure(grouped, settings), original)]
            )
    return rows


def _with_ratios(values: list[float], original: list[float]) -> list[float]:
    params, mflops, size, *timed = values
    return [int(params), mflops, size, *(v for t, o in zip(timed, original[3:]) for v in (t, t / o))]


def table(rows: list[list], settings: Settings) -> str:
    columns = [
        harness.MODEL_COLUMN,
        ("variant", "<34"),
        ("params", ">9d"),
        ("MFLOPs", ">9.2f"),
        ("tflite KB", ">9.1f"),
    ]
    for batch in settings.keras_batches:
        columns += [(f"keras b{batch} ms", ">12.3f"), ("x", ">6.2f")]
    columns += [("tflite b1 ms", ">12.3f"), ("x", ">6.2f")]
    return harness.fixed_width(columns, rows)


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu", name="conv2")(h)
    h = keras.layers.Dense(32, activation="relu", name="fc1")(keras.layers.Flatten()(h))
    return keras.Model(inputs, keras.layers.Dense(10, name="fc2")(h), name="tiny")


def tiny_knee(model: keras.Model) -> dict[str, tuple[str, int]]:
    """The knee of an 8-trial search of the tiny model (in memory)."""
    x = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory() as cache:
        study = lo.run_study(
            model, x, storage=optuna.storages.InMemoryStorage(), n_trials=8, population_size=4,
            show_progress=False, hull_seeds=False, cache_dir=cache,
        )  # fmt: skip
    return knee_plan(model, study)


def tiny_data(model: keras.Model) -> latency_front.Data:
    """Seeded random images labelled by the tiny model itself (its accuracy is 1)."""
    x = np.random.default_rng(0).random((16 + 256 + 128, 12, 12, 1), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=-1)
    return latency_front.Data(x[:16], (x[16:272], y[16:272]), (x[272:], y[272:]))


def fashion_data(settings: latency_front.FrontSettings, train_size: int) -> latency_front.Data:
    """Seeded calibration and fine-tuning subsets of the training images; every test image."""
    (x_train, y_train), test = lo.data.fashion_mnist()
    calibration = calibration_subset(x_train, settings.profile.max_samples, seed=settings.seed)
    order = np.random.default_rng(settings.seed).permutation(len(x_train))[:train_size]
    return latency_front.Data(calibration, (x_train[order], y_train[order]), test)


def front(args: argparse.Namespace) -> str:
    """The ``--front`` evidence mode: its whole printed text."""
    if args.quick:
        settings, model = latency_front.QUICK, tiny_model()
        models, data = {"tiny": model}, tiny_data(model)
    else:
        settings = dataclasses.replace(
            latency_front.FrontSettings(), trials=args.trials, plans=args.plans, seed=args.seed
        )
        data = fashion_data(settings, args.train_size)
        models = {name: harness.reference_model(name) for name in args.models or harness.REFERENCE_MODELS}
    with tempfile.TemporaryDirectory(prefix="latency-front-") as scratch:  # quick: nothing cached
        cache = scratch if args.quick else args.cache
        results = {
            name: latency_front.run_model(name, model, data, args.runtimes, settings, cache)
            for name, model in models.items()
        }
    return (
        harness.run_line("latency of searched front plans", quick=args.quick)
        + "\n"
        + latency_front.report(results, settings, data)
    )


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, quick_help="a tiny model and search: a smoke test", models=[])
    parser.add_argument("--knee", default=None, help="also the Pareto knee of this existing study")
    parser.add_argument(
        "--knee-model", default=str(harness.MODELS / "resnet_small.keras"), help="the study's model"
    )
    parser.add_argument(
        "--storage", default=None, help="the study's storage (default: sqlite:///studies/<knee>.db)"
    )
    front_options = parser.add_argument_group("--front (evidence mode) options")
    front_options.add_argument("--front", action="store_true", help="searched front plans and knees")
    front_options.add_argument(
        "--runtimes", nargs="+", choices=list(latency_front.RUNTIMES), default=list(latency_front.RUNTIMES)
    )
    budgets = latency_front.FrontSettings()  # the evidence's defaults, in one place
    front_options.add_argument(
        "--trials",
        type=int,
        default=budgets.trials,
        help="trials per search (default: %(default)s, lo.run_study's)",
    )
    front_options.add_argument(
        "--plans", type=int, default=budgets.plans, help="front plans measured per search"
    )
    front_options.add_argument("--train-size", type=int, default=10000, help="fine-tuning images")
    front_options.add_argument("--seed", type=int, default=budgets.seed)
    front_options.add_argument("--cache", default="studies/cache", help="profile and latency-table cache")
    args = parser.parse_args(argv)
    start = harness.start()
    if args.front:
        full = not args.quick and args.models is None and args.runtimes == list(latency_front.RUNTIMES)
        defaults = all(
            getattr(args, k) == parser.get_default(k) for k in ("trials", "plans", "train_size", "seed")
        )
        args.default_out = FRONT_RESULTS if full and defaults else None  # only the full run is the evidence
        harness.report(front(args), args, started=start)
        return 0
    settings = QUICK if args.quick else Settings()
    rows = []
    if args.quick:
        model = tiny_model()
        plans = {f"{m} 1/4": quarter_plan(model, m) for m in CONV_METHODS}
        plans["search knee"] = tiny_knee(model)
        rows += rows_for("tiny", model, plans, settings, before_fix=("cp 1/4", "search knee"))
    else:
        for name in args.models or sorted(path.stem for path in harness.MODELS.glob("*.keras")):
            model = harness.reference_model(name)
            plans = {f"{m} 1/4": quarter_plan(model, m) for m in CONV_METHODS}
            rows += rows_for(name, model, plans, settings)
    if args.knee:
        model = load_model_file(args.knee_model)
        storage = args.storage or default_storage_url(args.knee)
        study = optuna.load_study(study_name=args.knee, storage=open_storage(storage, create=False))
        label = f"knee of '{args.knee}'"
        plans = {label: knee_plan(model, study)}
        rows += rows_for(Path(args.knee_model).stem, model, plans, settings, before_fix=(label,))
    header = (
        harness.run_line("latency", quick=args.quick) + "\n"
        f"median ms per batch over {settings.runs} warm runs ({settings.warmup} untimed first); Keras "
        "predict_on_batch on TensorFlow's threads, TFLite interpreter on 1 thread; x: compressed / original"
    )
    harness.report(f"{header}\n\n{table(rows, settings)}", args, started=start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
