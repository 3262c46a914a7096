"""Accuracy before fine-tuning: weight-only vs data-aware factors vs data-aware + refit.

Each reference model (studies/models/*.keras, Fashion-MNIST) is factorized with one
method at a uniform fraction of each layer's full rank (every layer the method applies
to but the first conv and the classifier), then evaluated on the first 2000 test
images with no fine-tuning: weight-only factors (``lo.materialize(model, plan)``),
data-aware factors (``calibration=`` 512 training images, ``refit=False``) and
data-aware + refit (the default with ``calibration=``).

    python benchmarks/data_aware.py            # writes benchmarks/results/data_aware.txt
    python benchmarks/data_aware.py --quick    # tiny random CNN, labels = its own predictions
"""

from __future__ import annotations

import sys

import harness
import keras
import numpy as np

import lrf_optuna as lo

FRACTIONS = (0.5, 0.3, 0.2)
COLUMNS = [
    harness.MODEL_COLUMN, ("method", "<11"), ("rank", ">4"), ("layers", ">6"), ("params -%", ">9.1f"),
    ("weights", ">7.4f"), ("data", ">7.4f"), ("refit", ">7.4f"),
    ("err w", ">6.3f"), ("err d", ">6.3f"), ("err r", ">6.3f"),
]  # fmt: skip


def uniform_plan(
    analysis: lo.model.ModelAnalysis, method: str, fraction: float
) -> dict[str, tuple[str, int]]:
    """``method`` at ``fraction`` of each layer's full rank, but the first conv and the last Dense."""
    specs = list(analysis.specs.values())
    convs = [s.name for s in specs if s.kind == "conv"]
    denses = [s.name for s in specs if s.kind == "dense"]
    skip = set(convs[:1] + denses[-1:])
    plan = {}
    for spec in specs:
        if spec.name in skip or method not in spec.methods:
            continue
        full = lo.factorizers.get_factorizer(spec.geometry.kind, method).full_rank(spec.geometry)
        plan[spec.name] = (method, max(1, round(fraction * full)))
    return plan


def scores(model: keras.Model, reference: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, relative output error against the original model's outputs)."""
    outputs = model.predict(x, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(outputs, axis=-1) == y))
    return accuracy, float(np.linalg.norm(outputs - reference) / np.linalg.norm(reference))


def bench_model(name: str, model, calibration: np.ndarray, x: np.ndarray, y: np.ndarray, fractions=FRACTIONS):
    analysis = lo.analyze(model)
    reference = model.predict(x, batch_size=256, verbose=0)
    rows = []
    for method in ("tucker2", "cp", "svd", "spatial_svd", "tt", "tucker"):
        for fraction in fractions:
            plan = uniform_plan(analysis, method, fraction)
            if not plan:
                continue
            removed = 100 * (1 - analysis.plan_cost(plan).params / analysis.cost.params)
            variants = [
                lo.materialize(model, plan, analysis=analysis),
                lo.materialize(model, plan, analysis=analysis, calibration=calibration, refit=False),
                lo.materialize(model, plan, analysis=analysis, calibration=calibration),
            ]
            (aw, ew), (ad, ed), (ar, er) = (scores(m, reference, x, y) for m in variants)
            row = (name, method, f"{round(100 * fraction)}%", len(plan), removed, aw, ad, ar, ew, ed, er)
            rows.append(row)
            print(harness.fixed_width(COLUMNS, [row]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def tiny_model() -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded random CNN on anisotropic synthetic images; labels are its own predictions."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", name="c2")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="c3")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu", name="d1")(x)
    model = keras.Model(inputs, layers.Dense(10, name="d2")(x))
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((3, 3)) * np.array([2.0, 0.2, 0.02])
    data = (rng.standard_normal((640, 12, 12, 3)) @ mixing + 0.5).astype("float32")
    labels = np.argmax(model.predict(data[128:], verbose=0), axis=-1)
    return model, data[:128], data[128:], labels


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(
        __doc__, quick_help="tiny random CNN, labels = its own predictions",
        models=harness.REFERENCE_MODELS, results="data_aware",
    )  # fmt: skip
    args = parser.parse_args(argv)
    lines = [harness.run_line("data-aware factorization, accuracy before fine-tuning", quick=args.quick)]
    rows = []
    if args.quick:
        model, calibration, x, y = tiny_model()
        rows += bench_model("tiny", model, calibration, x, y, fractions=(0.3,))
    else:
        (x_train, _), (x_test, y_test) = lo.data.fashion_mnist()
        calibration, x, y = x_train[:512], x_test[:2000], y_test[:2000]
        for name in args.models:
            model = harness.reference_model(name)
            accuracy = scores(model, model.predict(x, verbose=0), x, y)[0]
            lines.append(f"{name}: original accuracy {accuracy:.4f} on the first 2000 test images")
            rows += bench_model(name, model, calibration, x, y)
    lines += [
        "calibration: 512 training images (quick: 128 synthetic); rank: fraction of each layer's full rank;",
        "weights / data / refit: accuracy with weight-only factors, data-aware factors, data-aware + refit;",
        "err: relative error of the network outputs against the original model's",
        "",
        harness.fixed_width(COLUMNS, rows),
    ]
    harness.report("\n".join(lines), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
