"""Feature-map similarity metrics (pure NumPy); 1.0 means identical maps.

Each takes the original maps ``reference`` and the approximated ``candidate`` as
``(samples, features)`` arrays (feature maps flattened per sample).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["METRICS", "cosine_similarity", "linear_cka", "nmse_score"]


def _centered_gram(x: np.ndarray) -> np.ndarray:
    gram = x @ x.T
    means = gram.mean(axis=0)
    return gram - means[None, :] - means[:, None] + means.mean()


def linear_cka(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) through n x n Gram matrices: cheap for wide maps."""
    a = _centered_gram(reference.astype(np.float64))
    b = _centered_gram(candidate.astype(np.float64))
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    if denominator == 0.0:
        return 1.0 if np.array_equal(reference, candidate) else 0.0
    return float(np.sum(a * b) / denominator)


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over samples of the cosine between original and approximated maps.

    A sample whose maps are both zero scores 1; only one of them zero scores 0.
    """
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    ref_norms, cand_norms = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    norms = ref_norms * cand_norms
    dots = np.sum(ref * cand, axis=1)
    degenerate = np.where((ref_norms == 0) & (cand_norms == 0), 1.0, 0.0)
    safe = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), degenerate)
    return float(np.mean(safe))


def nmse_score(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``1 / (1 + NMSE)``: 1 when exact, 0.5 when the error is as large as the signal."""
    ref = reference.astype(np.float64)
    energy = float(np.sum(ref**2))
    error = float(np.sum((ref - candidate.astype(np.float64)) ** 2))
    if energy == 0.0:
        return 1.0 if error == 0.0 else 0.0
    return 1.0 / (1.0 + error / energy)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "cka": linear_cka,
    "cosine": cosine_similarity,
    "nmse": nmse_score,
}
