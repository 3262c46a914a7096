"""JSON files that are never half-written, and an exclusive lock between processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lrf_optuna.files._models import writable_directory

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock, concurrent processes may each compute
    fcntl = None

__all__ = ["exclusive", "read_json", "write_json_atomic"]

logger = logging.getLogger(__name__)


def write_json_atomic(path: Path, document: object) -> None:
    """Write through a temporary file and a rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None (with a warning) when missing or unreadable."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("ignoring %s: it cannot be read (%s); recomputing", path, error)
        return None
    return document if isinstance(document, dict) else None


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path`` (a no-op where flock does not exist)."""
    writable_directory(lock_path.parent, option="`cache_dir` (--cache-dir)")
    if fcntl is None:
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
