"""Feature-map similarity without retraining: metrics, streamed capture, profile, proxies."""

from __future__ import annotations

from lrf_optuna.similarity._metrics import (
    METRICS,
    OUTPUT_METRICS,
    ReferenceMaps,
    cosine_similarity,
    linear_cka,
    nmse_score,
)
from lrf_optuna.similarity._profile import FACTORIZATIONS, ProfileSettings, run_profile
from lrf_optuna.similarity._profile_model import profile_model
from lrf_optuna.similarity._proxy import (
    AGGREGATORS,
    DEFAULT_AGGREGATOR,
    DEFAULT_METRIC,
    LAYERWISE_METRICS,
    LayerwiseProxy,
    ModelProxy,
)

__all__ = [
    "AGGREGATORS",
    "DEFAULT_AGGREGATOR",
    "DEFAULT_METRIC",
    "FACTORIZATIONS",
    "LAYERWISE_METRICS",
    "METRICS",
    "OUTPUT_METRICS",
    "LayerwiseProxy",
    "ModelProxy",
    "ProfileSettings",
    "ReferenceMaps",
    "cosine_similarity",
    "linear_cka",
    "nmse_score",
    "profile_model",
    "run_profile",
]
