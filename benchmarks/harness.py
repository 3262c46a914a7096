"""What every benchmark script shares: standard flags, quiet logging, reference models and seeded
data, the run line, plain-text tables, and the result file a full run writes.

Import it before anything that imports TensorFlow (``import harness`` sorts first among the
third-party imports): it quiets TensorFlow's C++ log, which is read once when TensorFlow loads.
lrf_optuna and Optuna are imported only by the helpers that need them, so a parent process that
only starts children (profile_scaling.py) does not load TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

if TYPE_CHECKING:
    import keras
    import optuna

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / "studies" / "models"
RESULTS = HERE / "results"
REFERENCE_MODELS = ["lenet5", "vgg_small", "resnet_small", "mobilenet_small"]  # studies/README.md
# a table's model column, as wide as the longest reference model's name
MODEL_COLUMN = ("model", f"<{max(len(name) for name in REFERENCE_MODELS)}")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose ``--quick`` replaces the options named in ``quick`` (tiny budgets)."""

    def __init__(self, *, quick: Mapping[str, object], **kwargs) -> None:
        super().__init__(**kwargs)
        self.quick_settings = dict(quick)

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:
        parsed = super().parse_args(args, namespace)
        if getattr(parsed, "quick", False):
            vars(parsed).update(self.quick_settings)
        return parsed


def parser(
    doc: str,
    *,
    quick_help: str = "tiny budgets and data (smoke test)",
    quick: Mapping[str, object] | None = None,
    models: Sequence[str] | None = None,
    seed: bool = False,
    seeds: bool = False,
    cache: bool = False,
    search: bool = False,
    trials: int | None = None,
    results: str | None = None,
) -> argparse.ArgumentParser:
    """The standard flags, with the same names and meanings in every script.

    ``--quick`` (its settings ``quick`` replace the parsed options), ``--models`` (when ``models``
    is given: its default; empty: every model in studies/models), ``--seed`` / ``--seeds``,
    ``--cache`` (the profile cache directory), ``search``'s ``--population`` and
    ``--calibration``, ``--trials`` (default ``trials``) and ``--out``; ``results`` names the file
    in benchmarks/results/ that a full run writes when no ``--out`` is given.
    """
    made = _Parser(quick=quick or {}, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--quick", action="store_true", help=quick_help)
    if models is not None:
        made.add_argument(
            "--models", nargs="+", default=list(models) or None,
            help=f"reference models in studies/models (default: {' '.join(models) or 'all'})",
        )  # fmt: skip
    if seed:
        made.add_argument("--seed", type=int, default=0)
    if seeds:
        made.add_argument(
            "--seeds", type=int, nargs="+", default=None,
            help="repeat the whole run once per seed (search, calibration, fine-tuning data and "
            "initialization), then summarize per seed (default: --seed only)",
        )  # fmt: skip
    if cache:
        made.add_argument("--cache", default="studies/cache", help="profile cache (default: %(default)s)")
    if search:
        made.add_argument(
            "--population", type=int, default=50, help="NSGA-II population (default: %(default)s)"
        )
        made.add_argument(
            "--calibration", type=int, default=256, help="calibration images (default: %(default)s)"
        )
    if trials is not None:
        made.add_argument(
            "--trials", type=int, default=trials, help="trials per search (default: %(default)s)"
        )
    default_out = RESULTS / f"{results}.txt" if results else None
    made.add_argument(
        "--out", type=Path, default=None,
        help="also write the printed output to this file"
        + (f" (default in full mode: benchmarks/results/{default_out.name})" if default_out else ""),
    )  # fmt: skip
    made.set_defaults(default_out=default_out)
    return made


def start(*, progress: bool = True) -> float:
    """Quiet the libraries (``progress``: INFO lines with a time stamp on stderr); the start time."""
    import optuna

    if progress:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # predict() retracing notes per new model
    return time.perf_counter()


def report(text: str, args: argparse.Namespace, *, started: float | None = None) -> None:
    """Print ``text`` (then ``total N s`` since ``started``) and write it to ``--out``, or in a
    full run to the script's result file in benchmarks/results/ (quick runs write none)."""
    if started is not None:
        text = f"{text.rstrip()}\n\ntotal {time.perf_counter() - started:.0f} s"
    print(text, flush=True)
    path = args.out or (None if args.quick else args.default_out)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        logging.getLogger(__name__).info("written to %s", path)


def run_line(title: str, *, quick: bool) -> str:
    """``title (quick|full mode), date, machine, N CPU(s)``: the first line of most result files."""
    return (
        f"{title} ({'quick' if quick else 'full'} mode), {datetime.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    )


def reference_model(name: str) -> keras.Model:
    """The trained reference model studies/models/NAME.keras (``lrf_optuna``'s safe loader)."""
    from lrf_optuna.files._models import load_model_file

    path = MODELS / f"{name}.keras"
    if not path.is_file():
        known = sorted(p.stem for p in MODELS.glob("*.keras"))
        raise FileNotFoundError(
            f"Invalid reference model: expected one of {known} (studies/models/*.keras), received "
            f"{name!r}. Pass one of those names (studies/train_*.py train them)."
        )
    return load_model_file(path)


def calibration(x: np.ndarray, size: int, *, seed: int) -> np.ndarray:
    """``size`` samples of ``x`` drawn without replacement, as ``run_study``'s callers draw them."""
    from lrf_optuna.results._compress import calibration_subset

    return calibration_subset(x, size, seed=seed)


def search(model: keras.Model, calibration: np.ndarray, args: argparse.Namespace, **options) -> optuna.Study:
    """An in-memory NSGA-II search (``lo.run_study``) with the script's ``--trials``, ``--seed``,
    ``--population`` and ``--cache``; ``options`` override them or add search settings."""
    import optuna

    import lrf_optuna as lo

    budget = {"n_trials": args.trials} if "trials" in vars(args) else {}
    settings = {**budget, "seed": args.seed, "population_size": args.population, "cache_dir": args.cache}
    return lo.run_study(
        model,
        calibration,
        storage=optuna.storages.InMemoryStorage(),
        show_progress=False,
        **(settings | options),
    )


def shuffled(x: np.ndarray, y: np.ndarray, size: int | None, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` (all: None) pairs of a seeded permutation: the fine-tuning data."""
    order = np.random.default_rng(seed).permutation(len(x))[:size]
    return x[order], y[order]


def _alignment(spec: str) -> str:
    """The alignment and width of a format spec (``">9.1f"`` -> ``">9"``), for text cells."""
    return re.match(r"[<>^]?\d*", spec).group()


def fixed_width(
    columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[object]], *, rule: bool = True
) -> str:
    """A table whose columns are ``(header, format spec)``, a line of dashes under the header when
    ``rule``; a text cell in a number column (a placeholder such as ``"-"``) keeps only the
    column's alignment and width."""
    specs = [spec for _, spec in columns]
    header = " ".join(format(name, _alignment(spec)) for name, spec in columns)
    lines = [header, "-" * len(header)] if rule else [header]
    for row in rows:
        cells = (
            format(v, _alignment(s) if isinstance(v, str) else s) for v, s in zip(row, specs, strict=True)
        )
        lines.append(" ".join(cells))
    return "\n".join(lines)


def auto_width(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A left-aligned table of text cells, each column as wide as its widest cell."""
    cells = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
