"""Optuna storages from a URL: SQLite tuned for a search loop, Journal files, other RDBs.

RDB storages (SQLite, PostgreSQL, MySQL) run with heartbeats: a RUNNING trial whose
process has been silent for ``grace_period`` seconds is marked FAIL by the next trial
that starts, and ``RetryHeartbeatStaleTrialCallback`` enqueues it again (same params).
Intervals come from ``HeartbeatSettings`` (or the environment, see ``from_env``).
Journal files have no heartbeats; ``lrf_optuna.search._worker`` recovers them by process id.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import warnings
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc

from lrf_optuna.search._sqlite_check import check_sqlite_file, unreadable

__all__ = ["HeartbeatSettings", "artifact_dir_for", "default_storage_url", "open_storage", "storage_label"]

logger = logging.getLogger(__name__)
JOURNAL_PREFIX = "journal:///"
SQLITE_PREFIX = "sqlite:///"
ENV_INTERVAL = "LRF_OPTUNA_HEARTBEAT_INTERVAL"
ENV_GRACE = "LRF_OPTUNA_HEARTBEAT_GRACE"
ENV_CONNECT_TIMEOUT = "LRF_OPTUNA_CONNECT_TIMEOUT"
CREATE_HINT = "Create the study first with `lrf-optuna search --storage URL --study NAME --trials 0`."


@dataclasses.dataclass(frozen=True)
class HeartbeatSettings:
    """Heartbeat ``interval`` and ``grace_period`` (seconds) of RDB storages; retries per trial."""

    interval: int = 30
    grace_period: int = 90
    max_retry: int | None = 3

    def __post_init__(self):
        for name in ("interval", "grace_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid heartbeat `{name}`: expected an integer >= 1, received {value!r}")
        if self.grace_period <= self.interval:
            raise ValueError(
                f"Invalid heartbeat `grace_period`: expected more than the interval ({self.interval} s), "
                f"received {self.grace_period} s"
            )

    @classmethod
    def from_env(cls) -> HeartbeatSettings:
        """``$LRF_OPTUNA_HEARTBEAT_INTERVAL`` / ``$LRF_OPTUNA_HEARTBEAT_GRACE`` over the defaults."""
        values = {}
        for name, variable in (("interval", ENV_INTERVAL), ("grace_period", ENV_GRACE)):
            text = os.environ.get(variable)
            if text:
                try:
                    values[name] = int(text)
                except ValueError:
                    raise ValueError(f"Invalid ${variable}: expected an integer, received {text!r}") from None
        return cls(**values)


def default_storage_url(study_name: str, directory: str | os.PathLike = "studies") -> str:
    return f"sqlite:///{Path(directory) / f'{study_name}.db'}"


def storage_label(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers (the dashboard) and the writer work at once, and with
    # synchronous=NORMAL a trial costs ~3x less storage time (shared/NOTES.md).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    dbapi_connection.isolation_level = None  # no implicit BEGINs: _sqlite_begin emits them


def _sqlite_begin(connection) -> None:
    # Python's sqlite3 runs a SELECT outside any transaction, so two processes could both
    # read a WAITING trial and both pop it (run it twice). BEGIN IMMEDIATE takes the write
    # lock first: a read-then-write is atomic across worker processes.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _file_path(url: str, prefix: str) -> Path | None:
    if not url.startswith(prefix) or url == SQLITE_PREFIX + ":memory:":
        return None
    # sqlite:///rel/path.db is relative, sqlite:////abs/path.db absolute ("/abs", not "//abs":
    # POSIX keeps a leading "//", and Optuna's artifact store then rejects every artifact id).
    return Path(url[len(prefix) :])


def artifact_dir_for(storage_url: str) -> Path:
    """The artifact store beside a SQLite/Journal file (``<db>.artifacts``), else ./studies/artifacts."""
    for prefix in (SQLITE_PREFIX, JOURNAL_PREFIX):
        path = _file_path(storage_url, prefix)
        if path is not None:
            return path.with_name(path.name + ".artifacts")
    return Path("studies") / "artifacts"


def _prepare_file(path: Path, *, create: bool, kind: str) -> None:
    if path.is_dir():
        raise ValueError(f"Invalid `storage` {kind} path '{path}': expected a file, received a directory")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"Invalid `storage`: no {kind} at '{path}'. {CREATE_HINT}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PermissionError(
                f"Invalid `storage` directory '{path.parent}': expected a writable directory, "
                f"received one that cannot be created ({error.strerror}). Choose another --storage path."
            ) from error


def _journal(path: Path) -> optuna.storages.BaseStorage:
    try:
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    except PermissionError as error:
        raise PermissionError(
            f"Invalid journal file '{path}': expected a writable file, received one that cannot be "
            f"opened ({error.strerror}). Choose another --storage path."
        ) from error
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Invalid journal file '{path}': expected an Optuna journal log, received one that "
            f"cannot be replayed ({type(error).__name__}: {error}). Pass another --storage."
        ) from error


def _engine_kwargs(url: str) -> dict:
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    timeout = int(os.environ.get(ENV_CONNECT_TIMEOUT) or 10)
    if dialect == "sqlite":
        return {"connect_args": {"timeout": 60}}
    if dialect in ("postgresql", "mysql", "mariadb"):
        # Without it an unreachable server hangs for minutes (the OS TCP timeout).
        return {"connect_args": {"connect_timeout": timeout}, "pool_pre_ping": True}
    return {}


def _with_driver(url: str) -> str:
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; use psycopg2 when only it is here.
    missing = importlib.util.find_spec("psycopg") is None
    if url.startswith("postgresql://") and missing and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _rdb(url: str, heartbeat: HeartbeatSettings) -> optuna.storages.RDBStorage:
    url = _with_driver(url)
    label = storage_label(url)
    try:
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.x
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat.interval,
                grace_period=heartbeat.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=heartbeat.max_retry
                ),
            )
    except ImportError as error:
        raise ImportError(
            f"Invalid `storage` '{label}': its database driver is not installed ({error}). "
            "Fix: `pip install psycopg2-binary` for postgresql://, `pip install pymysql` for mysql+pymysql://."
        ) from error
    except sqlalchemy.exc.ArgumentError as error:
        raise ValueError(
            f"Invalid `storage` URL '{label}': expected 'sqlite:///path.db', 'journal:///path.log' "
            f"or 'postgresql://user:password@host:port/db', received one SQLAlchemy rejects ({error})"
        ) from error
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        if url.startswith(SQLITE_PREFIX):
            raise unreadable(label, reason) from error
        raise ConnectionError(
            f"Invalid `storage` '{label}': cannot connect to the database ({reason}). "
            "Fix: start the database server, or correct the host, port, user, password and name."
        ) from error


def open_storage(
    url: str | optuna.storages.BaseStorage,
    *,
    heartbeat: HeartbeatSettings | None = None,
    create: bool = True,
) -> optuna.storages.BaseStorage:
    """``sqlite:///path.db``, ``journal:///path.log``, any SQLAlchemy URL, or a storage object.

    ``None`` is refused: ``run_study`` reads it as its default SQLite file and Optuna as memory,
    so a storage here is always named (``optuna.storages.InMemoryStorage()`` for memory).

    With ``create=False`` a missing SQLite or journal file is a FileNotFoundError
    instead of a new empty storage. ``heartbeat`` defaults to ``HeartbeatSettings.from_env()``.
    """
    if isinstance(url, optuna.storages.BaseStorage):
        return url
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            "Invalid `storage`: expected a URL such as 'sqlite:///studies/demo.db', "
            f"'journal:///studies/demo.log' or 'postgresql://user@host/db', or a storage object "
            f"(optuna.storages.InMemoryStorage() for a study in memory), received {url!r}"
        )
    journal_path = _file_path(url, JOURNAL_PREFIX)
    if journal_path is not None:
        _prepare_file(journal_path, create=create, kind="journal file")
        return _journal(journal_path)
    heartbeat = heartbeat or HeartbeatSettings.from_env()
    sqlite_path = _file_path(url, SQLITE_PREFIX)
    if sqlite_path is None:
        return _rdb(url, heartbeat)
    # No Python open() of the file here: closing any descriptor of an SQLite file drops
    # the POSIX locks of every SQLite connection of this process (corruption). SQLite
    # itself reads it first: Optuna would add its tables to any database it opens.
    _prepare_file(sqlite_path, create=create, kind="database")
    check_sqlite_file(sqlite_path, url=storage_label(url))
    storage = _rdb(url, heartbeat)
    sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
    sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
    storage.engine.dispose()  # reconnect so every pooled connection gets the pragmas
    return storage
