"""Which learning-rate schedule the one fine-tuning run should use (issue #5 follow-up).

A hybrid search on a reference model; plans picked on its 2-D front (params vs similarity)
at the ``--targets`` fractions of params removed (0: the uncompressed model); each
fine-tuned once per schedule from the same materialized weights, accuracy on the 10,000
Fashion-MNIST test images. The library's default (``lo.finetune``) follows this table.

    python benchmarks/finetune_schedule.py              # full: the numbers in docs/results.md
    python benchmarks/finetune_schedule.py --quick      # smoke test
"""

from __future__ import annotations

import logging

import harness
from compression_table import front, params_removed

import lrf_optuna as lo
from lrf_optuna.results._compress import materialize_as_searched
from lrf_optuna.similarity._proxy import DEFAULT_AGGREGATOR

# label: (schedule, learning rate, distill from the original model)
SCHEDULES = {"constant 1e-4": ("constant", 1e-4, False), "cosine from 3e-4": ("cosine", 3e-4, False),
             "cosine from 1e-3": ("cosine", 1e-3, False), "3e-4 + distill": ("cosine", 3e-4, True),
             "1e-3 + distill": ("cosine", 1e-3, True)}  # fmt: skip
DEFAULT_SCHEDULES = ["constant 1e-4", "cosine from 3e-4", "cosine from 1e-3"]


def pick_plans(analysis, study, targets: list[float]) -> list[dict]:
    """For each target, the front plan removing the fraction of params nearest to it (0: none)."""
    trials = front(study)
    removed = params_removed(analysis, trials)
    space = lo.search.SearchSpace.from_analysis(analysis, methods=None)  # replays any study's plans
    chosen = {-1: {}} if 0 in targets else {}
    for target in (t for t in targets if t > 0):
        trial = min(trials, key=lambda t: abs(removed[t.number] - target))
        chosen[trial.number] = lo.plan_from_trial(space, trial)
    return list(chosen.values())


def run(name: str, args) -> list[dict]:
    (x_train, y_train), (x_test, y_test) = lo.data.fashion_mnist()
    train = harness.shuffled(x_train, y_train, args.train_size, seed=args.seed)
    test = x_test[: args.test_size], y_test[: args.test_size]
    model = harness.reference_model(name)
    calibration = harness.calibration(x_train, args.calibration, seed=args.seed)
    study = harness.search(
        model, calibration, args, **({"aggregator": args.aggregator} if args.aggregator else {})
    )
    analysis, rows = lo.analyze(model), []
    for plan in pick_plans(analysis, study, args.targets):
        row = {"model": name, "params_removed": 1 - analysis.plan_cost(plan).params / analysis.cost.params}
        for label in args.schedules:
            schedule, rate, distill = SCHEDULES[label]
            compressed = materialize_as_searched(
                model, plan, study, x_train, seed=args.seed, analysis=analysis
            )
            result = lo.finetune(compressed, train, validation_data=test, epochs=args.epochs, schedule=schedule,
                                 learning_rate=rate, original=model if distill else None, distill=distill,
                                 seed=args.seed)  # fmt: skip
            row["before"], row[label] = result.accuracy_compressed, result.accuracy_finetuned
            logging.info("%s params -%.1f%% %s: %.4f", name, 100 * row["params_removed"], label, row[label])
        rows.append(row)
    return rows


def table(rows: list[dict], labels: list[str]) -> str:
    columns = [
        harness.MODEL_COLUMN,
        ("params -%", ">9.1f"),
        ("acc pre-FT", ">10.4f"),
        *((label, ">16.4f") for label in labels),
    ]
    return harness.fixed_width(columns, ([r["model"], 100 * r["params_removed"], r["before"], *(r[label] for label in labels)]
                                 for r in rows))  # fmt: skip


QUICK = {"models": ["lenet5"], "targets": [0, 0.7], "trials": 24, "population": 8, "calibration": 32,
         "train_size": 2000, "test_size": 1000}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(
        __doc__, quick=QUICK, models=harness.REFERENCE_MODELS, seed=True, cache=True, search=True, trials=300
    )
    parser.add_argument("--targets", type=float, nargs="+", default=[0, 0.3, 0.6, 0.9])
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=DEFAULT_SCHEDULES)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument(
        "--aggregator", choices=list(lo.similarity.AGGREGATORS), default=None,
        help="the search's layerwise aggregator (default: the library's)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    start = harness.start()
    rows = [row for name in args.models for row in run(name, args)]
    header = (
        harness.run_line("fine-tuning schedules", quick=args.quick) + "\n"
        f"models {', '.join(args.models)}; hybrid search: NSGA-II, {args.trials} trials, aggregator "
        f"{args.aggregator or DEFAULT_AGGREGATOR}, calibration {args.calibration} "
        f"images; plans nearest {[t for t in args.targets if t > 0]} of params removed on the 2-D front; one run of Adam, "
        f"{args.epochs} epoch(s) on {args.train_size} training images, batch 128; accuracy on "
        f"{args.test_size} test images"
    )
    harness.report(f"{header}\n\n{table(rows, args.schedules)}", args, started=start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
