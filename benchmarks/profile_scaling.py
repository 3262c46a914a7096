"""Peak memory and seconds of the calibration profile as resolution and calibration size grow (issue 21).

Each configuration runs in its own process (a fresh peak): ``keras.applications.ResNet50(weights=None,
input_shape=(S, S, 3), classes=10)`` at S = 64, 128, 224 with 32 / 64 / 128 / 256 seeded random
calibration images, ``lo.profile_model`` with default settings and no cache. The child reports its
RSS before the profile (Python, TensorFlow, the model run once on one sample, the calibration array)
and its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``); the profile itself must stay within
``memory_budget_mb`` of the first.

Seconds need a quiet machine: run the full mode alone, never beside other jobs (peak RSS is
meaningful even then). ``--quick`` profiles a small CNN at 64x64 with 32 and 128 images.

    python benchmarks/profile_scaling.py                       # full: 12 configurations, ~1 hour
    python benchmarks/profile_scaling.py --sizes 224 --images 32
    python benchmarks/profile_scaling.py --quick               # smoke test
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import harness

from lrf_optuna.similarity import FACTORIZATIONS, ProfileSettings

QUICK_SIZE, QUICK_IMAGES, QUICK_POSITIONS, QUICK_BUDGET_MB = 64, (32, 128), 64, 96


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quick_model(size: int):
    """A small CNN whose full maps (about 1.6 MB per image at 64x64) dwarf what the profile keeps."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv3")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(h), name="quick")


def child(model_name: str, size: int, images: int, quick: bool, factorization: str) -> dict:
    """Profile one configuration in this process; its peak RSS and seconds."""
    import keras
    import numpy as np

    import lrf_optuna as lo

    if model_name == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=10)
    else:
        model = quick_model(size)
    x = np.random.default_rng(0).standard_normal((images, size, size, 3)).astype("float32")
    settings = lo.ProfileSettings(max_samples=images, factorization=factorization)
    if quick:
        settings = lo.ProfileSettings(
            max_samples=images,
            max_positions=QUICK_POSITIONS,
            memory_budget_mb=QUICK_BUDGET_MB,
            ranks_per_method=2,
            factorization=factorization,
        )
    model(x[:1], training=False)  # the model itself, run once on one sample: not the profile's
    before = _rss_mb()
    start = time.perf_counter()
    profile = lo.profile_model(model, x, settings=settings, show_progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {
        "model": model_name, "size": size, "images": images, "rows": len(profile),
        "before_mb": before, "peak_mb": peak, "seconds": seconds, "budget_mb": settings.memory_budget_mb,
    }  # fmt: skip


def run_child(model_name: str, size: int, images: int, quick: bool, factorization: str) -> dict:
    command = [sys.executable, __file__, "--child", model_name, str(size), str(images)]
    command += ["--factorization", factorization]
    command += ["--quick"] if quick else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{model_name} {size} {images}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    columns = [
        ("model", "<10"), ("pixels", ">6d"), ("images", ">6d"), ("rows", ">5d"), ("RSS before MB", ">13.0f"),
        ("peak RSS MB", ">11.0f"), ("profile MB", ">10.0f"), ("budget MB", ">9d"), ("seconds", ">8.1f"),
    ]  # fmt: skip
    rows = [
        [r["model"], r["size"], r["images"], r["rows"], r["before_mb"], r["peak_mb"],
         r["peak_mb"] - r["before_mb"], r["budget_mb"], r["seconds"]]
        for r in results
    ]  # fmt: skip
    return harness.fixed_width(columns, rows)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, quick_help="a small CNN at 64x64, 32 and 128 images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="ResNet50 input sizes")
    parser.add_argument("--images", type=int, nargs="+", default=[32, 64, 128, 256], help="calibration sizes")
    parser.add_argument(
        "--factorization",
        choices=FACTORIZATIONS,
        default=ProfileSettings().factorization,
        help="the profile's factors (ProfileSettings.factorization; default: the library's)",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SIZE", "IMAGES"), help=argparse.SUPPRESS)
    results = harness.RESULTS / "profile_scaling.txt"
    parser.add_argument(
        "--save",
        action="store_const",
        dest="out",
        const=results,
        help=f"also write the table to {results.name}",
    )
    args = parser.parse_args(argv)
    if args.child:
        name, size, images = args.child
        print(json.dumps(child(name, int(size), int(images), args.quick, args.factorization)))
        return 0
    if args.quick:
        configurations = [("quick", QUICK_SIZE, n) for n in QUICK_IMAGES]
    else:
        configurations = [("resnet50", s, n) for s in args.sizes for n in args.images]
    measured = [run_child(*c, args.quick, args.factorization) for c in configurations]
    title = harness.run_line("profile scaling", quick=args.quick) + f", factorization {args.factorization}"
    harness.report(title + "\n" + table(measured), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
