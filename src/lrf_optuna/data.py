"""Fashion-MNIST from local gzipped IDX files (no network access)."""

from __future__ import annotations

import glob
import gzip
import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["CLASS_NAMES", "DEBIAN_DIR", "ENV_VAR", "FILES", "fashion_mnist", "find_directory", "read_idx"]

logger = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
ENV_VAR = "LRF_OPTUNA_FASHION_MNIST"
# Where the Debian package `dataset-fashion-mnist` installs the files (`dpkg -L`).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_SHARE_GLOBS = (
    "/usr/share/datasets/*fashion*mnist*",
    "/usr/share/*fashion*mnist*",
    "/usr/local/share/*fashion*mnist*",
)
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one Fashion-MNIST uses
_INSTALL_HINT = (
    f"Fix: `sudo apt-get install dataset-fashion-mnist` (installs into {DEBIAN_DIR}) "
    f"or set {ENV_VAR}=/path/to/dir holding {', '.join(FILES.values())}."
)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one gzipped IDX file into a uint8 array; ValueError naming the file on corruption."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err})") from err
    return _parse_idx(raw, path)


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}")
    if raw[2] != _UBYTE:
        raise ValueError(f"{path}: unsupported IDX data type 0x{raw[2]:02x} (expected 0x08, uint8)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX shape {shape} needs {expected} data bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _candidates(directory: str | os.PathLike[str] | None) -> list[Path]:
    places = [] if directory is None else [Path(directory)]
    if os.environ.get(ENV_VAR):
        places.append(Path(os.environ[ENV_VAR]))
    places.append(DEBIAN_DIR)
    places.extend(Path(p) for pattern in _SHARE_GLOBS for p in sorted(glob.glob(pattern)))
    places.append(Path.home() / ".keras" / "datasets" / "fashion-mnist")
    return list(dict.fromkeys(p.expanduser() for p in places))


def find_directory(directory: str | os.PathLike[str] | None = None) -> Path:
    """First directory holding all four files: ``directory``, $ENV_VAR, Debian, Keras cache."""
    places = _candidates(directory)
    for place in places:
        if all((place / name).is_file() for name in FILES.values()):
            return place
    searched = "\n  ".join(str(p) for p in places)
    raise FileNotFoundError(f"Fashion-MNIST files not found. Searched:\n  {searched}\n{_INSTALL_HINT}")


def _check(arrays: dict[str, np.ndarray], place: Path) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"{place / FILES[f'x_{split}']}: expected (N, 28, 28) images, got {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{place / FILES[f'y_{split}']}: {labels.shape} labels for {len(images)} images")
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise ValueError(f"{place / FILES[f'y_{split}']}: label {labels.max()} out of range 0..9")


def fashion_mnist(
    *, directory: str | os.PathLike[str] | None = None, normalize: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` like ``keras.datasets.fashion_mnist.load_data``.

    With ``normalize`` images are float32 in [0, 1] of shape (N, 28, 28, 1); without,
    the raw uint8 (N, 28, 28). Labels are int64.
    """
    place = find_directory(directory)
    logger.info("Loading Fashion-MNIST from %s", place)
    arrays = {key: read_idx(place / name) for key, name in FILES.items()}
    _check(arrays, place)
    for key in ("y_train", "y_test"):
        arrays[key] = arrays[key].astype(np.int64)
    if normalize:
        for key in ("x_train", "x_test"):
            arrays[key] = (arrays[key].astype(np.float32) / 255.0)[..., np.newaxis]
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
