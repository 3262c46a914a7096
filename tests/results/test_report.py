"""Reports: Pareto table, offline HTML figures, summary text."""

from __future__ import annotations

import json
import shutil

import optuna
import pandas as pd
import pytest

import lrf_optuna as lo
from conftest import WRITE_PNGS
from lrf_optuna.core._cost import Cost
from lrf_optuna.results import _report
from lrf_optuna.results._finetune import FinetuneResult


def study_with_plans() -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize", "maximize"])
    distribution = optuna.distributions.IntDistribution(1, 8)
    rows = [  # (params, macs, similarity, plan, methods)
        (100, 1000, 1.0, {}, {"none": 2}),
        (60, 500, 0.9, {"conv": "tucker2:4"}, {"tucker2": 1, "none": 1}),
        (30, 300, 0.7, {"conv": "cp:2", "fc": "svd:3"}, {"cp": 1, "svd": 1}),
        (80, 900, 0.6, {"fc": "svd:1"}, {"svd": 1, "none": 1}),  # dominated by the 60-param trial
    ]
    for params, macs, similarity, plan, methods in rows:
        attrs = {"plan": json.dumps(plan), "methods": methods, "params_ratio": params / 100,
                 "macs_ratio": macs / 1000, "params_removed": 1 - params / 100}  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                params={"r": 1},
                distributions={"r": distribution},
                values=[params, macs, similarity],
                user_attrs=attrs,
            )
        )
    return study


def test_pareto_frame_rows_and_method_counts():
    frame = lo.results.pareto_frame(study_with_plans())
    assert frame["trial"].tolist() == [2, 1, 0]
    assert frame["params"].tolist() == [30, 60, 100] and frame["similarity"].tolist() == [0.7, 0.9, 1.0]
    assert frame.loc[0, ["n_cp", "n_svd", "n_tucker2", "n_none"]].tolist() == [1, 1, 0, 0]
    assert frame.loc[2, "n_none"] == 2 and frame.loc[1, "params_removed"] == 0.4


def test_write_report_is_offline_html_and_csv(tmp_path):
    written = lo.results.write_report(study_with_plans(), tmp_path, layers=["conv", "fc"], png=False)
    assert {p.name for p in written} == {"pareto.csv", "pareto_2d.html", "pareto_3d.html", "decisions.html"}
    assert pd.read_csv(tmp_path / "pareto.csv")["trial"].tolist() == [2, 1, 0]
    html = (tmp_path / "decisions.html").read_text()
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js embedded, nothing fetched
    assert '"tucker2"' in html and '"cp"' in html  # one trace per method used


@pytest.mark.skipif(shutil.which("chromium") is None, reason="PNG export needs Chromium")
def test_write_report_exports_each_figure_as_png_when_chromium_exists(tmp_path, monkeypatch):
    # the one test that pays for Chromium (conftest turns PNG export off for the others)
    monkeypatch.setattr(_report, "_write_pngs", WRITE_PNGS)
    written = lo.results.write_report(study_with_plans(), tmp_path, layers=["conv", "fc"])
    pngs = [p for p in written if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == ["decisions.png", "pareto_2d.png", "pareto_3d.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_png_export_retries_once_and_never_counts_a_stale_file(tmp_path, monkeypatch, caplog):
    # kaleido 1.x sometimes evaluates before its page loaded ("kaleido_scopes is not defined", seen in CI)
    monkeypatch.setattr(_report, "_write_pngs", WRITE_PNGS)
    monkeypatch.setattr(_report.shutil, "which", lambda name: "/usr/bin/" + name)
    calls = []

    def flaky_write_images(figures, paths):
        calls.append(len(figures))
        if len(calls) == 1:
            paths[0].write_bytes(b"half")  # a partial file from the failed attempt
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
        for path in paths:
            path.write_bytes(b"png")

    monkeypatch.setattr(_report.pio, "write_images", flaky_write_images)
    written = lo.results.write_report(study_with_plans(), tmp_path, layers=["conv", "fc"])
    assert calls == [3, 3]
    assert sorted(p.name for p in written if p.suffix == ".png") == [
        "decisions.png",
        "pareto_2d.png",
        "pareto_3d.png",
    ]
    assert {p.read_bytes() for p in tmp_path.glob("*.png")} == {b"png"}

    def broken_write_images(figures, paths):
        paths[0].write_bytes(b"half")
        raise RuntimeError("no browser")

    (tmp_path / "decisions.png").write_bytes(b"stale")  # from an earlier report
    monkeypatch.setattr(_report.pio, "write_images", broken_write_images)
    written = lo.results.write_report(study_with_plans(), tmp_path, layers=["conv", "fc"])
    assert [p for p in written if p.suffix == ".png"] == [] and list(tmp_path.glob("*.png")) == []
    assert "attempt 2 of 2" in caplog.text and "HTML files have the same figures" in caplog.text


def test_summary_table_text():
    result = FinetuneResult(0.9, 0.5, 0.88, 12.34, 1)
    text = lo.results.summary_table(Cost(params=1000, macs=5000), Cost(params=250, macs=2500), result)
    lines = text.splitlines()
    assert lines[0].split() == ["original", "compressed", "ratio"]
    assert lines[2].split() == ["params", "1,000", "250", "25.0%"]
    assert lines[3].split() == ["FLOPs", "(2", "x", "MACs)", "10,000", "5,000", "50.0%"]
    assert "0.8800" in text and "12.3 s" in text
