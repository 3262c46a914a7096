"""optuna-dashboard through `lrf-optuna dashboard`, checked in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_study(path: Path) -> None:
    from lrf_optuna.search._objective import DEFAULT_OBJECTIVES, directions

    # Seeded: unseeded, no trial had a > 0.8 (so nothing infeasible to show) about once in 30 runs.
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(
        storage=f"sqlite:///{path}",
        study_name="board",
        directions=directions(DEFAULT_OBJECTIVES),
        sampler=sampler,
    )
    study.set_metric_names(list(DEFAULT_OBJECTIVES))

    def objective(trial):
        a, b = trial.suggest_float("a", 0, 1), trial.suggest_float("b", 0, 1)
        trial.set_constraint("max_params", a - 0.8)
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [a - 0.8])
        return 1000 * a, 500 * b, 1 - a * b

    study.optimize(objective, n_trials=15)
    feasible = [t.params["a"] <= 0.8 for t in study.trials]
    assert any(feasible) and not all(feasible)  # both kinds for the dashboard to tell apart


def _chromium(url: str, user_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={user_dir}", "--window-size=1400,1400",
        "--virtual-time-budget=20000",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *extra, url], capture_output=True, text=True, timeout=120)


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dashboard exited early: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard did not answer {url} within {seconds} s")


def _dashboard(database, study: str) -> list[str]:
    """``lrf-optuna dashboard`` on ``database``'s ``study`` (a new process)."""
    return [
        sys.executable,
        "-m",
        "lrf_optuna.cli",
        "dashboard",
        "--storage",
        f"sqlite:///{database}",
        "--study",
        study,
    ]


def test_dashboard_shows_pareto_front_with_metric_names(tmp_path):
    database = tmp_path / "board.db"
    _make_study(database)
    port = _free_port()
    command = [*_dashboard(database, "board"), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/studies", server)
        page = f"http://127.0.0.1:{port}/dashboard/studies/1"
        dom = _chromium(page, tmp_path / "profile-dom", "--dump-dom").stdout
        assert "Pareto Front" in dom
        for name in ("params", "flops", "similarity"):
            assert name in dom, f"metric name {name!r} not rendered"
        assert "Infeasible" in dom  # the legacy constraints attr makes feasibility visible
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        _chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}")
        assert shot.stat().st_size > 10_000
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_dashboard_refuses_unknown_study(tmp_path):
    database = tmp_path / "board.db"
    _make_study(database)
    result = subprocess.run(_dashboard(database, "nope"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Invalid --study" in result.stderr and "board" in result.stderr
