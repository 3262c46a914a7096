"""Fashion-MNIST loader: IDX parsing, directory search, real files when installed."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from lrf_optuna import data
from lrf_optuna.data import CLASS_NAMES, DEBIAN_DIR, ENV_VAR, FILES, fashion_mnist, read_idx

HAVE_DEBIAN = all((DEBIAN_DIR / name).is_file() for name in FILES.values())
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason=f"Debian package dataset-fashion-mnist not installed ({DEBIAN_DIR} missing); "
    "run `apt-get install dataset-fashion-mnist`",
)


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def write_dataset(directory: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_idx(directory / FILES[key], array)
    return arrays


@pytest.fixture(scope="module")
def real() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if not HAVE_DEBIAN:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({DEBIAN_DIR} missing)")
    return fashion_mnist(directory=DEBIAN_DIR)


@needs_debian
def test_real_shapes_and_dtypes(real):
    (x_train, y_train), (x_test, y_test) = real
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert x_train.max() == 1.0


@needs_debian
def test_real_label_counts(real):
    (_, y_train), (_, y_test) = real
    assert np.bincount(y_train).tolist() == [6000] * len(CLASS_NAMES)
    assert np.bincount(y_test).tolist() == [1000] * len(CLASS_NAMES)


@needs_debian
def test_real_found_without_arguments(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert data.find_directory() == DEBIAN_DIR


def test_synthetic_idx_parsed_exactly(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    parsed = read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", array))
    assert parsed.dtype == np.uint8 and parsed.shape == (2, 3, 5)
    np.testing.assert_array_equal(parsed, array)


def test_synthetic_dataset_raw_and_normalized(tmp_path):
    arrays = write_dataset(tmp_path)
    (x_train, y_train), (x_test, y_test) = fashion_mnist(directory=tmp_path, normalize=False)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert y_train.dtype == np.int64 and x_test.dtype == np.uint8
    (x_train, _), _ = fashion_mnist(directory=tmp_path)
    assert x_train.shape == (20, 28, 28, 1) and x_train.dtype == np.float32
    np.testing.assert_allclose(x_train[..., 0], arrays["x_train"] / 255.0, rtol=1e-6)


def test_environment_variable_is_searched(tmp_path, monkeypatch):
    write_dataset(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert data.find_directory() == tmp_path
    assert data.find_directory(tmp_path / "missing") == tmp_path


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # empty
        b"\x00\x00\x08\x03\x00\x00",  # header cut short
        b"\x12\x34\x08\x01\x00\x00\x00\x02ab",  # bad magic
        b"\x00\x00\x0d\x01\x00\x00\x00\x02ab",  # float32 type code
        b"\x00\x00\x08\x01\x00\x00\x00\x05ab",  # 5 items announced, 2 present
    ],
)
def test_corrupt_file_raises_value_error_naming_it(tmp_path, payload):
    path = tmp_path / "broken-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(payload)
    with pytest.raises(ValueError, match=re.escape(path.name)):
        read_idx(path)


def test_not_gzip_raises_value_error_naming_it(tmp_path):
    path = tmp_path / "plain-idx1-ubyte.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01a")
    with pytest.raises(ValueError, match=re.escape(path.name)):
        read_idx(path)


def test_wrong_image_shape_raises_value_error(tmp_path):
    write_dataset(tmp_path)
    write_idx(tmp_path / FILES["x_test"], np.zeros((10, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=re.escape(FILES["x_test"])):
        fashion_mnist(directory=tmp_path)


def test_missing_directory_explains_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "_SHARE_GLOBS", ())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist(directory=tmp_path / "nowhere")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert ENV_VAR in message
    assert str(tmp_path / "nowhere") in message
