"""The weight-only decompositions against TensorLy's, timed the two ways the library calls them.

(a) one rank, as ``materialize`` calls it; (b) the profile's use: ``prepare`` once, then every rank
of the profile's grid (``rank_grid`` with the default ``ranks_per_method``), TensorLy called once
per rank (it has no prepare-then-slice API). TensorLy runs as configured to match: HOSVD is
``partial_tucker``/``tucker`` with ``init="svd"`` and no HOOI iteration, TT-SVD is
``tensor_train_matrix``, CP is ``parafac`` from an SVD start with the same iterations and tolerance.
Own and TensorLy repetitions are interleaved (order alternating); medians are reported. The
library's tt calls TensorLy since this benchmark: its "own" is the NumPy TT-SVD it ran before.

python benchmarks/tensorly_speed.py           # realistic layer shapes, 3 repetitions
python benchmarks/tensorly_speed.py --quick   # tiny shapes, 1 repetition: checks the script runs
OMP_NUM_THREADS=1 python benchmarks/tensorly_speed.py --cpu --methods tt   # CPU time, one thread
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import harness
import numpy as np
import tensorly as tl
from harness import fixed_width, run_line
from tensorly.decomposition import parafac, partial_tucker, tensor_train_matrix, tucker

from lrf_optuna.core._geometry import CallShape, LayerGeometry
from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.factorizers.conv_cp import ALS_ITERATIONS
from lrf_optuna.similarity import ProfileSettings
from lrf_optuna.similarity._profile import rank_grid

FULL = [
    ("tucker2", (3, 3, 256, 256)), ("tucker2", (3, 3, 64, 64)),
    ("cp", (3, 3, 256, 256)), ("cp", (3, 3, 64, 64)),
    ("svd", (1024, 512)), ("svd", (3136, 256)),
    ("tucker", (1024, 512)), ("tucker", (3136, 256)),
    ("tt", (1024, 512)), ("tt", (3136, 256)),
]  # fmt: skip
QUICK = [
    ("tucker2", (3, 3, 16, 16)),
    ("cp", (3, 3, 16, 16)),
    ("svd", (64, 32)),
    ("tucker", (64, 32)),
    ("tt", (64, 32)),
]


def geometry(shape: tuple[int, ...]) -> LayerGeometry:
    if len(shape) == 2:
        return LayerGeometry("d", "Dense", "dense", shape, (CallShape((), ()),))
    return LayerGeometry("c", "Conv2D", "conv", shape, (CallShape((14, 14), (14, 14)),))


def tensorly_method(method: str, geom: LayerGeometry) -> tuple[Callable, Callable]:
    """``(decompose(kernel, rank), to_kernel(result))`` calling TensorLy as the method computes."""
    stages = get_factorizer(geom.kind, method).stages
    shape = geom.kernel_shape
    if method == "tucker2":
        modes = [len(shape) - 2, len(shape) - 1]

        def run(k, r):
            ranks = [min(r, shape[m]) for m in modes]
            return partial_tucker(k, rank=ranks, modes=modes, n_iter_max=0, init="svd")[0]

        return run, lambda out: tl.tenalg.multi_mode_dot(out[0], out[1], modes=modes)
    if method == "cp":
        spatial = (-1, *shape[-2:])

        def run(k, r):
            r = min(r, max(shape[-2:]))
            return parafac(
                k.reshape(spatial), r, n_iter_max=ALS_ITERATIONS, init="svd", tol=1e-9, random_state=0
            )

        return run, lambda out: tl.cp_to_tensor(out).reshape(shape)
    if method == "svd":
        return (
            lambda k, r: tl.tenalg.svd_interface(k, n_eigenvecs=min(r, *shape)),
            lambda out: (out[0] * out[1]) @ out[2],
        )
    if method == "tucker":

        def run(k, r):
            (stage,) = stages(geom, r)
            tensor = k.reshape(stage.in_modes + stage.out_modes)
            return tucker(tensor, rank=list(stage.in_ranks + stage.out_ranks), n_iter_max=0, init="svd")

        return run, lambda out: tl.tucker_to_tensor(out).reshape(shape)

    def run(k, r):  # tt
        (stage,) = stages(geom, r)
        return tensor_train_matrix(k.reshape(stage.in_modes + stage.out_modes), list(stage.ranks))

    return run, lambda out: tl.tt_matrix_to_tensor(out).reshape(shape)


def numpy_tt(kernel: np.ndarray, geom: LayerGeometry, ranks: list[int], *, seed: int) -> dict[int, list]:
    """The NumPy TT-SVD loop the library ran before it called TensorLy: the "own" of the tt rows."""
    result = {}
    for rank in ranks:
        (stage,) = get_factorizer("dense", "tt").stages(geom, rank)
        d = len(stage.in_modes)
        remainder = kernel.reshape(stage.in_modes + stage.out_modes).transpose(
            [axis for k in range(d) for axis in (k, d + k)]
        )
        cores = []
        for r0, i, o, r1 in stage.core_shapes()[:-1]:
            u, s, vt = np.linalg.svd(remainder.reshape(r0 * i * o, -1), full_matrices=False)
            cores.append(u[:, :r1].reshape(r0, i, o, r1))
            remainder = s[:r1, None] * vt[:r1]
        result[rank] = [*cores, remainder.reshape(stage.core_shapes()[-1])]
    return result


def interleaved(
    calls: dict[str, Callable[[], object]], repetitions: int, clock: Callable
) -> tuple[dict, dict]:
    """Median seconds of each call over ``repetitions`` rounds (order reversed every other
    round, so drifting load hits every call alike), and each call's last result."""
    times, results = {name: [] for name in calls}, {}
    for repetition in range(repetitions):
        for name in list(calls)[:: 1 if repetition % 2 == 0 else -1]:
            start = clock()
            results[name] = calls[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def measure(
    method: str, shape: tuple[int, ...], *, repetitions: int, per_method: int, clock: Callable
) -> tuple:
    geom = geometry(shape)
    factorizer = get_factorizer(geom.kind, method)
    # A decaying spectrum, like trained kernels: distinct singular values, unique truncations.
    kernel = np.random.default_rng(0).standard_normal(shape) * np.linspace(1.0, 0.05, shape[-1])
    grid = rank_grid(factorizer.useful_max_rank(geom), per_method)
    one = grid[len(grid) // 2]
    decompose, to_kernel = tensorly_method(method, geom)

    def theirs(ranks):
        # TensorLy warns where it clamps a rank (CP's SVD start past a mode's size): expected here
        with tl.backend_context("numpy"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return {r: decompose(kernel, r) for r in ranks}

    own = numpy_tt if method == "tt" else factorizer.decompose_ranks
    calls = {
        "own 1": lambda: own(kernel, geom, [one], seed=0),
        "tl 1": lambda: theirs([one]),
        "own grid": lambda: own(kernel, geom, grid, seed=0),
        "tl grid": lambda: theirs(grid),
    }
    seconds, results = interleaved(calls, repetitions, clock)
    norm = np.linalg.norm(kernel)
    with tl.backend_context("numpy"):
        tl_error = {
            r: np.linalg.norm(to_kernel(out) - kernel) / norm for r, out in results["tl grid"].items()
        }
    own_error = {
        r: np.linalg.norm(factorizer.reconstruct(ks, geom, r) - kernel) / norm
        for r, ks in results["own grid"].items()
    }
    gap = max(abs(own_error[r] - tl_error[r]) for r in grid)
    s = seconds
    return (
        method, "x".join(map(str, shape)), f"{len(grid)} / {one}",
        s["own 1"], s["tl 1"], s["tl 1"] / s["own 1"],
        s["own grid"], s["tl grid"], s["tl grid"] / s["own grid"],
        own_error[one], tl_error[one], gap,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, results="tensorly_speed")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (a rerun)")
    # CPU seconds of this process: less sensitive to other jobs (run with OMP_NUM_THREADS=1)
    parser.add_argument("--cpu", action="store_true", help="time.process_time instead of wall-clock")
    args = parser.parse_args(argv)
    if args.methods is not None or args.cpu:  # a partial or CPU-time rerun keeps the saved file
        args.default_out = None
    repetitions = args.repetitions or (1 if args.quick else 3)
    per_method = ProfileSettings().ranks_per_method
    clock = time.process_time if args.cpu else time.perf_counter
    rows = [
        measure(m, shape, repetitions=repetitions, per_method=per_method, clock=clock)
        for m, shape in (QUICK if args.quick else FULL)
        if args.methods is None or m in args.methods
    ]
    columns = [
        ("method", "<8"), ("kernel", "<12"), ("grid/rank", "<10"),
        ("own 1 s", ">8.3f"), ("tl 1 s", ">8.3f"), ("tl/own", ">7.2f"),
        ("own grid s", ">10.3f"), ("tl grid s", ">10.3f"), ("tl/own", ">7.2f"),
        ("own err", ">8.4f"), ("tl err", ">8.4f"), ("max |d err|", ">11.1e"),
    ]  # fmt: skip
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n".join(
        [
            run_line("own decompositions vs TensorLy", quick=args.quick),
            f"TensorLy {tl.__version__}, NumPy {np.__version__}, load average {load} (1/5/15 min), "
            f"medians of {repetitions} interleaved repetitions, "
            f"{'CPU seconds of this process' if args.cpu else 'wall-clock seconds'}",
            "Shared machine: trust the tl/own ratios, not the absolute seconds.",
            "1 = one rank (materialize); grid = prepare once + every profile grid rank (TensorLy once per rank);",
            "err = relative reconstruction error at the rank shown; max |d err| = largest own-TensorLy gap on the grid.",
            "",
            fixed_width(columns, rows),
        ]
    )
    harness.report(text, args)


if __name__ == "__main__":
    main()
