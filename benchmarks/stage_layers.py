"""The stock Keras layers of the replacement chains, timed on TensorFlow's CPU kernels.

Each stage kind the factorizers emit is timed as the layer ``builders.build_chain``
makes, beside the slower layer computing the same math where one exists (a grouped conv
with one input channel per group vs a depthwise conv), and beside the full layer it
replaces. Median milliseconds per batch over warm runs of a compiled forward pass.

python benchmarks/stage_layers.py           # batch 256, 14x14x64 maps (the issue's shapes)
python benchmarks/stage_layers.py --quick   # batch 8, tiny maps: checks the script runs
"""

from __future__ import annotations

import statistics
import time

import harness
import keras
import numpy as np
import tensorflow as tf

L = keras.layers


def time_layer(layer: keras.layers.Layer, shape: tuple[int, ...], *, runs: int, seed: int = 0) -> float:
    """Median ms of ``layer`` on a batch of ``shape`` (warm, graph-compiled)."""
    x = tf.constant(np.random.default_rng(seed).standard_normal(shape).astype("float32"))
    inputs = keras.Input(batch_shape=shape)
    model = keras.Model(inputs, layer(inputs))
    forward = tf.function(lambda t: model(t, training=False))
    forward(x)  # trace and warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        forward(x).numpy()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cases(batch: int, size: int, channels: int, rank: int) -> list[tuple[str, str, callable, tuple]]:
    """(stage kind, layer description, layer factory, input shape)."""
    s, c, r = size, channels, rank
    return [
        ("original 3x3 conv", f"Conv2D {c}->{c}", lambda: L.Conv2D(c, 3, padding="same"), (batch, s, s, c)),
        ("1x1 stage (tucker2/cp/svd)", f"Conv2D 1x1 {c}->{r}", lambda: L.Conv2D(r, 1), (batch, s, s, c)),
        ("core stage (tucker2)", f"Conv2D 3x3 {r}->{r}", lambda: L.Conv2D(r, 3, padding="same"), (batch, s, s, r)),
        ("core stage (svd)", f"Conv2D 3x3 {c}->{r}", lambda: L.Conv2D(r, 3, padding="same"), (batch, s, s, c)),
        ("spatial stage (spatial_svd)", f"Conv2D 3x1 {c}->{r}", lambda: L.Conv2D(r, (3, 1), padding="same"), (batch, s, s, c)),
        ("CP spatial stage, built", f"DepthwiseConv2D 3x3 x{r}", lambda: L.DepthwiseConv2D(3, padding="same"), (batch, s, s, r)),
        ("CP spatial stage, before", f"Conv2D 3x3 groups={r}", lambda: L.Conv2D(r, 3, padding="same", groups=r), (batch, s, s, r)),
        ("grouped conv at rank 1, built", f"DepthwiseConv2D 3x3 x{c} mult 2", lambda: L.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (batch, s, s, c)),
        ("grouped conv at rank 1, before", f"Conv2D 3x3 groups={c} ->{2 * c}", lambda: L.Conv2D(2 * c, 3, padding="same", groups=c), (batch, s, s, c)),
        ("grouped stage (groups=4)", f"Conv2D 3x3 {c}->{c} groups=4", lambda: L.Conv2D(c, 3, padding="same", groups=4), (batch, s, s, c)),
        ("CP 1-D stage, built", f"DepthwiseConv1D 3 x{r}", lambda: L.DepthwiseConv1D(3, padding="same"), (batch, s * s, r)),
        ("CP 1-D stage, before", f"Conv1D 3 groups={r}", lambda: L.Conv1D(r, 3, padding="same", groups=r), (batch, s * s, r)),
        ("CP 3-D stage, built (no DepthwiseConv3D)", f"Conv3D 3 groups={r}", lambda: L.Conv3D(r, 3, padding="same", groups=r), (max(1, batch // 8), 8, s, s, r)),
        ("3-D original", f"Conv3D 3 {c}->{c}", lambda: L.Conv3D(c, 3, padding="same"), (max(1, batch // 8), 8, s, s, c)),
        ("separable pointwise stage", f"SeparableConv2D 3x3 {c}->{r}", lambda: L.SeparableConv2D(r, 3, padding="same"), (batch, s, s, c)),
        ("transposed core stage", f"Conv2DTranspose 3x3 {c}->{r}", lambda: L.Conv2DTranspose(r, 3, padding="same"), (batch, s, s, c)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(
        __doc__, quick_help="batch 8, tiny maps: checks the script runs", results="stage_layers"
    )
    parser.add_argument("--runs", type=int, default=None, help="warm runs per layer (default: 15, quick: 3)")
    args = parser.parse_args(argv)
    batch, size, channels, rank = (8, 6, 8, 4) if args.quick else (256, 14, 64, 16)
    runs = args.runs or (3 if args.quick else 15)
    keras.utils.set_random_seed(0)
    rows = []
    for kind, description, make, shape in cases(batch, size, channels, rank):
        rows.append((kind, description, "x".join(map(str, shape)), time_layer(make(), shape, runs=runs)))
    columns = [("stage kind", "<42"), ("layer", "<34"), ("input", "<18"), ("median ms", ">10.2f")]
    lines = [
        harness.run_line("replacement-chain layers on TensorFlow CPU kernels", quick=args.quick),
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {runs} warm runs per layer",
        "",
        harness.fixed_width(columns, rows),
    ]
    harness.report("\n".join(lines), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
