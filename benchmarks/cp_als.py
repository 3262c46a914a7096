"""CP of a conv kernel tensor: lrf_optuna's ALS vs TensorLy's ``parafac`` (same init, same iterations).

python benchmarks/cp_als.py            # (9, 256, 256) at rank 64, 25 iterations
python benchmarks/cp_als.py --quick    # (9, 32, 32) at rank 8
"""

from __future__ import annotations

import time

import harness
import numpy as np
import tensorly as tl
from tensorly.decomposition import parafac

from lrf_optuna.factorizers.cp_als import cp_als


def relative_error(tensor: np.ndarray, factors: list[np.ndarray]) -> float:
    approx = np.einsum("sr,ir,or->sio", *factors, optimize=True)
    return float(np.linalg.norm(approx - tensor) / np.linalg.norm(tensor))


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, quick_help="(9, 32, 32) at rank 8")
    parser.add_argument("--iterations", type=int, default=25)
    args = parser.parse_args(argv)
    channels, rank = (32, 8) if args.quick else (256, 64)
    tensor = np.random.default_rng(0).standard_normal((9, channels, channels))
    start = time.perf_counter()
    ours = cp_als(tensor, rank, iterations=args.iterations, tolerance=0.0)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    with tl.backend_context("numpy"):
        weights, factors = parafac(
            tensor, rank, n_iter_max=args.iterations, init="svd", tol=0, random_state=0
        )
    theirs_s = time.perf_counter() - start
    theirs = [factors[0] * weights, factors[1], factors[2]]
    columns = [("implementation", "<22"), ("seconds", ">8.2f"), ("relative error", ">15.4f")]
    rows = [("lrf_optuna cp_als", ours_s, relative_error(tensor, ours)),
            ("tensorly parafac", theirs_s, relative_error(tensor, theirs))]  # fmt: skip
    title = f"tensor (9, {channels}, {channels}), rank {rank}, {args.iterations} ALS iterations"
    harness.report(title + "\n" + harness.fixed_width(columns, rows, rule=False), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
