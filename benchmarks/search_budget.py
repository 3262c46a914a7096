"""How good is the search's front for its trial budget, with and without hull seeds?

For each reference model (studies/models/*.keras) and trial budget, the default hybrid
search (layerwise proxy, in memory) runs with and without the hull seeds
(``run_study(hull_seeds=...)``); the table gives the best similarity on its 2-D front
(params vs similarity) among plans removing at least each fraction of the params, and the
search's wall time. No fine-tuning: this measures the search, not the proxy.

    python benchmarks/search_budget.py              # full: the numbers in docs/results.md
    python benchmarks/search_budget.py --quick      # smoke test (tiny budgets)
"""

from __future__ import annotations

import logging
import time

import harness
from compression_table import front

import lrf_optuna as lo


def best_above(original: int, trials, thresholds) -> list[float | None]:
    """Best similarity among front plans removing at least each fraction of ``original`` params."""
    removed = [(1 - t.values[0] / original, t.values[2]) for t in trials]
    return [max((s for r, s in removed if r >= low), default=None) for low in thresholds]


def run_model(name: str, calibration, args) -> list[dict]:
    model = harness.reference_model(name)
    original = lo.analyze(model).cost.params  # traced once, not per study
    rows = []
    for budget in args.budgets:
        for seeded in (True, False):
            start = time.perf_counter()
            study = harness.search(model, calibration, args, n_trials=budget, hull_seeds=seeded)
            seconds = time.perf_counter() - start
            trials = front(study)
            rows.append({"model": name, "seeds": "yes" if seeded else "no", "trials": budget,
                         "seconds": seconds, "front": len(trials),
                         "best": best_above(original, trials, args.thresholds)})  # fmt: skip
            logging.info("%s: %d trials, seeds %s: %.1f s", name, budget, seeded, seconds)
    return rows


def table(rows: list[dict], thresholds: list[float]) -> str:
    columns = [harness.MODEL_COLUMN, ("seeds", ">5"), ("trials", ">6"), ("search s", ">8.1f"), ("front", ">5"),
               *((f">={100 * t:.0f}%", ">7.4f") for t in thresholds)]  # fmt: skip
    return harness.fixed_width(columns, ([r["model"], r["seeds"], r["trials"], r["seconds"], r["front"],
                                  *("-" if b is None else b for b in r["best"])] for r in rows))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    quick = {"models": ["lenet5"], "budgets": [24, 48], "population": 8, "calibration": 32}
    parser = harness.parser(
        __doc__, quick_help="tiny budgets (smoke test)", quick=quick, models=harness.REFERENCE_MODELS,
        seed=True, cache=True, search=True,
    )  # fmt: skip
    parser.add_argument("--budgets", nargs="+", type=int, default=[300, 1000, 2000, 5000])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.6, 0.7, 0.8, 0.9])
    args = parser.parse_args(argv)
    harness.start()
    (x_train, _), _ = lo.data.fashion_mnist()
    calibration = harness.calibration(x_train, args.calibration, seed=args.seed)
    start = time.perf_counter()
    rows = [row for name in args.models for row in run_model(name, calibration, args)]
    header = (
        harness.run_line("search front vs trial budget", quick=args.quick) + "\n"
        f"default hybrid search (layerwise cosine/mean, dense layers SVD), NSGA-II population "
        f"{args.population}, seed {args.seed}, calibration {args.calibration} training images, "
        "in-memory storage; columns >=x%: best similarity on the 2-D front among plans removing "
        "at least x% of the params"
    )
    harness.report(f"{header}\n\n{table(rows, args.thresholds)}", args, started=start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
