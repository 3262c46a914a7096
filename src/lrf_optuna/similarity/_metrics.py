"""Feature-map similarity metrics (pure NumPy); 1.0 means identical maps.

Each compares the original maps ``reference`` with approximated ``candidate`` maps,
both ``(samples, features)`` (maps flattened per sample). ``ReferenceMaps`` keeps
the reference's statistics so that scoring many candidates costs one pass each.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK",
    "METRICS",
    "OUTPUT_METRICS",
    "ReferenceMaps",
    "cosine_similarity",
    "linear_cka",
    "nmse_score",
]

METRICS = ("cka", "cosine", "nmse")
# The same metrics on the network outputs, with one layer's candidate swapped in: they
# see how that layer's error propagates through the layers after it.
OUTPUT_METRICS = tuple(f"output_{name}" for name in METRICS)


# float64 values per temporary: the maps stay in their own dtype (float32 from the profile),
# converted column block by column block, so scoring needs no float64 copy of whole maps.
BLOCK = 1 << 22


def _blocks(x: np.ndarray) -> list[slice]:
    step = max(1, BLOCK // max(len(x), 1))
    return [slice(start, start + step) for start in range(0, x.shape[1], step)] or [slice(0, 0)]


def _centered(gram: np.ndarray) -> np.ndarray:
    means = gram.mean(axis=0)
    return gram - means[None, :] - means[:, None] + means.mean()


def _gram(x: np.ndarray) -> np.ndarray:
    """``x x^T`` in float64, column block by column block."""
    gram = np.zeros((len(x), len(x)))
    for block in _blocks(x):
        part = np.asarray(x[:, block], np.float64)
        gram += part @ part.T
    return gram


class ReferenceMaps:
    """Original maps with cached statistics; ``scores(candidate)`` gives every metric."""

    def __init__(self, reference: np.ndarray):
        reference = np.asarray(reference)
        floating = np.issubdtype(reference.dtype, np.floating)
        self.maps = reference if floating else reference.astype(np.float64)
        self.gram = _centered(_gram(self.maps))
        self.gram_norm = float(np.linalg.norm(self.gram))
        squares = sum(
            np.sum(np.asarray(self.maps[:, b], np.float64) ** 2, axis=1) for b in _blocks(self.maps)
        )
        self.row_norms = np.sqrt(squares)
        self.energy = float(np.sum(squares))

    def _compare(self, candidate: np.ndarray, *, gram: bool = False) -> tuple:
        """Per-sample dot products and candidate norms, the total squared error and, with
        ``gram``, the candidate's n x n Gram matrix: one pass over the maps, block by block."""
        n = len(candidate)
        dots, squares, error = np.zeros(n), np.zeros(n), 0.0
        products = np.zeros((n, n)) if gram else None
        for block in _blocks(self.maps):
            ref = np.asarray(self.maps[:, block], np.float64)
            part = np.asarray(candidate[:, block], np.float64)
            dots += np.einsum("ij,ij->i", ref, part)
            squares += np.einsum("ij,ij->i", part, part)
            if gram:
                products += part @ part.T
            # ref is a fresh float64 copy unless the maps are float64 already (then a view of them)
            difference = np.subtract(ref, part, out=None if self.maps.dtype == np.float64 else ref)
            error += float(np.einsum("ij,ij->", difference, difference))
        return dots, np.sqrt(squares), error, products

    def _cka(self, gram: np.ndarray, candidate: np.ndarray) -> float:
        """CKA from the candidate's uncentered Gram matrix."""
        gram = _centered(gram)
        denominator = self.gram_norm * float(np.linalg.norm(gram))
        if denominator == 0.0:
            return 1.0 if np.array_equal(self.maps, candidate) else 0.0
        return float(np.sum(self.gram * gram) / denominator)

    def cka(self, candidate: np.ndarray) -> float:
        """Linear CKA (Kornblith et al. 2019) through n x n Gram matrices: cheap for wide maps."""
        candidate = np.asarray(candidate)
        return self._cka(_gram(candidate), candidate)  # its own width: CKA compares any widths

    def _cosine(self, dots: np.ndarray, candidate_norms: np.ndarray) -> float:
        norms = self.row_norms * candidate_norms
        both_zero = (self.row_norms == 0) & (candidate_norms == 0)
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), both_zero.astype(float))
        return float(np.mean(cosines))

    def _nmse(self, error: float) -> float:
        if self.energy == 0.0:
            return 1.0 if error == 0.0 else 0.0
        return 1.0 / (1.0 + error / self.energy)

    def cosine(self, candidate: np.ndarray) -> float:
        """Mean over samples of the cosine between original and approximated maps."""
        dots, norms, _, _ = self._compare(np.asarray(candidate))
        return self._cosine(dots, norms)

    def nmse(self, candidate: np.ndarray) -> float:
        """``1 / (1 + NMSE)``: 1 when exact, 0.5 when the error is as large as the signal."""
        return self._nmse(self._compare(np.asarray(candidate))[2])

    def scores(self, candidate: np.ndarray) -> dict[str, float]:
        candidate = np.asarray(candidate)
        dots, norms, error, gram = self._compare(candidate, gram=True)
        return {
            "cka": self._cka(gram, candidate),
            "cosine": self._cosine(dots, norms),
            "nmse": self._nmse(error),
        }


def linear_cka(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).cka(np.asarray(candidate))


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).cosine(np.asarray(candidate))


def nmse_score(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).nmse(np.asarray(candidate))
