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

import argparse
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import optuna
from compression_table import MODELS, REFERENCE_MODELS, front
from tables import fixed_width, run_line

import lrf_optuna as lo
from lrf_optuna.files._models import load_model_file
from lrf_optuna.results._compress import calibration_subset


def best_above(original: int, trials, thresholds) -> list[float | None]:
    """Best similarity among front plans removing at least each fraction of ``original`` params."""
    removed = [(1 - t.values[0] / original, t.values[2]) for t in trials]
    return [max((s for r, s in removed if r >= low), default=None) for low in thresholds]


def run_model(name: str, calibration, args) -> list[dict]:
    model = load_model_file(MODELS / f"{name}.keras")
    original = lo.analyze(model).cost.params  # traced once, not per study
    rows = []
    for budget in args.budgets:
        for seeded in (True, False):
            start = time.perf_counter()
            study = lo.run_study(
                model, calibration, storage=optuna.storages.InMemoryStorage(), n_trials=budget,
                seed=args.seed, population_size=args.population, hull_seeds=seeded,
                show_progress=False, cache_dir=args.cache,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            trials = front(study)
            rows.append({"model": name, "seeds": "yes" if seeded else "no", "trials": budget,
                         "seconds": seconds, "front": len(trials),
                         "best": best_above(original, trials, args.thresholds)})  # fmt: skip
            logging.info("%s: %d trials, seeds %s: %.1f s", name, budget, seeded, seconds)
    return rows


def table(rows: list[dict], thresholds: list[float]) -> str:
    columns = [("model", "<13"), ("seeds", ">5"), ("trials", ">6"), ("search s", ">8.1f"), ("front", ">5"),
               *((f">={100 * t:.0f}%", ">7.4f") for t in thresholds)]  # fmt: skip
    return fixed_width(columns, ([r["model"], r["seeds"], r["trials"], r["seconds"], r["front"],
                                  *("-" if b is None else b for b in r["best"])] for r in rows))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--models", nargs="+", default=REFERENCE_MODELS)
    parser.add_argument("--budgets", nargs="+", type=int, default=[300, 1000, 2000, 5000])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="studies/cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.quick:
        args.models, args.budgets, args.population, args.calibration = ["lenet5"], [24, 48], 8, 32
    (x_train, _), _ = lo.data.fashion_mnist()
    calibration = calibration_subset(x_train, args.calibration, seed=args.seed)
    start = time.perf_counter()
    rows = [row for name in args.models for row in run_model(name, calibration, args)]
    print(
        run_line("search front vs trial budget", quick=args.quick) + "\n"
        f"default hybrid search (layerwise cosine/mean, dense layers SVD), NSGA-II population "
        f"{args.population}, seed {args.seed}, calibration {args.calibration} training images, "
        "in-memory storage; columns >=x%: best similarity on the 2-D front among plans removing "
        "at least x% of the params\n"
    )
    print(table(rows, args.thresholds))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
