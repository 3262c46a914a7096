"""Factorizer registry: importing this package registers every method."""

from __future__ import annotations

from lrf_optuna.factorizers import (  # noqa: F401  (registration side effect)
    conv_cp,
    conv_spatial_svd,
    conv_svd,
    conv_tucker2,
    dense_svd,
    dense_tt,
    dense_tucker,
)
from lrf_optuna.factorizers.base import Factorizer, get_factorizer, methods_for, register

__all__ = ["Factorizer", "get_factorizer", "methods_for", "register"]
