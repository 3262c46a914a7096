"""Smoke tests of the benchmark scripts (their quick modes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The rows of the plain-text table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    assert set(lines[start + 1].replace(" ", "")) == {"-"}, lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or not line[0].isalnum() or "  " not in line:
            break
        rows.append([cell for cell in line.split("  ") if cell.strip()])
    return [[cell.strip() for cell in row] for row in rows]


def test_search_throughput_quick():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "search_throughput.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("search throughput (quick mode)"), out

    throughput = table_rows(out, "storage  objective")
    assert [row[:2] for row in throughput] == [
        ["memory", "trivial"],
        ["memory", "layerwise"],
        ["sqlite", "trivial"],
        ["sqlite", "layerwise"],
    ], out
    for _storage, objective, trials, wall, cpu, rate, ratio in throughput:
        assert int(trials) == 20 and float(cpu) >= 0
        assert float(wall) > 0 and float(rate) == pytest.approx(20 / float(wall), rel=0.01)
        assert float(ratio) > 0 and (objective != "trivial" or float(ratio) == 1.0)

    evaluate = table_rows(out, "proxy  ")
    assert [row[0] for row in evaluate] == ["layerwise", "model, new kernels", "model, same plans again"]
    assert evaluate[0][1] == "200" and evaluate[0][-1].startswith("mean <= 2 ms")
    assert all(float(row[2]) > 0 for row in evaluate)

    (profile,) = table_rows(out, "samples  methods")
    assert profile[:3] == ["16", "6", "2"] and int(profile[3]) > 10  # decompositions
    per_method = table_rows(out, "method  ")
    assert {row[0] for row in per_method} == {"tucker2", "cp", "svd", "spatial_svd", "tt", "tucker"}
    assert sum(int(row[1]) for row in per_method) == int(profile[3])
