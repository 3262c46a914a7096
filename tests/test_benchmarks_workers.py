"""Smoke test of benchmarks/workers.py (its quick mode: Journal, 2 worker processes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "workers.py"


def test_workers_benchmark_quick():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "worker scaling (quick mode): 12 trials per study" in out
    for objective in ("layerwise", "trivial"):
        row = re.search(
            rf"^journal\s+{objective}\s+2\s+12\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+x$", out, re.M
        )
        assert row, f"no journal/{objective} row in:\n{out}"
        assert float(row.group(2)) > 0 and float(row.group(3)) > 0
