"""Feature-map similarity metrics against independent NumPy formulas and hand-computed values
(never the library's own helpers on both sides)."""

from __future__ import annotations

import numpy as np
import pytest

import lrf_optuna as lo
from lrf_optuna.similarity._metrics import ReferenceMaps, cosine_similarity, linear_cka, nmse_score
from search_support import METRIC_FUNCTIONS as REFERENCES


def feature_space_cka(x: np.ndarray, y: np.ndarray) -> float:
    """||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centered X, Y (Kornblith et al.)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def random_maps(samples: int, features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, features))


def orthogonal(size: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((size, size)))
    return q * np.sign(np.diag(r))


FUNCTIONS = {"cka": linear_cka, "cosine": cosine_similarity, "nmse": nmse_score}


def test_metric_names():
    assert set(lo.similarity.METRICS) == set(FUNCTIONS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_metric_equals_its_independent_formula(dtype):
    reference = random_maps(24, 10, 0).astype(dtype)
    cached = ReferenceMaps(reference)
    for scale in (0.05, 0.5, 3.0):
        candidate = (reference + scale * random_maps(24, 10, 1)).astype(dtype)
        scores = cached.scores(candidate)
        assert set(scores) == set(FUNCTIONS)
        for name, function in FUNCTIONS.items():
            expected = REFERENCES[name](reference, candidate)
            assert scores[name] == pytest.approx(expected, rel=1e-12)
            assert function(reference, candidate) == pytest.approx(expected, rel=1e-12)
    assert linear_cka(reference, reference[:, ::-1]) == pytest.approx(1.0)  # permuted features


def test_linear_cka_hand_computed_values():
    # One feature: linear CKA is the squared Pearson correlation. Centered x = (-1, 0, 1),
    # y = (-4, -1, 5) / 3: (x.y)^2 / (|x|^2 |y|^2) = 3^2 / (2 * 14/3) = 27/28.
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [4.0]])
    assert linear_cka(x, y) == pytest.approx(27 / 28, rel=1e-14)
    # Centered X with X^T X = 2 I, Y its first column: ||Y^T X||^2 = 4, ||X^T X|| = 2 sqrt(2),
    # ||Y^T Y|| = 2, so CKA = 4 / (4 sqrt(2)).
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert linear_cka(x, x[:, :1]) == pytest.approx(1 / np.sqrt(2), rel=1e-14)
    assert linear_cka(x[:, :1], x) == pytest.approx(1 / np.sqrt(2), rel=1e-14)


@pytest.mark.parametrize(("samples", "features"), [(8, 3), (20, 50), (64, 17)])
def test_linear_cka_matches_feature_space_formula(samples, features):
    x = random_maps(samples, features, seed=0)
    noise = random_maps(samples, features, seed=1)
    for y in (x + 0.3 * noise, noise, x @ random_maps(features, features, 2), x[:, ::-1] ** 2):
        assert linear_cka(x, y) == pytest.approx(feature_space_cka(x, y), rel=1e-10, abs=1e-12)


def test_linear_cka_different_feature_counts():
    x, y = random_maps(16, 5, 0), random_maps(16, 40, 1)
    assert linear_cka(x, y) == pytest.approx(feature_space_cka(x, y), rel=1e-10)


def test_linear_cka_is_symmetric_and_bounded():
    x, y = random_maps(12, 9, 0), random_maps(12, 9, 1)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    assert 0.0 <= linear_cka(x, y) < 1.0


def test_linear_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x = random_maps(30, 12, 0)
    y = x + 0.5 * random_maps(30, 12, 1)
    base = linear_cka(x, y)
    assert base < 0.99  # not trivially 1
    q = orthogonal(12, 3)
    assert linear_cka(x, y @ q) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 7.5 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(0.01 * x, -3.0 * y @ q) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 2.0 * x @ q) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_not_invariant_to_anisotropic_scaling():
    x = random_maps(30, 4, 0)
    assert linear_cka(x, x * np.array([1.0, 10.0, 0.1, 1.0])) < 0.99


def test_linear_cka_ignores_a_constant_offset():
    x = random_maps(10, 6, 0)
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_degenerate_maps():
    constant = np.ones((5, 3))
    assert linear_cka(constant, constant) == 1.0
    assert linear_cka(constant, random_maps(5, 3, 0)) == 0.0


def test_linear_cka_accepts_float32():
    x = random_maps(10, 6, 0)
    y = x + 0.2 * random_maps(10, 6, 1)
    assert linear_cka(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(
        feature_space_cka(x, y), rel=1e-5
    )


def test_cosine_hand_made_values():
    reference = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    candidate = np.array([[1.0, 1.0], [0.0, -5.0], [6.0, 8.0]])
    # rows: cos = 1/sqrt(2), -1, 1
    expected = (1 / np.sqrt(2) - 1.0 + 1.0) / 3
    assert cosine_similarity(reference, candidate) == pytest.approx(expected, abs=1e-15)


def test_cosine_is_scale_invariant_per_sample():
    reference = random_maps(6, 5, 0)
    candidate = reference * np.arange(1, 7)[:, None]
    assert cosine_similarity(reference, candidate) == pytest.approx(1.0, abs=1e-12)


def test_cosine_zero_maps():
    zeros = np.zeros((2, 3))
    assert cosine_similarity(zeros, zeros) == 1.0
    signal = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    # A candidate that lost a sample's signal (or invented one) is not similar there.
    lost = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert cosine_similarity(signal, lost) == pytest.approx(0.5)
    assert cosine_similarity(lost, signal) == pytest.approx(0.5)


def test_nmse_hand_made_values():
    reference = np.array([[1.0, 0.0], [0.0, 1.0]])
    candidate = np.array([[1.0, 1.0], [0.0, 2.0]])
    # energy 2, squared error 2 -> NMSE 1 -> score 1 / (1 + 1)
    assert nmse_score(reference, candidate) == pytest.approx(0.5, abs=1e-15)
    assert nmse_score(reference, np.zeros_like(reference)) == pytest.approx(0.5, abs=1e-15)
    candidate = np.array([[2.0, 0.0], [0.0, 1.0]])  # error 1, energy 2 -> 1 / 1.5
    assert nmse_score(reference, candidate) == pytest.approx(2.0 / 3.0, abs=1e-15)


def test_nmse_is_not_symmetric_and_degenerate_maps():
    reference = np.array([[3.0, 4.0]])
    candidate = np.array([[0.0, 0.0]])
    assert nmse_score(reference, candidate) == pytest.approx(0.5)
    assert nmse_score(candidate, reference) == 0.0
    assert nmse_score(candidate, candidate) == 1.0


@pytest.mark.parametrize("name", ["cka", "cosine", "nmse"])
def test_identical_maps_score_one(name):
    x = random_maps(9, 7, 0).astype(np.float32)
    assert FUNCTIONS[name](x, x.copy()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", ["cka", "cosine", "nmse"])
def test_more_noise_scores_lower(name):
    x = random_maps(40, 10, 0)
    noise = random_maps(40, 10, 1)
    scores = [FUNCTIONS[name](x, x + scale * noise) for scale in (0.01, 0.1, 0.5, 2.0)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.99 and scores[-1] < 0.9
