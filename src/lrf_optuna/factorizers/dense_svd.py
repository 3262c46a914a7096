"""Truncated SVD of a Dense kernel, or of a separable conv's pointwise kernel."""

from __future__ import annotations

from lrf_optuna.core._geometry import LayerGeometry
from lrf_optuna.core._stages import ConvStage, DenseStage, SeparableStage
from lrf_optuna.factorizers.base import Factorizer, register
from lrf_optuna.factorizers.conv_common import balanced_svd
from lrf_optuna.factorizers.data_aware import regularized, whitened_svd


def _spatial_rank(geom: LayerGeometry) -> int:
    return len(geom.calls[0].in_spatial)


@register
class DenseSVD(Factorizer):
    """Dense -> Dense(rank, no bias) + Dense; separable -> Separable(rank) + 1x1 conv."""

    name = "svd"
    kinds = ("dense", "separable")

    def full_rank(self, geom: LayerGeometry) -> int:
        return min(geom.kernel_shape)

    def stages(self, geom, rank):
        r = min(rank, self.full_rank(geom))
        if geom.kind == "separable":
            pointwise = ConvStage(geom.out_channels, 1, (False,) * _spatial_rank(geom))
            return (SeparableStage(r), pointwise)
        return (DenseStage(r), DenseStage(geom.out_channels))

    def prepare(self, kernel, geom, *, seed, stats=None):
        if stats is None:
            return balanced_svd(kernel)
        return whitened_svd(kernel, regularized(stats.moments[0]))  # output PCA

    def at_rank(self, prepared, geom, rank, *, seed):
        r = min(rank, self.full_rank(geom))
        left, right = prepared
        if geom.kind == "separable":
            return [left[:, :r], right[:r].reshape((1,) * _spatial_rank(geom) + (r, -1))]
        return [left[:, :r], right[:r]]

    def reconstruct(self, kernels, geom, rank):
        left, right = kernels
        return left @ right.reshape(right.shape[-2:])
