"""The on-disk profile cache: hits, exact round trip, corrupt and stale files, atomic writes."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lrf_optuna as lo
from lrf_optuna.similarity import _cache as profile_cache
from lrf_optuna.similarity import _profile as profile_module
from lrf_optuna.similarity import _profile_model as search_module
from search_support import calibration, settings, tiny_cnn

SETTINGS = settings(ranks_per_method=3, methods=("svd", "tucker2", "tucker"))
LOGGER = "lrf_optuna.similarity._cache"


@pytest.fixture
def computed(monkeypatch):
    """Records every real profile computation."""
    calls = []
    real = search_module.run_profile

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(search_module, "run_profile", spy)
    return calls


def profile(model, data, cache_dir, profile_settings=SETTINGS) -> pd.DataFrame:
    return lo.profile_model(model, data, settings=profile_settings, cache_dir=cache_dir, show_progress=False)


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("profile-*.json"))


def leftovers(directory: Path) -> list[Path]:
    """Anything but cache files and their (kept, empty) lock files: e.g. a temporary file."""
    return [p for p in directory.iterdir() if p.suffix not in (".json", ".lock")]


def cache_path(model, data, directory: Path, profile_settings=SETTINGS) -> Path:
    key = profile_cache.profile_key(model, data, profile_settings.for_metric(None))
    return directory / f"profile-{key[:24]}.json"


@pytest.fixture
def cached(model, data, tmp_path, computed):
    """A cache directory holding one profile; returns (directory, profile, file)."""
    first = profile(model, data, tmp_path)
    assert len(computed) == 1
    files = cache_files(tmp_path)
    assert files == [cache_path(model, data, tmp_path)]
    return tmp_path, first, files[0]


def test_second_call_hits_the_cache(model, data, cached, computed, caplog):
    directory, first, path = cached
    stamp = path.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        second = profile(model, data, directory)
    assert len(computed) == 1  # not recomputed
    assert not caplog.records
    assert path.stat().st_mtime_ns == stamp
    # exactly the computed profile: same dtypes, same floats to the last bit
    pd.testing.assert_frame_equal(second, first, check_exact=True)
    assert leftovers(directory) == []


def test_cache_file_is_plain_json(cached):
    _, first, path = cached
    document = json.loads(path.read_text())
    assert set(document) == {"format", "key", "columns", "rows", "checksum"}
    assert document["columns"] == list(first.columns)
    assert len(document["rows"]) == len(first)


def test_objective_from_the_cache_scores_like_the_computed_profile(model, data, cached):
    directory, first, _ = cached
    plan = {"c1": ("svd", 3), "d1": ("tucker", 5), "c2": ("tucker2", 7)}
    methods = SETTINGS.methods
    from_cache = lo.search.make_objective(
        model, data, methods=methods, profile_settings=SETTINGS, cache_dir=directory
    )
    from_frame = lo.search.make_objective(model, data, methods=methods, profile=first)
    assert from_cache.evaluate(plan) == from_frame.evaluate(plan)


def test_searches_share_the_profile_unless_they_need_network_outputs(model, data, cached, computed):
    directory, first, path = cached
    assert first[["output_cka", "output_cosine", "output_nmse"]].isna().all().all()
    options = dict(methods=SETTINGS.methods, profile_settings=SETTINGS, cache_dir=directory)
    lo.search.make_objective(model, data, **options)  # the default metric: the cached profile serves
    assert len(computed) == 1 and cache_files(directory) == [path]
    lo.search.make_objective(model, data, metric="output_cosine", **options)
    assert len(computed) == 2 and len(cache_files(directory)) == 2
    lo.search.make_objective(
        model, data, metric="output_cka", **options
    )  # that one serves all output metrics
    assert len(computed) == 2


def test_no_cache_dir_always_computes(model, data, tmp_path, computed, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile(model, data, None)
    profile(model, data, None)
    assert len(computed) == 2
    assert list(tmp_path.iterdir()) == []


def _recomputes_with_warning(model, data, directory, computed, caplog, reason: str) -> pd.DataFrame:
    before = len(computed)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = profile(model, data, directory)
    assert len(computed) == before + 1
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert reason in records[0].getMessage() and "recomputing" in records[0].getMessage()
    caplog.clear()
    # the file was rewritten: the next call hits it silently
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = profile(model, data, directory)
    assert len(computed) == before + 1 and not caplog.records
    pd.testing.assert_frame_equal(again, result, check_exact=True)
    assert leftovers(directory) == []
    return result


def test_truncated_file_is_recomputed(model, data, cached, computed, caplog):
    directory, first, path = cached
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    result = _recomputes_with_warning(model, data, directory, computed, caplog, "cannot be read")
    columns = [c for c in first.columns if c != "seconds"]
    pd.testing.assert_frame_equal(result[columns], first[columns])


def test_empty_file_is_recomputed(model, data, cached, computed, caplog):
    directory, _, path = cached
    path.write_bytes(b"")
    _recomputes_with_warning(model, data, directory, computed, caplog, "cannot be read")


def test_flipped_bytes_are_recomputed(model, data, cached, computed, caplog):
    directory, _, path = cached
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"rows"') + 40
    raw[at] ^= 0xFF  # not UTF-8 any more
    path.write_bytes(bytes(raw))
    _recomputes_with_warning(model, data, directory, computed, caplog, "cannot be read")


def test_changed_value_fails_the_checksum(model, data, cached, computed, caplog):
    directory, first, path = cached
    document = json.loads(path.read_text())
    document["rows"][2][5] = 0.123456  # a cka value, still valid JSON
    path.write_text(json.dumps(document))
    result = _recomputes_with_warning(model, data, directory, computed, caplog, "checksum")
    assert result["cka"].iloc[2] == pytest.approx(first["cka"].iloc[2], rel=1e-9)


def test_json_that_is_not_an_object_is_recomputed(model, data, cached, computed, caplog):
    directory, _, path = cached
    path.write_text("[1, 2, 3]")
    _recomputes_with_warning(model, data, directory, computed, caplog, "cannot be read")


def test_other_format_is_recomputed(model, data, cached, computed, caplog):
    directory, _, path = cached
    document = json.loads(path.read_text())
    document["format"] = -1
    path.write_text(json.dumps(document))
    _recomputes_with_warning(model, data, directory, computed, caplog, "another version")


def test_stale_key_is_recomputed_and_replaced_atomically(model, data, cached, computed, caplog):
    directory, _, path_a = cached
    other = calibration(32, seed=9)
    path_b = cache_path(model, other, directory)
    assert path_b != path_a
    path_b.write_bytes(path_a.read_bytes())  # a file for other data under this key's name
    inode = path_b.stat().st_ino
    before = len(computed)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = profile(model, other, directory)
    assert len(computed) == before + 1
    assert "stale" in caplog.text
    document = json.loads(path_b.read_text())
    assert document["key"] == profile_cache.profile_key(model, other, SETTINGS.for_metric(None))
    assert len(document["rows"]) == len(result)
    assert path_b.stat().st_ino != inode  # a new file renamed over the old one
    assert leftovers(directory) == []
    pd.testing.assert_frame_equal(profile_cache.load_profile(path_b, document["key"]), result)


def test_different_data_is_a_miss(model, data, cached, computed):
    directory, first, _ = cached
    other = data.copy()
    other[0, 0, 0, 0] += 1.0
    result = profile(model, other, directory)
    assert len(computed) == 2
    assert len(cache_files(directory)) == 2
    assert not np.array_equal(result["cka"], first["cka"])


def test_key_covers_weights_data_and_settings(model, data):
    key = profile_cache.profile_key(model, data, SETTINGS)
    assert key == profile_cache.profile_key(tiny_cnn(), data.copy(), replace(SETTINGS))
    assert key != profile_cache.profile_key(tiny_cnn(seed=1), data, SETTINGS)
    assert key != profile_cache.profile_key(model, data[:16], SETTINGS)
    for change in ({"ranks_per_method": 4}, {"max_positions": 100}, {"methods": ("svd",)}, {"seed": 1}):
        assert key != profile_cache.profile_key(model, data, replace(SETTINGS, **change)), change
    # samples beyond max_samples are never read, but the data shape is part of the key
    limited = replace(SETTINGS, max_samples=16)
    assert profile_cache.profile_key(model, data, limited) != profile_cache.profile_key(
        model, data[:16], limited
    )


def test_failed_write_leaves_no_temporary_file(model, data, cached, monkeypatch):
    directory, first, path = cached
    before = path.read_bytes()

    def broken_dump(document, stream):
        stream.write('{"format": ')
        raise OSError("disk full")

    monkeypatch.setattr(profile_cache.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        profile_cache.save_profile(path, "another-key", first)
    assert path.read_bytes() == before  # the old file is intact
    assert leftovers(directory) == []
    assert cache_files(directory) == [path]


@pytest.mark.parametrize("where", ["second layer", "writing the file"])
def test_interrupted_profile_leaves_no_cache_entry(model, data, tmp_path, computed, monkeypatch, where):
    """Ctrl-C inside the streamed profile, or while its file is written: nothing is left that a
    later run could load, and that run computes the profile in full."""
    profiled = []
    real_layer = profile_module._profile_layer

    def interrupted_layer(layer, spec, *args, **kwargs):
        profiled.append(spec.name)
        if len(profiled) == 2:
            raise KeyboardInterrupt
        return real_layer(layer, spec, *args, **kwargs)

    def interrupted_dump(document, stream):
        stream.write('{"format": ')
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        if where == "second layer":
            patch.setattr(profile_module, "_profile_layer", interrupted_layer)
        else:
            patch.setattr(profile_cache.json, "dump", interrupted_dump)
        with pytest.raises(KeyboardInterrupt):
            profile(model, data, tmp_path)
    assert profiled == ([] if where == "writing the file" else ["c1", "c2"])
    assert cache_files(tmp_path) == [] and leftovers(tmp_path) == []
    again = profile(model, data, tmp_path)
    assert len(computed) == 2 and len(cache_files(tmp_path)) == 1
    assert set(again.layer) == {"c1", "c2", "d1", "d2"}
