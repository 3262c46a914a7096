"""How well each similarity proxy ranks plans by real accuracy (issue #5).

One NSGA-II study (the library's default proxy) gives the plans; >= 12 of them spread
over the Pareto front are scored by every proxy and by test accuracy before fine-tuning
and, with ``--finetune``, after one fine-tuning run. Proxies: CKA, cosine, NMSE x
mean/product/min/weighted aggregators, layerwise; the same metrics on the network
outputs with one layer's candidate swapped in at a time (output_*, mean/product),
layerwise; CKA/cosine/NMSE on the network outputs of the whole plan (model proxy); the
weight reconstruction error. Printed: Spearman rank correlation of each proxy with
each accuracy, and the partial Spearman correlation given params (``| params``): what a
proxy knows about accuracy beyond how much a plan removes, which dominates along a front.
Fine-tuning is ``lo.finetune``'s default, distilled from the original (``--no-distill``:
labels only).

    python benchmarks/proxy_fidelity.py --model lenet5 --finetune   # the numbers in docs/results.md
    python benchmarks/proxy_fidelity.py --quick                      # smoke test
    python benchmarks/proxy_fidelity.py --summary benchmarks/results/proxy_fidelity_*.txt

``--summary`` reads saved outputs back and prints docs/results.md's cross-model table (Markdown):
every proxy after fine-tuning, raw and given params, per model and on average.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import platform
from pathlib import Path

import harness
import numpy as np
import pandas as pd

import lrf_optuna as lo
from lrf_optuna.results._compress import materialize_as_searched
from lrf_optuna.similarity._proxy import DEFAULT_AGGREGATOR, DEFAULT_METRIC

TITLE = "Spearman rank correlation of each proxy with test accuracy"
DEFAULT_PROXY = f"layerwise {DEFAULT_METRIC}/{DEFAULT_AGGREGATOR}"
TARGETS = {"acc_after_ft": "", "acc_after_ft|params": " given params"}


def proxies(model, calibration, profile) -> dict[str, object]:
    analysis = lo.analyze(model)
    found = {}
    for metric in ("cka", "cosine", "nmse"):
        for aggregator in lo.similarity.AGGREGATORS:
            found[f"layerwise {metric}/{aggregator}"] = lo.similarity.LayerwiseProxy(
                profile, analysis, metric=metric, aggregator=aggregator
            )
        for aggregator in ("mean", "product"):
            found[f"layerwise output_{metric}/{aggregator}"] = lo.similarity.LayerwiseProxy(
                profile, analysis, metric=f"output_{metric}", aggregator=aggregator
            )
        found[f"model {metric}"] = lo.similarity.ModelProxy(model, analysis, calibration, metric=metric)
    for aggregator in ("mean", "product"):
        found[f"weight error/{aggregator}"] = lo.similarity.LayerwiseProxy(
            profile, analysis, metric="weight_error", aggregator=aggregator
        )
    return found


def partial_spearman(frame: pd.DataFrame, x: list[str], y: str, given: str) -> pd.Series:
    """Spearman correlation of each column ``x`` with ``y`` with ``given`` held fixed: the
    Pearson partial correlation of the ranks, NaN where a rank correlation with ``given`` is 1."""
    r = frame[[*x, y, given]].corr(method="spearman")
    r_xy, r_xz, r_yz = r.loc[x, y], r.loc[x, given], r.loc[y, given]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def read_correlations(path: Path) -> tuple[str, pd.DataFrame]:
    """The model and the correlation table (proxies x targets) of a saved full-mode output."""
    lines = Path(path).read_text().splitlines()
    model = lines[0].split("model=", 1)[1].split(",", 1)[0]
    start = next(i for i, line in enumerate(lines) if line.startswith(TITLE))
    columns = lines[start + 1].split()
    rows = {}
    for line in itertools.takewhile(str.strip, lines[start + 2 :]):
        name, *cells = line.rsplit(None, len(columns))
        rows[name] = [float(cell) for cell in cells]
    return model, pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def summary(paths: list[Path]) -> str:
    """Markdown: every proxy (rows) against post-fine-tuning accuracy, raw and given params,
    per saved output and as the mean over them (columns), best mean given params first;
    "-" where a run lacks the value (a mean then too)."""
    columns, models = {}, []
    for path in paths:
        model, table = read_correlations(path)
        models.append(model)
        for target, suffix in TARGETS.items():
            columns[f"{model}{suffix}"] = table[target] if target in table else pd.Series(dtype=float)
    frame = pd.DataFrame(columns)
    for suffix in TARGETS.values():
        frame[f"mean{suffix}"] = frame[[f"{model}{suffix}" for model in models]].mean(axis=1, skipna=False)
    frame = frame.sort_values(["mean given params", "mean"], ascending=False)
    lines = ["| proxy | " + " | ".join(frame.columns) + " |", "|---" * (len(frame.columns) + 1) + "|"]
    for name, row in frame.iterrows():
        label = f"{name} (**default**)" if name == DEFAULT_PROXY else name
        cells = ["-" if np.isnan(value) else f"{value:.3f}" for value in row]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    quick = {"plans": 4, "trials": 24, "calibration": 32}
    parser = harness.parser(
        __doc__, quick_help="few plans and trials, 1000 images", quick=quick, seed=True, cache=True,
        search=True, trials=300,
    )  # fmt: skip
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--plans", type=int, default=16)
    parser.add_argument("--finetune", action="store_true", help="also fine-tune each plan once (1 epoch)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: lo.finetune's)")
    parser.add_argument(
        "--schedule", choices=lo.results.SCHEDULES, default=None, help="(default: lo.finetune's)"
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="fine-tune on this many shuffled training images (default: all)",
    )
    parser.add_argument(
        "--distill", action=argparse.BooleanOptionalAction, default=True,
        help="distill each fine-tuning run from the original model (default: yes, as lo.finetune)",
    )  # fmt: skip
    parser.add_argument("--summary", nargs="+", type=Path, help="only summarize these saved outputs")
    args = parser.parse_args(argv)
    if args.summary:
        harness.report(summary(args.summary), args)
        return 0
    harness.start()  # progress on stderr
    (x_train, y_train), (x_test, y_test) = lo.data.fashion_mnist()
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:500], y_test[:500]
    model = harness.reference_model(args.model)
    calibration = harness.calibration(x_train, args.calibration, seed=args.seed)
    if args.train_size:  # fine-tuning data only: the calibration (hence the plans) stays the same
        x_train, y_train = harness.shuffled(x_train, y_train, args.train_size, seed=args.seed)
    settings = lo.ProfileSettings(output_samples=args.calibration)  # the output_* columns too
    profile = lo.profile_model(
        model, calibration, settings=settings, cache_dir=args.cache, show_progress=False
    )
    study = harness.search(model, calibration, args, profile=profile)
    scorers = proxies(model, calibration, profile)
    rows = []
    for trial in lo.results.spread_trials(
        lo.results.pareto_trials(study), args.plans, metric_names=study.metric_names
    ):
        rows.append(
            score_plan(model, trial, study, calibration, scorers, (x_train, y_train), (x_test, y_test), args)
        )
        logging.info("plan %d: trial %d, %d params, accuracy %s", len(rows), trial.number, rows[-1]["params"],
                     ", ".join(f"{rows[-1][k]:.4f}" for k in ("acc_before_ft", "acc_after_ft") if k in rows[-1]))  # fmt: skip
    frame = pd.DataFrame(rows)
    targets = [c for c in ("acc_before_ft", "acc_after_ft") if c in frame]
    table = frame[[*targets, *scorers]].corr(method="spearman").loc[list(scorers), targets]
    for target in targets:
        table[f"{target}|params"] = partial_spearman(frame, list(scorers), target, "params")
    default = "lo.finetune's"
    lines = [
        f"# {datetime.date.today()} on {platform.machine()} ({os.cpu_count()} cores); model={args.model}, "
        f"plans={len(frame)}, trials={args.trials}, calibration={args.calibration}, "
        f"fine-tune: 1 epoch on {len(x_train)} images, learning rate {args.lr or default}, schedule {args.schedule or default}, "
        f"{'distilled from the original' if args.distill else 'labels only'}",
        f"{TITLE} (| params: partial, given params)",
        table.sort_values(targets[-1], ascending=False).to_string(float_format=lambda v: f"{v:.3f}"),
        "",
        frame[["trial", "params", *targets]].to_string(index=False),
    ]  # fmt: skip
    harness.report("\n".join(lines), args)
    return 0


def score_plan(model, trial, study, calibration, scorers, train, test, args) -> dict:
    """One front plan: its test accuracy before (and with ``--finetune`` after) fine-tuning, every proxy's score."""
    plan = lo.plan_from_trial(model, trial, study=study)
    compressed = materialize_as_searched(model, plan, study, None, calibration=calibration, seed=args.seed)
    row = {
        "trial": trial.number,
        "params": trial.values[0],
        "acc_before_ft": lo.results.evaluate_accuracy(compressed, *test),
    }
    if args.finetune:
        options = {"learning_rate": args.lr, "schedule": args.schedule}
        result = lo.finetune(
            compressed, train, validation_data=test, epochs=1, seed=args.seed, original=model, distill=args.distill,
            **{name: value for name, value in options.items() if value is not None},
        )  # fmt: skip
        row["acc_after_ft"] = result.accuracy_finetuned
    return row | {name: scorer(plan) for name, scorer in scorers.items()}


if __name__ == "__main__":
    raise SystemExit(main())
