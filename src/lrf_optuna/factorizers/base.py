"""The factorizer interface and the registry of methods."""

from __future__ import annotations

import abc
import math

import numpy as np

from lrf_optuna.core._cost import Cost
from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import Stage, chain_cost, layer_cost
from lrf_optuna.factorizers.data_aware import LayerStatistics

__all__ = ["Factorizer", "check_statistics", "get_factorizer", "methods_for", "register", "statistics_shape"]

_REGISTRY: dict[tuple[str, str], Factorizer] = {}
# Listing order (the paper's order); methods registered later come after these.
_ORDER = ("tucker2", "cp", "svd", "spatial_svd", "tt", "tucker")


class Factorizer(abc.ABC):
    """One low-rank factorization method for one kind of layer.

    Subclasses are pure NumPy: they describe the replacement chain (``stages``),
    compute its kernels (``decompose``) and map them back to the original kernel
    (``reconstruct``). Kernels are canonical (see ``LayerGeometry``).
    """

    name: str
    kinds: tuple[str, ...]

    def unsupported_reason(self, geom: LayerGeometry) -> str | None:
        """Why this method cannot factorize ``geom``, or None when it can."""
        return None

    @abc.abstractmethod
    def full_rank(self, geom: LayerGeometry) -> int:
        """Smallest rank at which the factorization is exact (larger ranks are clamped)."""

    @abc.abstractmethod
    def stages(self, geom: LayerGeometry, rank: int) -> tuple[Stage, ...]:
        """The chain of stock layers that replaces the layer at ``rank``."""

    def prepare(
        self, kernel: np.ndarray, geom: LayerGeometry, *, seed: int, stats: LayerStatistics | None = None
    ) -> object:
        """Work shared by every rank (e.g. one SVD); the default shares nothing.

        With ``stats`` (the layer's calibration statistics) the factors minimize the
        layer's output error on that data instead of the weight error (same stages).
        """
        return kernel

    @abc.abstractmethod
    def at_rank(self, prepared: object, geom: LayerGeometry, rank: int, *, seed: int) -> list[np.ndarray]:
        """One canonical kernel per stage at ``rank``, from ``prepare``'s result."""

    @abc.abstractmethod
    def reconstruct(self, kernels: list[np.ndarray], geom: LayerGeometry, rank: int) -> np.ndarray:
        """The canonical kernel that the chain of ``kernels`` (made at ``rank``) computes."""

    def decompose(
        self,
        kernel: np.ndarray,
        geom: LayerGeometry,
        rank: int,
        *,
        seed: int,
        stats: LayerStatistics | None = None,
    ) -> list[np.ndarray]:
        """One canonical kernel per stage, for ``kernel`` factorized at ``rank``."""
        return self.decompose_ranks(kernel, geom, [rank], seed=seed, stats=stats)[rank]

    def decompose_ranks(
        self,
        kernel: np.ndarray,
        geom: LayerGeometry,
        ranks: list[int],
        *,
        seed: int,
        stats: LayerStatistics | None = None,
    ) -> dict[int, list[np.ndarray]]:
        """Stage kernels for several ranks, sharing ``prepare`` between them.

        ``stats=None``: the weight-only factors; otherwise data-aware ones (see ``prepare``).
        """
        if stats is not None:
            check_statistics(stats, geom)
        prepared = self.prepare(kernel, geom, seed=seed, stats=stats)
        result = {}
        for rank in ranks:
            kernels = self.at_rank(prepared, geom, rank, seed=seed)
            result[rank] = [k.astype(kernel.dtype) for k in kernels]
        return result

    def cost(self, geom: LayerGeometry, rank: int) -> Cost:
        return chain_cost(geom, self.stages(geom, rank))

    def useful_max_rank(self, geom: LayerGeometry) -> int:
        """Largest rank whose chain is strictly cheaper in params AND MACs (0: none).

        Every stage grows with the rank, so the useful ranks are exactly 1..this value.
        """
        original = layer_cost(geom)
        low, high = 0, self.full_rank(geom)
        while low < high:  # binary search on a monotone predicate
            mid = (low + high + 1) // 2
            if self.cost(geom, mid).strictly_below(original):
                low = mid
            else:
                high = mid - 1
        return low


def statistics_shape(geom: LayerGeometry) -> tuple[int, int, int]:
    """``(groups, D, D)``: the shape of the moments ``LayerStatistics`` holds for ``geom``."""
    if geom.kind == "conv":
        dim = math.prod(geom.kernel_shape[:-1])
        return geom.groups, dim, dim
    return 1, geom.kernel_shape[0], geom.kernel_shape[0]


def check_statistics(stats: LayerStatistics, geom: LayerGeometry) -> None:
    expected = statistics_shape(geom)
    if stats.moments.shape != expected:
        raise ValueError(
            f"Invalid `stats` for layer '{geom.name}': expected moments of shape {expected}, "
            f"received {stats.moments.shape}. Compute them for this layer (lrf_optuna.model._statistics)."
        )


def register(factorizer_cls: type[Factorizer]) -> type[Factorizer]:
    """Class decorator adding one instance of ``factorizer_cls`` to the registry."""
    instance = factorizer_cls()
    for kind in factorizer_cls.kinds:
        _REGISTRY[(kind, factorizer_cls.name)] = instance
    return factorizer_cls


def get_factorizer(kind: str, name: str) -> Factorizer:
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        valid = methods_for(kind)
        raise ValueError(
            f"Invalid `method` for a {kind} layer: expected one of {valid}, received {name!r}"
        ) from None


def methods_for(kind: str, geom: LayerGeometry | None = None) -> list[str]:
    """Registered method names for ``kind``; with ``geom``, only those applicable to it."""
    names = [name for (k, name) in _REGISTRY if k == kind]
    names.sort(key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))
    if geom is not None:
        names = [n for n in names if _REGISTRY[(kind, n)].unsupported_reason(geom) is None]
    return names
