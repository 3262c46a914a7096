"""``lrf-optuna``'s argument parser: its sub-commands and options (no TensorFlow imported)."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "studies/models/resnet_small.keras"
# spelled out (not imported) so that `--help` does not import TensorFlow; a test pins them
OBJECTIVES = ("params", "flops", "latency", "similarity")  # lo.search.OBJECTIVES, pinned by a test
METRICS = ("cka", "cosine", "nmse", "output_cka", "output_cosine", "output_nmse", "weight_error")


def _common(parser: argparse.ArgumentParser, *, study: bool = True, model: bool = True) -> None:
    recorded = "the study's recorded one, else " if study else ""
    if model:
        parser.add_argument(
            "--model", default=None, help=f"trained .keras model (default: {recorded}{DEFAULT_MODEL})"
        )
        parser.add_argument(
            "--data",
            default=None,
            help="'fashion-mnist', an .npz with x_train, y_train, x_test, y_test, "
            f"or (search/worker/profile only) an .npy of inputs (default: {recorded}fashion-mnist)",
        )
        parser.add_argument(
            "--calibration", type=int, default=None, help=f"calibration samples (default: {recorded}256)"
        )
        parser.add_argument(
            "--cache-dir", default="studies/cache", help="profile cache directory (default: %(default)s)"
        )
    if study:
        parser.add_argument("--study", default="demo", help="study name (default: %(default)s)")
        parser.add_argument(
            "--storage", default=None, help="storage URL (default: sqlite:///studies/<study>.db)"
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed for sampling, decompositions and training (default: {recorded}0)",
    )


def _fixed(text: str) -> tuple[str, tuple[str, int]]:
    """``layer=method:rank`` -> (layer, (method, rank))."""
    layer, _, choice = text.partition("=")
    method, _, rank = choice.partition(":")
    if not (layer and method and rank.isdigit()):
        raise argparse.ArgumentTypeError(f"expected layer=method:rank (e.g. conv2=cp:8), received {text!r}")
    return layer, (method, int(rank))


def _search_options(parser: argparse.ArgumentParser) -> None:
    """Search settings; left out (None), they are the study's recorded ones (a new study's defaults)."""
    parser.add_argument(
        "--trials", type=int, default=1000, help="total COMPLETE trials to reach (default: %(default)s)"
    )
    parser.add_argument("--proxy", choices=["layerwise", "model"], default=None, help="(default: layerwise)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="similarity metric (output_*, weight_error: layerwise only; default: cosine)",
    )
    parser.add_argument(
        "--aggregator", choices=["mean", "product", "min", "weighted"], default=None, help="(default: mean)"
    )
    parser.add_argument(
        "--conv-methods",
        nargs="+",
        choices=["tucker2", "cp", "svd", "spatial_svd"],
        default=None,
        help="methods searched for conv layers (default: all four)",
    )
    parser.add_argument(
        "--dense-methods",
        nargs="+",
        choices=["svd", "tt", "tucker"],
        default=None,
        help="methods searched for dense layers (default: svd, the measured best; tt, tucker also)",
    )
    parser.add_argument(
        "--exclude", nargs="+", default=None, metavar="PATTERN",
        help="layers kept whole: names or fnmatch patterns (e.g. conv1 'dense*')",
    )  # fmt: skip
    parser.add_argument(
        "--fixed", nargs="+", type=_fixed, default=None, metavar="LAYER=METHOD:RANK",
        help="layers factorized as given, not searched (e.g. conv2=cp:8)",
    )  # fmt: skip
    parser.add_argument(
        "--min-rank-fraction", type=float, default=None, metavar="F",
        help="offer each method only ranks >= ceil(F x its largest useful rank) (0..1; default: 0)",
    )  # fmt: skip
    parser.add_argument("--sampler", choices=["nsga2", "nsga3", "tpe"], default=None, help="(default: nsga2)")
    parser.add_argument("--population", type=int, default=None, help="NSGA population size (default: 50)")
    parser.add_argument("--max-params", type=int, default=None, help="constraint: at most this many params")
    parser.add_argument("--max-macs", type=int, default=None, help="constraint: at most this many MACs")
    parser.add_argument(
        "--max-flops", type=int, default=None, help="constraint: at most this many FLOPs (2 x MACs)"
    )
    parser.add_argument(
        "--max-latency-ms", type=float, default=None,
        help="constraint: predicted latency at most this (ms per batch; see --latency-runtime)",
    )  # fmt: skip
    parser.add_argument(
        "--objectives", nargs="+", choices=OBJECTIVES, default=None,
        help="2 to 4 objectives (default: params flops similarity; FLOPs = 2 x MACs; latency: "
        "predicted from a table measured once per model and machine)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-runtime", choices=("tflite", "keras"), default=None,
        help="where latency is measured (default: tflite, 1 thread)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-batch-size", type=int, default=None, help="batch size of latency (default: 1)"
    )
    parser.add_argument(
        "--min-similarity", type=float, default=None, help="constraint: similarity at least this"
    )


def _finetune_options(parser: argparse.ArgumentParser) -> None:
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument(
        "--trial", type=int, default=None, help="trial number to compress (default: Pareto knee)"
    )
    pick.add_argument(
        "--pick-min-similarity", type=float, default=None, help="fewest params with similarity >= x"
    )
    pick.add_argument("--pick-max-params", type=int, default=None, help="most similar with params <= n")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument(
        "--distill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="distill from the original model's outputs (default: yes, lo.finetune's default)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak Adam learning rate (default: lo.finetune's, 3e-4)",
    )
    parser.add_argument(
        "--schedule", choices=("cosine", "constant"), default=None,
        help="learning-rate schedule (default: lo.finetune's, cosine decay to 0)",
    )  # fmt: skip
    parser.add_argument(
        "--output", default=None, help="compressed .keras path (default: studies/<study>-trial<N>.keras)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrf-optuna", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="the whole method on real Fashion-MNIST with the default model")
    _common(demo)
    _search_options(demo)
    _finetune_options(demo)
    profile = commands.add_parser("profile", help="compute (or load) the calibration profile and print it")
    _common(profile, study=False)
    profile.add_argument("--ranks", type=int, default=8, help="ranks per method (<= 16)")
    profile.add_argument(
        "--metric", choices=METRICS, default=None,
        help="the search's metric: output_* also computes the network-output columns (a forward "
        "pass per candidate), as `search --metric` would, and caches the same profile",
    )  # fmt: skip
    search = commands.add_parser("search", help="run or resume the NSGA-II search")
    _common(search)
    _search_options(search)
    worker = commands.add_parser(
        "worker", help="join a study created by `search` (e.g. --trials 0) and share its search"
    )
    _common(worker)
    worker.add_argument(
        "--trials", type=int, default=1000, help="total COMPLETE trials of the study (default: %(default)s)"
    )
    worker.add_argument(
        "--worker-id", type=int, default=None, help="offsets the sampler seed (default: the process id)"
    )
    tune = commands.add_parser("finetune", help="select a trial, materialize it, fine-tune once, save")
    _common(tune)
    _finetune_options(tune)
    report = commands.add_parser("report", help="Pareto table and HTML/PNG figures of a study")
    _common(report)
    report.add_argument("--out", default=None, help="output directory (default: studies/<study>-report)")
    board = commands.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    _common(board, model=False)
    board.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, local only)")
    board.add_argument("--port", type=int, default=8080)
    _export_and_bench(commands)
    return parser


QUANTIZATIONS = (
    "none",
    "float16",
    "dynamic",
)  # lo.runtime.QUANTIZATIONS, None spelled "none"; a test pins them


def _export_and_bench(commands) -> None:
    export = commands.add_parser(
        "export", help="convert a fine-tuned trial's (or any) .keras model to .tflite, checked against Keras"
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="export the model `lrf-optuna finetune` recorded in this study")
    source.add_argument("--model", help="export this .keras file instead")
    export.add_argument("--storage", default=None, help="storage URL (default: sqlite:///studies/<study>.db)")
    export.add_argument(
        "--trial", type=int, default=None, help="search trial whose fine-tuned model to export "
        "(default: the study's latest fine-tuned one)",
    )  # fmt: skip
    export.add_argument(
        "--quantization", choices=QUANTIZATIONS, default="none",
        help="none (float32), float16 weights, or dynamic (int8 weights) (default: %(default)s)",
    )  # fmt: skip
    export.add_argument(
        "--output", default=None, help=".tflite path (default: beside the .keras model, same name)"
    )
    export.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs")
    bench = commands.add_parser(
        "bench", help="params, FLOPs, file size and measured latency (Keras, TFLite) of one or two models"
    )
    bench.add_argument("--model", required=True, help="a .keras model")
    bench.add_argument("--compare", default=None, help="a second .keras model, shown beside with the ratio")
    bench.add_argument("--runs", type=int, default=30, help="timed runs per latency (default: %(default)s)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: %(default)s)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
