"""CPU seconds of the data-aware factorizations over the profile's grid of ranks (#18, #21).

One layer per shape, a random SPD input moment (``A A^T / n + ridge``, as the profile's
statistics are), ``prepare`` once and ``at_rank`` at every rank of ``rank_grid`` with the default
``ranks_per_method``: the work the similarity profile does per layer and method. CPU time
(``time.process_time``): wall time on the shared 2-core machine swings 2x. Run with one BLAS
thread, as the results were:

OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/data_aware_speed.py   # conv5 + Dense
python benchmarks/data_aware_speed.py --quick   # tiny shapes: checks the script runs
"""

from __future__ import annotations

import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import harness
import numpy as np

from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.factorizers.data_aware import LayerStatistics
from lrf_optuna.similarity import ProfileSettings
from lrf_optuna.similarity._profile import rank_grid

FULL = [((3, 3, 512, 512), ("tucker2", "cp", "svd", "spatial_svd")), ((2048, 10), ("svd", "tt", "tucker")),
        ((4096, 4096), ("svd", "tt", "tucker"))]  # fmt: skip
QUICK = [((3, 3, 16, 16), ("tucker2", "cp", "svd", "spatial_svd")), ((64, 32), ("svd", "tt", "tucker"))]


def geometry(shape: tuple[int, ...]) -> LayerGeometry:
    if len(shape) == 2:
        return LayerGeometry("d", "Dense", "dense", shape, (CallShape((), ()),))
    return LayerGeometry("c", "Conv2D", "conv", shape, (CallShape((7, 7), (7, 7)),))


def statistics(dim: int, rng: np.random.Generator) -> LayerStatistics:
    vectors = rng.standard_normal((dim, 2 * dim)).astype(np.float32)
    vectors *= np.linspace(1.0, 0.1, dim, dtype=np.float32)[:, None]
    moment = vectors @ vectors.T / (2 * dim) + 1e-2 * np.eye(dim, dtype=np.float32)
    return LayerStatistics(moment[None], vectors=2 * dim)


def time_layer(shape: tuple[int, ...], methods: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    geom = geometry(shape)
    kernel = (rng.standard_normal(shape) * np.linspace(1, 0.05, shape[-1])).astype(np.float32)
    stats = statistics(int(np.prod(shape[:-1])), rng)
    lines, total = [], 0.0
    for method in methods:
        factorizer = get_factorizer(geom.kind, method)
        ranks = rank_grid(factorizer.useful_max_rank(geom), ProfileSettings().ranks_per_method)
        start = time.process_time()
        prepared = factorizer.prepare(kernel, geom, seed=0, stats=stats)
        shared = time.process_time() - start
        for rank in ranks:
            factorizer.at_rank(prepared, geom, rank, seed=0)
        per_rank = time.process_time() - start - shared
        total += shared + per_rank
        lines.append(f"{shape!s:18s} {method:12s} {len(ranks):5d} {shared:9.2f} {per_rank:9.2f}")
    return [*lines, f"{shape!s:18s} {'all':12s} {'':5s} {'':9s} {total:9.2f}"]


def main(argv: list[str] | None = None) -> None:
    args = harness.parser(__doc__, quick_help="tiny shapes").parse_args(argv)  # saved by hand: --out
    harness.start()
    rng = np.random.default_rng(0)
    lines = [
        f"data-aware factorization CPU seconds{' (quick mode)' if args.quick else ''}",
        f"{'kernel':18s} {'method':12s} {'ranks':>5s} {'prepare':>9s} {'at_rank':>9s}",
    ]
    for shape, methods in QUICK if args.quick else FULL:
        lines.extend(time_layer(shape, methods, rng))
        logging.getLogger(__name__).info("%s", lines[-1])  # progress: one line per kernel
    harness.report("\n".join(lines), args)


if __name__ == "__main__":
    main()
