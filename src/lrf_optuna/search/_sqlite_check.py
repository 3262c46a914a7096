"""What an existing SQLite file holds, read before Optuna may write to it.

``optuna.storages.RDBStorage`` creates its tables in whatever database it opens (another
application's file gains a dozen tables) and only then checks the schema version, with a
RuntimeError. ``check_sqlite_file`` reads the file first, through SQLite itself, and refuses a
file that is not an Optuna database or whose Optuna schema is another version, leaving it as it was.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from pathlib import Path

import optuna

__all__ = ["check_sqlite_file", "unreadable"]

# Tables of every Optuna RDB schema; one of them is enough to call a file an Optuna database.
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info", "alembic_version"})


@functools.cache
def _schema_versions() -> tuple[str, tuple[str, ...]]:
    """(this Optuna's schema version, every version it knows), from a throwaway in-memory storage."""
    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    try:
        return storage.get_head_version(), tuple(storage.get_all_versions())
    finally:
        storage.engine.dispose()


def _read(path: Path) -> tuple[set[str], str | None, str | None]:
    """(table names, alembic schema version, library version that wrote it) of the file."""
    # A connection of SQLite itself (never a Python open(): closing another descriptor of the file
    # would drop the locks of SQLAlchemy's connections); it only reads, and takes the usual locks.
    uri = path.resolve().as_uri() + "?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=60)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {name for (name,) in rows}
        schema = library = None
        if "alembic_version" in tables:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            schema = found[0] if found else None
        if "version_info" in tables:
            found = connection.execute("SELECT library_version FROM version_info").fetchone()
            library = found[0] if found else None
    return tables, schema, library


def unreadable(url: str, reason: str) -> ValueError:
    return ValueError(
        f"Invalid SQLite database '{url}': expected an Optuna SQLite database, received a file that "
        f"SQLite cannot open ({reason}: corrupt, or another format). The file was not modified. "
        "Pass another --storage, or restore the file from a backup."
    )


def check_sqlite_file(path: Path, *, url: str) -> None:
    """ValueError, and the file untouched, unless ``path`` is empty, new or an Optuna database of this schema.

    A file without a recorded schema version yet (another process creating it) is left to Optuna.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        tables, schema, library = _read(path)
    except sqlite3.DatabaseError as error:
        raise unreadable(url, str(error)) from error
    if tables and not tables & OPTUNA_TABLES:
        shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
        raise ValueError(
            f"Invalid SQLite database '{url}': expected an Optuna study database, received a database "
            f"of another application (tables: {shown}). The file was not modified. Pass another "
            "--storage (a new file is created there)."
        )
    head, known = _schema_versions()
    if schema is None or schema == head:
        return
    writer = f"written by Optuna {library}" if library else "written by another Optuna"
    if schema in known:
        fix = (
            f"Fix: back up the file, then `optuna storage upgrade --storage {url}`; "
            "or pass another --storage."
        )
    else:
        fix = "It comes from a newer Optuna. Fix: `pip install -U optuna`, or pass another --storage."
    raise ValueError(
        f"Invalid SQLite database '{url}': expected Optuna schema version {head} (Optuna "
        f"{optuna.__version__}), received schema version {schema} ({writer}). The file was not "
        f"modified. {fix}"
    )
