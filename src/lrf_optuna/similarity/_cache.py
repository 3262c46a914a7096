"""On-disk cache of profiles, keyed by model weights, calibration data and settings.

Files are JSON (never pickle) written atomically (temp file + rename). A file whose
checksum, key or format does not match is reported and recomputed, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from lrf_optuna.files._json import exclusive, write_json_atomic
from lrf_optuna.similarity._profile import PROFILE_COLUMNS, ProfileSettings

__all__ = [
    "cached_profile",
    "data_fingerprint",
    "load_profile",
    "model_fingerprint",
    "profile_key",
    "save_profile",
]

logger = logging.getLogger(__name__)
FORMAT = 3  # 3: network-output columns; 2: exact floats (1 kept 10 digits)


def profile_key(model: keras.Model, data: np.ndarray, settings: ProfileSettings) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"format": FORMAT, "settings": dataclasses.asdict(settings)}, sort_keys=True).encode()
    )
    digest.update(model.to_json().encode())
    _add_weights(digest, model)
    _add_data(digest, data, settings.max_samples)
    return digest.hexdigest()


def model_fingerprint(model: keras.Model) -> str:
    """SHA-256 of the weights alone (shapes and bytes, in order): a study's model identity.

    The architecture is left out (its JSON changes with a save and load); the search space
    the study checks covers the layers.
    """
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(str(np.shape(weight)).encode())
    _add_weights(digest, model)
    return digest.hexdigest()


def data_fingerprint(data: np.ndarray, max_samples: int) -> str:
    """SHA-256 of the calibration inputs a search uses (its first ``max_samples``)."""
    digest = hashlib.sha256()
    _add_data(digest, data, max_samples)
    return digest.hexdigest()


def _add_weights(digest, model: keras.Model) -> None:
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())


def _add_data(digest, data: np.ndarray, max_samples: int) -> None:
    digest.update(str(data.shape).encode())
    digest.update(np.ascontiguousarray(data[:max_samples], np.float32).tobytes())


def _checksum(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def save_profile(path: Path, key: str, profile: pd.DataFrame) -> None:
    # Python floats, not ``to_json`` (10 digits): the cached profile must score plans
    # exactly as the computed one did, or a resumed study disagrees with its trials.
    rows = profile[PROFILE_COLUMNS].astype(object).to_numpy().tolist()
    document = {
        "format": FORMAT,
        "key": key,
        "columns": PROFILE_COLUMNS,
        "rows": rows,
        "checksum": _checksum(rows),
    }
    write_json_atomic(path, document)


def load_profile(path: Path, key: str, *, quiet: bool = False) -> pd.DataFrame | None:
    """The cached profile, or None (with a warning saying why) when it cannot be trusted."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        problem = None
        if document.get("format") != FORMAT or document.get("columns") != PROFILE_COLUMNS:
            problem = "it was written by another version"
        elif document.get("key") != key:
            problem = "it is stale (model, data or settings changed)"
        elif _checksum(document["rows"]) != document.get("checksum"):
            problem = "its checksum does not match (corrupt)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        problem = f"it cannot be read ({error})"
    if problem:
        if not quiet:
            logger.warning("ignoring profile cache %s: %s; recomputing", path, problem)
        return None
    return pd.DataFrame(document["rows"], columns=PROFILE_COLUMNS)


def cached_profile(
    model: keras.Model,
    data: np.ndarray,
    settings: ProfileSettings,
    cache_dir: str | os.PathLike | None,
    compute: Callable[[], pd.DataFrame],
) -> pd.DataFrame:
    """Load the profile from ``cache_dir`` or compute and store it (no cache when None)."""
    if cache_dir is None:
        return compute()
    key = profile_key(model, data, settings)
    path = Path(cache_dir) / f"profile-{key[:24]}.json"
    profile = load_profile(path, key, quiet=True)
    if profile is not None:
        return profile
    with exclusive(path.with_suffix(".lock")):  # one process computes, the others then load
        profile = load_profile(path, key)
        if profile is None:
            profile = compute()
            save_profile(path, key, profile)
            logger.info("profile cached in %s", path)
    return profile
