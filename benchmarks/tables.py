"""Plain-text tables and the run line shared by the benchmark scripts."""

from __future__ import annotations

import datetime
import os
import platform
import re
from collections.abc import Iterable, Sequence


def run_line(title: str, *, quick: bool) -> str:
    """``title (quick|full mode), date, machine, N CPU(s)``: the first line of every result file."""
    return (
        f"{title} ({'quick' if quick else 'full'} mode), {datetime.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    )


def _alignment(spec: str) -> str:
    """The alignment and width of a format spec (``">9.1f"`` -> ``">9"``), for text cells."""
    return re.match(r"[<>^]?\d*", spec).group()


def fixed_width(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[object]]) -> str:
    """A table whose columns are ``(header, format spec)``; a text cell in a number column (a
    placeholder such as ``"-"``) keeps only the column's alignment and width."""
    specs = [spec for _, spec in columns]
    header = " ".join(format(name, _alignment(spec)) for name, spec in columns)
    lines = [header, "-" * len(header)]
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
