"""Smoke tests of the benchmark scripts (their quick modes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_search_throughput_quick():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "search_throughput.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "search throughput (quick mode)" in out
    # the throughput table: both storages, both objectives, a ratio per row
    for storage in ("memory", "sqlite"):
        for objective in ("trivial", "layerwise"):
            match = re.search(
                rf"^{storage}\s+{objective}\s+30\s+([\d.e+-]+)\s+([\d.e+-]+)\s+([\d.e+-]+)$", out, re.M
            )
            assert match, f"no {storage}/{objective} row in:\n{out}"
            assert float(match.group(2)) > 0 and float(match.group(3)) > 0
    # the evaluate table and the profile table
    assert re.search(r"^layerwise\s+200\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+<= 2 ms", out, re.M), out
    assert re.search(r"^model, new kernels\s+3\s", out, re.M), out
    assert re.search(r"^model, cached kernels\s+3\s", out, re.M), out
    profile = re.search(r"^16\s+\S+\s+3\s+(\d+)\s+[\d.]+", out, re.M)
    assert profile and int(profile.group(1)) > 10, out
