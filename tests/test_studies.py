"""Smoke test of a per-model study script (studies/compress_lenet5.py --quick)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from lrf_optuna.data import DEBIAN_DIR
from lrf_optuna.results._selection import FINETUNED_FROM

STUDIES = Path(__file__).resolve().parent.parent / "studies"

pytestmark = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(),
    reason=f"Debian package dataset-fashion-mnist not installed ({DEBIAN_DIR} missing)",
)


def _run(tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(STUDIES / "compress_lenet5.py"), "--quick", "--dir", str(tmp_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


MODEL_FILE = STUDIES / "models" / "lenet5.keras"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, str]:
    """One --quick run (shared by the resume test): its directory and the model file's digest."""
    tmp_path = tmp_path_factory.mktemp("lenet5")
    digest = hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest()
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "params" in first.stdout and "accuracy" in first.stdout
    return tmp_path, digest


def test_compress_lenet5_quick_runs_end_to_end(first_run):
    tmp_path, digest = first_run
    summary = json.loads((tmp_path / "lenet5-layerwise-summary.json").read_text())
    assert summary["trials"] == 20 and summary["original_params"] == 61706
    assert 0 < summary["params"] < summary["original_params"]
    assert 0 <= summary["accuracy_compressed"] <= 1 and 0 <= summary["accuracy_finetuned"] <= 1
    assert summary["accuracy_original"] > 0.8  # the trained reference model, on 1,000 test images
    assert Path(summary["model_file"]).is_file()
    assert (tmp_path / "lenet5-layerwise-report" / "pareto_2d.html").is_file()
    storage = f"sqlite:///{tmp_path}/lenet5-layerwise.db"
    (record,) = [t for t in optuna.load_study(study_name="lenet5-layerwise", storage=storage).trials
                 if FINETUNED_FROM in t.user_attrs]  # fmt: skip
    assert record.user_attrs[FINETUNED_FROM] == summary["trial"]
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == digest


# A second whole run (~15 s CPU), so slow only. What it checks is in the default suite:
# tests/search/test_study.py::test_resume_to_a_reached_count_runs_nothing,
# ::test_a_finetune_record_never_counts_toward_the_budget, ::test_resume_in_a_new_process,
# and tests/cli/test_cli.py::test_search_finetune_report_round_trip (input model untouched).
@pytest.mark.slow
def test_compress_lenet5_quick_resumes(first_run):
    tmp_path, digest = first_run
    second = _run(tmp_path)  # budget reached: resumes, adds no search trial
    assert second.returncode == 0, second.stderr[-3000:]
    storage = f"sqlite:///{tmp_path}/lenet5-layerwise.db"
    trials = optuna.load_study(study_name="lenet5-layerwise", storage=storage).trials
    searched = [t for t in trials if FINETUNED_FROM not in t.user_attrs]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in searched) == 20
    assert sum(FINETUNED_FROM in t.user_attrs for t in trials) == 2  # one fine-tune record per run
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == digest
