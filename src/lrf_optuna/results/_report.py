"""Reports of a search: Pareto table, plotly figures (HTML, optional PNG), summary text."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from lrf_optuna.core._cost import Cost
from lrf_optuna.results._finetune import FinetuneResult
from lrf_optuna.results._selection import pareto_trials
from lrf_optuna.search._objective import trial_metrics

__all__ = ["decisions_figure", "pareto_figures", "pareto_frame", "summary_table", "write_report"]

logger = logging.getLogger(__name__)
METHOD_COLORS = {
    "none": "#d0d0d0", "tucker2": "#1f77b4", "cp": "#ff7f0e", "svd": "#2ca02c",
    "spatial_svd": "#d62728", "tt": "#9467bd", "tucker": "#8c564b",
}  # fmt: skip


def _plan(trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    return json.loads(trial.user_attrs.get("plan", "{}"))


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per Pareto trial: objectives, ratios and how many layers use each method."""
    rows = []
    for trial in pareto_trials(study):
        metrics = trial_metrics(trial, study.metric_names)
        row = {
            "trial": trial.number, "params": int(metrics["params"]), "flops": int(metrics["flops"]),
            "macs": int(metrics["macs"]), "similarity": metrics["similarity"],
            **({"latency_ms": metrics["latency"]} if "latency" in metrics else {}),
            "params_ratio": trial.user_attrs.get("params_ratio"), "macs_ratio": trial.user_attrs.get("macs_ratio"),
            "params_removed": trial.user_attrs.get("params_removed"),
        }  # fmt: skip
        for method, count in trial.user_attrs.get("methods", {}).items():
            row[f"n_{method}"] = count
        rows.append(row)
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if c.startswith("n_")]
    frame[counts] = frame[counts].fillna(0).astype(int)
    return frame


def pareto_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """2-D (params vs similarity, colored by FLOPs) and 3-D Pareto fronts."""
    frame = pareto_frame(study)
    hover = [f"trial {t}" for t in frame["trial"]]
    flat = go.Figure(
        go.Scatter(
            x=frame["params"],
            y=frame["similarity"],
            mode="markers+lines",
            text=hover,
            marker={
                "color": frame["flops"],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "FLOPs"},
            },
        )
    )
    flat.update_layout(
        title=f"Pareto front of '{study.study_name}'", xaxis_title="params", yaxis_title="similarity"
    )
    cube = go.Figure(
        go.Scatter3d(x=frame["params"], y=frame["flops"], z=frame["similarity"], mode="markers", text=hover)
    )
    cube.update_layout(
        title=f"Pareto front of '{study.study_name}' (3-D)",
        scene={"xaxis_title": "params", "yaxis_title": "FLOPs", "zaxis_title": "similarity"},
    )
    return {"pareto_2d": flat, "pareto_3d": cube}


def decisions_figure(study: optuna.Study, layers: list[str]) -> go.Figure:
    """Per-layer decisions of every Pareto trial: color = method, text = rank."""
    trials = pareto_trials(study)
    figure = go.Figure()
    for method, color in METHOD_COLORS.items():
        xs, ys, texts = [], [], []
        for trial in trials:
            plan = _plan(trial)
            for layer in layers:
                chosen, _, rank = plan.get(layer, "none:").partition(":")
                if chosen == method:
                    xs.append(f"#{trial.number}")
                    ys.append(layer)
                    texts.append(rank)
        if xs:
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers+text",
                    text=texts,
                    name=method,
                    marker={"color": color, "size": 14, "symbol": "square"},
                )
            )
    figure.update_layout(
        title="Per-layer decisions on the Pareto front (text: rank)", xaxis_title="trial", yaxis_title="layer"
    )
    return figure


PNG_ATTEMPTS = 2  # kaleido 1.x can evaluate before its page has loaded ("kaleido_scopes is not defined")


def _write_pngs(figures: dict[str, go.Figure], out: Path) -> list[Path]:
    """Write every figure as PNG in one browser session; the written paths ([] without Chromium)."""
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        logger.info("no Chromium found: skipping PNG export")
        return []
    paths = [out / f"{name}.png" for name in figures]
    for attempt in range(1, PNG_ATTEMPTS + 1):
        for path in paths:  # a file left by an earlier report or a failed attempt must not count
            path.unlink(missing_ok=True)
        try:
            pio.write_images(list(figures.values()), paths)
            return paths
        except Exception as error:  # kaleido reports browser problems with many types
            logger.log(
                logging.WARNING if attempt == PNG_ATTEMPTS else logging.INFO,
                "PNG export failed on attempt %d of %d (%s)%s",
                attempt,
                PNG_ATTEMPTS,
                error,
                "; the HTML files have the same figures" if attempt == PNG_ATTEMPTS else "; retrying",
            )
    for path in paths:  # a failed attempt may leave partial files: none of them counts
        path.unlink(missing_ok=True)
    return []


def write_report(
    study: optuna.Study, out_dir: str | Path, *, layers: list[str], png: bool = True
) -> list[Path]:
    """Write pareto.csv and self-contained HTML figures (and PNG when a browser exists)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "pareto.csv"]
    pareto_frame(study).to_csv(written[0], index=False)
    figures = {**pareto_figures(study), "decisions": decisions_figure(study, layers)}
    for name, figure in figures.items():
        html = out / f"{name}.html"
        figure.write_html(str(html), include_plotlyjs=True)  # embedded plotly.js: works offline
        written.append(html)
    if png:
        written.extend(_write_pngs(figures, out))
    return written


def summary_table(original: Cost, compressed: Cost, result: FinetuneResult | None = None) -> str:
    """Plain-text comparison of the original and the compressed model."""
    rows = [
        (
            "params",
            f"{original.params:,}",
            f"{compressed.params:,}",
            f"{compressed.params / original.params:.1%}",
        ),
        (
            "FLOPs (2 x MACs)",
            f"{original.flops:,}",
            f"{compressed.flops:,}",
            f"{compressed.flops / max(original.flops, 1):.1%}",
        ),
    ]
    if result is not None:
        before = "" if result.accuracy_original is None else f"{result.accuracy_original:.4f}"
        rows.append(("accuracy (no fine-tune)", before, f"{result.accuracy_compressed:.4f}", ""))
        rows.append(
            (f"accuracy ({result.epochs} epoch fine-tune)", before, f"{result.accuracy_finetuned:.4f}", "")
        )
        rows.append(("fine-tune time", "", f"{result.seconds:.1f} s", ""))
    header = ("", "original", "compressed", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
