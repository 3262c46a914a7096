"""The quickstart notebook runs top to bottom (needs the Fashion-MNIST Debian package)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    from lrf_optuna.data import fashion_mnist

    try:
        fashion_mnist()
    except FileNotFoundError as error:
        pytest.skip(f"Fashion-MNIST not installed: {error}")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.chdir(tmp_path)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "accuracy" in outputs and "params" in outputs
