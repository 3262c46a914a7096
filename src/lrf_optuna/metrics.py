"""Feature-map similarity metrics (pure NumPy); 1.0 means identical maps.

Each compares the original maps ``reference`` with approximated ``candidate`` maps,
both ``(samples, features)`` (maps flattened per sample). ``ReferenceMaps`` keeps
the reference's statistics so that scoring many candidates costs one pass each.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "OUTPUT_METRICS", "ReferenceMaps", "cosine_similarity", "linear_cka", "nmse_score"]

METRICS = ("cka", "cosine", "nmse")
# The same metrics on the network outputs, with one layer's candidate swapped in: they
# see how that layer's error propagates through the layers after it.
OUTPUT_METRICS = tuple(f"output_{name}" for name in METRICS)


def _centered_gram(x: np.ndarray) -> np.ndarray:
    gram = x @ x.T
    means = gram.mean(axis=0)
    return gram - means[None, :] - means[:, None] + means.mean()


class ReferenceMaps:
    """Original maps with cached statistics; ``scores(candidate)`` gives every metric."""

    def __init__(self, reference: np.ndarray):
        self.maps = np.asarray(reference, np.float64)
        self.gram = _centered_gram(self.maps)
        self.gram_norm = float(np.linalg.norm(self.gram))
        self.row_norms = np.linalg.norm(self.maps, axis=1)
        self.energy = float(np.sum(self.maps**2))

    def cka(self, candidate: np.ndarray) -> float:
        """Linear CKA (Kornblith et al. 2019) through n x n Gram matrices: cheap for wide maps."""
        gram = _centered_gram(candidate)
        denominator = self.gram_norm * float(np.linalg.norm(gram))
        if denominator == 0.0:
            return 1.0 if np.array_equal(self.maps, candidate) else 0.0
        return float(np.sum(self.gram * gram) / denominator)

    def cosine(self, candidate: np.ndarray) -> float:
        """Mean over samples of the cosine between original and approximated maps."""
        norms = self.row_norms * np.linalg.norm(candidate, axis=1)
        dots = np.sum(self.maps * candidate, axis=1)
        both_zero = (self.row_norms == 0) & (np.linalg.norm(candidate, axis=1) == 0)
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), both_zero.astype(float))
        return float(np.mean(cosines))

    def nmse(self, candidate: np.ndarray) -> float:
        """``1 / (1 + NMSE)``: 1 when exact, 0.5 when the error is as large as the signal."""
        error = float(np.sum((self.maps - candidate) ** 2))
        if self.energy == 0.0:
            return 1.0 if error == 0.0 else 0.0
        return 1.0 / (1.0 + error / self.energy)

    def scores(self, candidate: np.ndarray) -> dict[str, float]:
        candidate = np.asarray(candidate, np.float64)
        return {name: getattr(self, name)(candidate) for name in METRICS}


def linear_cka(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).cka(np.asarray(candidate, np.float64))


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).cosine(np.asarray(candidate, np.float64))


def nmse_score(reference: np.ndarray, candidate: np.ndarray) -> float:
    return ReferenceMaps(reference).nmse(np.asarray(candidate, np.float64))
