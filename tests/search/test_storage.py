"""Storage URL parsing: where the artifact store of a study lives."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from lrf_optuna.search._storage import artifact_dir_for, open_storage


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///studies/demo.db", "studies/demo.db.artifacts"),
        ("sqlite:////tmp/a/demo.db", "/tmp/a/demo.db.artifacts"),
        ("journal:///runs/demo.log", "runs/demo.log.artifacts"),
        ("journal:////tmp/a/demo.log", "/tmp/a/demo.log.artifacts"),
        ("postgresql://user@127.0.0.1/db", "studies/artifacts"),
        ("sqlite:///:memory:", "studies/artifacts"),
    ],
)
def test_artifact_dir_beside_the_storage_file(url, expected):
    assert str(artifact_dir_for(url)) == expected


def test_artifact_upload_works_for_an_absolute_sqlite_path(tmp_path):
    # Regression: "sqlite:////abs" once gave "//abs", which Optuna's store rejects.
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    study = optuna.create_study(storage=url, study_name="demo")
    directory = artifact_dir_for(url)
    directory.mkdir()
    payload = tmp_path / "model.keras"
    payload.write_bytes(b"model bytes")
    artifact_id = upload_artifact(
        artifact_store=FileSystemArtifactStore(str(directory)), file_path=str(payload), study_or_trial=study
    )
    assert (Path(tmp_path) / "demo.db.artifacts" / artifact_id).read_bytes() == b"model bytes"


def test_a_storage_is_always_named_none_is_refused():
    # run_study reads None as its default SQLite file, Optuna as memory: open_storage takes neither
    with pytest.raises(ValueError, match=r"InMemoryStorage\(\) for a study in memory\), received None"):
        open_storage(None)
    memory = optuna.storages.InMemoryStorage()
    assert open_storage(memory) is memory
