"""A private copy of a model whose compressible kernels can be swapped for approximations.

Swapping the reconstructed kernel into the original layer computes exactly what the
factorized chain computes, so network outputs of a plan need no surgery. Used by the
profile (one layer swapped at a time) and by the model proxy (a whole plan at once).
"""

from __future__ import annotations

from collections.abc import Hashable

import keras
import numpy as np

from lrf_optuna.model._analysis import ModelAnalysis
from lrf_optuna.model._graph import check_single_input, copy_model
from lrf_optuna.model._layer_specs import kernel_variable

__all__ = ["KernelSwapper"]


class KernelSwapper:
    """``assign`` kernels by layer name (None restores the original), ``outputs`` on ``data``."""

    def __init__(
        self, model: keras.Model, analysis: ModelAnalysis, data: np.ndarray, *, batch_size: int = 64
    ):
        check_single_input(model)
        self.analysis, self.batch_size = analysis, batch_size
        self.data = np.asarray(data, np.float32)
        self.copy, by_path = copy_model(model)
        self.layers = {name: by_path[name] for name in analysis.specs}
        self.originals = {name: keras.ops.convert_to_numpy(self._variable(name)) for name in analysis.specs}
        self.current: dict[str, Hashable] = {name: None for name in analysis.specs}

    def _variable(self, name: str):
        return kernel_variable(self.layers[name], self.analysis.specs[name].geometry)

    def assign(self, name: str, key: Hashable, kernel: np.ndarray | None = None) -> None:
        """Put ``kernel`` (Keras layout) into layer ``name``, remembered as ``current[name] = key``;
        ``key=None`` restores the original kernel. Callers compare with ``current`` first when
        building the kernel costs more than the assignment."""
        self._variable(name).assign(self.originals[name] if key is None else kernel)
        self.current[name] = key

    def outputs(self) -> np.ndarray:
        """The copy's outputs on ``data``: every output tensor flattened, side by side per sample."""
        rows = []
        for start in range(0, len(self.data), self.batch_size):
            batch = self.data[start : start + self.batch_size]
            tensors = keras.tree.flatten(self.copy(batch, training=False))
            rows.append(
                np.concatenate(
                    [keras.ops.convert_to_numpy(t).reshape(len(batch), -1) for t in tensors], axis=1
                )
            )
        return np.concatenate(rows)
