"""Serializable Keras layers for the tensorized Dense factorizations.

Registered under the package name "lrf_optuna": once ``lrf_optuna`` is imported,
``keras.models.load_model`` restores them without ``custom_objects``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from lrf_optuna.core._stages import TTStage, TuckerStage

__all__ = ["TTDense", "TuckerDense"]


class _TensorizedDense(keras.layers.Layer):
    """Shared plumbing: activation, bias, flattening of leading axes, config."""

    def __init__(self, in_modes, out_modes, *, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.in_modes = tuple(int(m) for m in in_modes)
        self.out_modes = tuple(int(m) for m in out_modes)
        self.units = math.prod(self.out_modes)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias

    def _build_bias(self) -> None:
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None
        )

    def _check_input(self, input_shape) -> None:
        if input_shape[-1] != math.prod(self.in_modes):
            raise ValueError(
                f"Invalid input to layer '{self.name}': expected last axis "
                f"{math.prod(self.in_modes)}, received shape {tuple(input_shape)}"
            )

    def call(self, inputs):
        lead = tuple(inputs.shape[1:-1])
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
        outputs = self._matmul(flat)
        if self.use_bias:
            outputs = outputs + self.bias
        outputs = ops.reshape(outputs, (-1, *lead, self.units))
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "in_modes": list(self.in_modes),
            "out_modes": list(self.out_modes),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="lrf_optuna")
class TTDense(_TensorizedDense):
    """Dense layer whose kernel is a tensor-train matrix with cores (r0, i_k, o_k, r1)."""

    def __init__(self, in_modes, out_modes, ranks, **kwargs):
        super().__init__(in_modes, out_modes, **kwargs)
        self.ranks = tuple(int(r) for r in ranks)
        self.stage = TTStage(self.in_modes, self.out_modes, self.ranks)

    def build(self, input_shape):
        self._check_input(input_shape)
        self.cores = [
            self.add_weight(name=f"core_{k}", shape=shape, initializer="glorot_uniform")
            for k, shape in enumerate(self.stage.core_shapes())
        ]
        self._build_bias()

    def _matmul(self, flat):
        # state: (batch, i_k, unread inputs then produced outputs, r_{k-1})
        rest = math.prod(self.in_modes[1:])
        state = ops.reshape(flat, (-1, self.in_modes[0], rest, 1))
        for k, (core, (r0, i, o, r1)) in enumerate(zip(self.cores, self.stage.core_shapes())):
            rest = state.shape[2]
            matrix = ops.reshape(ops.transpose(core, (1, 0, 2, 3)), (i * r0, o * r1))
            moved = ops.reshape(ops.transpose(state, (0, 2, 1, 3)), (-1, i * r0))
            produced = ops.matmul(moved, matrix)
            following = self.in_modes[k + 1] if k + 1 < len(self.in_modes) else 1
            state = ops.reshape(produced, (-1, following, rest * o // following, r1))
        return ops.reshape(state, (-1, self.units))

    def macs_per_position(self) -> int:
        return self.stage.macs_per_position()

    def get_config(self):
        return {**super().get_config(), "ranks": list(self.ranks)}


@keras.saving.register_keras_serializable(package="lrf_optuna")
class TuckerDense(_TensorizedDense):
    """Dense layer whose kernel, tensorized as (*in_modes, *out_modes), is a Tucker tensor."""

    def __init__(self, in_modes, out_modes, in_ranks, out_ranks, **kwargs):
        super().__init__(in_modes, out_modes, **kwargs)
        self.in_ranks = tuple(int(r) for r in in_ranks)
        self.out_ranks = tuple(int(r) for r in out_ranks)
        self.stage = TuckerStage(self.in_modes, self.out_modes, self.in_ranks, self.out_ranks)

    def build(self, input_shape):
        self._check_input(input_shape)
        # Creation order == weight order == the factorizer's kernel order.
        shapes = self.stage.factor_shapes()
        n = len(self.in_modes)
        make = lambda k: self.add_weight(name=f"factor_{k}", shape=shapes[k], initializer="orthogonal")
        self.factors = [make(k) for k in range(n)]
        core_shape = self.in_ranks + self.out_ranks
        self.core = self.add_weight(name="core", shape=core_shape, initializer="glorot_uniform")
        self.factors += [make(k) for k in range(n, len(shapes))]
        self._build_bias()

    def _matmul(self, flat):
        n = len(self.in_modes)
        state = ops.reshape(flat, (-1, *self.in_modes))
        # Contracting axis 1 each time rotates the modes, so after n steps they are
        # back in order (see TuckerStage.macs_per_position for the cost).
        for factor in self.factors[:n]:
            state = ops.tensordot(state, factor, axes=[[1], [0]])
        core = ops.reshape(self.core, (math.prod(self.in_ranks), math.prod(self.out_ranks)))
        state = ops.matmul(ops.reshape(state, (-1, math.prod(self.in_ranks))), core)
        state = ops.reshape(state, (-1, *self.out_ranks))
        for factor in self.factors[n:]:
            state = ops.tensordot(state, ops.transpose(factor), axes=[[1], [0]])
        return ops.reshape(state, (-1, self.units))

    def macs_per_position(self) -> int:
        return self.stage.macs_per_position()

    def get_config(self):
        return {**super().get_config(), "in_ranks": list(self.in_ranks), "out_ranks": list(self.out_ranks)}
