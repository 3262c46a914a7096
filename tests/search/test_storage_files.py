"""SQLite files that are not this Optuna's databases: refused untouched, with the fix (real files)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import optuna
import pytest

from lrf_optuna.cli import main
from lrf_optuna.search._storage import open_storage

HEAD = optuna.storages.RDBStorage("sqlite:///:memory:").get_head_version()


def _state(path) -> tuple[str, int, list[str]]:
    """Bytes, mtime and the files beside it: everything a refusal must leave as it was."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def _tables(path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(name for (name,) in connection.execute("SELECT name FROM sqlite_master"))


@pytest.fixture
def other_app_db(tmp_path):
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.execute("INSERT INTO notes (body) VALUES ('keep me')")
    connection.close()
    return path


def _optuna_db(tmp_path, schema_version: str | None):
    """A real Optuna database with a study; its alembic_version rewritten when given."""
    path = tmp_path / "studies.db"
    storage = open_storage(f"sqlite:///{path}")
    optuna.create_study(storage=storage, study_name="x")
    storage.engine.dispose()
    if schema_version is not None:
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (schema_version,))
        connection.close()
    return path


def test_another_applications_database_is_refused_untouched(other_app_db):
    before, tables = _state(other_app_db), _tables(other_app_db)
    with pytest.raises(
        ValueError, match=r"Invalid SQLite database .*notes\.db'.*another application \(tables: notes\)"
    ):
        open_storage(f"sqlite:///{other_app_db}")
    assert _state(other_app_db) == before
    assert _tables(other_app_db) == tables == ["notes"]  # Optuna used to add its dozen tables here


def test_a_text_file_named_db_is_refused_untouched(tmp_path):
    path = tmp_path / "x.db"
    path.write_text("not a database\n" * 100)
    before = _state(path)
    with pytest.raises(ValueError, match=r"SQLite cannot open \(file is not a database.*not modified"):
        open_storage(f"sqlite:///{path}")
    assert _state(path) == before


def test_an_empty_file_becomes_a_study_database(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    optuna.create_study(storage=open_storage(f"sqlite:///{path}"), study_name="x")
    assert "alembic_version" in _tables(path)


def test_a_database_of_this_schema_opens(tmp_path):
    path = _optuna_db(tmp_path, schema_version=None)
    assert optuna.get_all_study_names(open_storage(f"sqlite:///{path}", create=False)) == ["x"]


def test_an_older_optuna_schema_names_versions_and_the_upgrade_command(tmp_path):
    path = _optuna_db(tmp_path, schema_version="v3.0.0.d")  # a schema Optuna 3.0 wrote
    before = _state(path)
    url = f"sqlite:///{path}"
    with pytest.raises(ValueError) as error:
        open_storage(url)
    message = str(error.value)
    assert f"expected Optuna schema version {HEAD} (Optuna {optuna.__version__})" in message
    assert "received schema version v3.0.0.d (written by Optuna" in message
    assert f"`optuna storage upgrade --storage {url}`" in message and "another --storage" in message
    assert _state(path) == before


def test_a_newer_optuna_schema_says_to_upgrade_optuna(tmp_path):
    path = _optuna_db(tmp_path, schema_version="v9.0.0.a")
    before = _state(path)
    with pytest.raises(
        ValueError, match=r"received schema version v9\.0\.0\.a .*newer Optuna.*pip install -U optuna"
    ):
        open_storage(f"sqlite:///{path}")
    assert _state(path) == before


@pytest.mark.parametrize("kind", ["other application", "older schema"])
def test_report_on_such_a_file_exits_2_with_the_message(tmp_path, monkeypatch, caplog, other_app_db, kind):
    monkeypatch.chdir(tmp_path)
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save("tiny.keras")
    if kind == "other application":
        path, expected = other_app_db, "another application (tables: notes)"
    else:
        path, expected = _optuna_db(tmp_path, schema_version="v3.0.0.d"), "optuna storage upgrade --storage"
    before = _state(path)
    argv = ["report", "--study", "x", "--storage", f"sqlite:///{path}", "--model", "tiny.keras"]
    assert main(argv) == 2
    assert expected in caplog.text
    assert _state(path) == before
