"""Calibration profile: similarity of every (layer, method, rank) candidate, no retraining.

For each compressible layer the calibration inputs are captured once; each candidate
is evaluated by running the original layer with its kernel replaced by the low-rank
reconstruction (mathematically the factorized chain) on those inputs, and comparing
with the original outputs (columns ``METRICS``). It is also swapped alone into a copy
of the whole model, whose outputs are compared with the original model's (columns
``OUTPUT_METRICS``): that sees how the layer's error grows through the layers after
it. Decompositions of one layer and method share their work across ranks (one SVD
serves every SVD rank).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lrf_optuna.factorizers import get_factorizer
from lrf_optuna.model._analysis import ModelAnalysis, analyze
from lrf_optuna.model._kernel_swap import KernelSwapper
from lrf_optuna.model._layer_specs import LayerSpec, canonical_kernel, keras_kernel, kernel_variable
from lrf_optuna.model._statistics import check_calibration
from lrf_optuna.similarity._capture import CallCapture, Captured, capture_groups
from lrf_optuna.similarity._capture_plan import flatten, plan_capture
from lrf_optuna.similarity._metrics import METRICS, OUTPUT_METRICS, ReferenceMaps

__all__ = [
    "FACTORIZATIONS",
    "PROFILE_COLUMNS",
    "ProfileSettings",
    "check_calibration",
    "check_weights",
    "rank_grid",
    "run_profile",
]

logger = logging.getLogger(__name__)
FACTORIZATIONS = ("data_aware", "weights")
PROFILE_COLUMNS = [
    "layer", "method", "rank", "params", "macs", *METRICS, *OUTPUT_METRICS, "weight_error", "seconds"
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """How the profile is computed (all of it goes into the cache key).

    ``max_samples`` calibration samples are used (the first ones); ``max_positions``
    spatial positions per sample (a fixed random subset) are kept for comparisons: the
    calibration set streams through the model in batches of ``batch_size``, and of each
    layer only its outputs at those positions and the inputs that recompute them are kept
    (``lrf_optuna.similarity._capture``), for as many layers at a time as ``memory_budget_mb`` allows
    (besides the model and the calibration array) beside the activations of a forward pass
    (its batch is ``batch_size`` or less to fit); a budget too small for one layer at batch 1
    is refused with the minimum that works;
    the first ``output_samples`` of them (at most ``max_samples``) run through the whole
    model once per candidate for the ``OUTPUT_METRICS`` columns, left NaN when it is 0.
    ``None`` (the default) means "only if the search maximizes an output_* metric", as
    resolved by ``for_metric``: that costs one forward pass of the model per candidate.
    ``factorization`` "data_aware" factorizes the candidates against the statistics of
    each layer's captured calibration inputs (``lrf_optuna.model._statistics``, no extra pass),
    "weights" against the weights alone; materialize a plan the same way (``calibration=``).
    """

    ranks_per_method: int = 8
    max_samples: int = 256
    max_positions: int = 256
    memory_budget_mb: int = 2048
    batch_size: int = 32
    output_samples: int | None = None
    methods: tuple[str, ...] | None = None
    seed: int = 0
    factorization: str = "data_aware"

    def __post_init__(self):
        if self.factorization not in FACTORIZATIONS:
            raise ValueError(
                f"Invalid `factorization`: expected one of {list(FACTORIZATIONS)}, "
                f"received {self.factorization!r}"
            )
        if not 1 <= self.ranks_per_method <= 16:
            raise ValueError(f"Invalid `ranks_per_method`: expected 1..16, received {self.ranks_per_method}")
        for name in ("max_samples", "max_positions", "memory_budget_mb", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid `{name}`: expected >= 1, received {getattr(self, name)}")
        if self.output_samples is not None and self.output_samples < 0:
            raise ValueError(
                f"Invalid `output_samples`: expected None or >= 0, received {self.output_samples}"
            )

    def for_metric(self, metric: str | None) -> ProfileSettings:
        """These settings with ``output_samples=None`` resolved for a search maximizing
        ``metric`` (``None``: no search, no network outputs)."""
        if self.output_samples is not None:
            return self
        wanted = self.max_samples if metric in OUTPUT_METRICS else 0
        return dataclasses.replace(self, output_samples=wanted)


def check_weights(model: keras.Model) -> None:
    """ValueError naming the first layer whose weights hold NaN or Inf."""
    for weight in model.weights:
        values = keras.ops.convert_to_numpy(weight)
        if not np.issubdtype(values.dtype, np.floating):
            continue
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            layer = weight.path.rsplit("/", 1)[0] if "/" in weight.path else weight.path
            raise ValueError(
                f"Invalid weights in layer '{layer}': found {bad} NaN/Inf value(s) in '{weight.path}' "
                f"({values.size} values), expected finite numbers. Fix: the model diverged or was "
                "corrupted; retrain it or restore a checkpoint with finite weights."
            )


def rank_grid(useful_max: int, count: int) -> list[int]:
    """Rank 1 plus ranks evenly spaced up to ``useful_max`` (inclusive), ``count`` at most."""
    if useful_max <= count:
        return list(range(1, useful_max + 1))
    steps = np.ceil(np.arange(1, count) * useful_max / (count - 1)).astype(int)
    return sorted({1, *steps.tolist()})


def _copy(layer, config: dict, shape: tuple):
    copy = layer.__class__.from_config(config)
    copy.build(shape)
    copy.set_weights(layer.get_weights())
    return copy


class _LayerProbe:
    """The original layer on the kept inputs of each call, with swappable kernel.

    ``"full"`` and ``"rows"`` inputs run through a copy of the layer; ``"windows"`` through
    a copy with ``padding="valid"``, whose output on a window is the output at its centre
    position (``lrf_optuna.similarity._capture``). Outputs are compared at the kept positions only.
    """

    def __init__(self, layer, spec: LayerSpec, captured: Captured, settings: ProfileSettings):
        self.spec, self.captured, self.batch = spec, captured, settings.batch_size
        self.layers = {}
        for call in captured.calls:
            key = "windows" if call.mode == "windows" else "maps"
            if key not in self.layers:
                config = layer.get_config() | ({"padding": "valid"} if key == "windows" else {})
                self.layers[key] = _copy(layer, config, call.inputs[0].shape)
        self.layer = next(iter(self.layers.values()))
        self.references = [ReferenceMaps(call.outputs[0]) for call in captured.calls]

    def _outputs(self, call: CallCapture) -> np.ndarray:
        layer = self.layers["windows" if call.mode == "windows" else "maps"]
        samples = len(call.outputs[0])
        inputs = call.inputs[0]
        per_sample = len(inputs) // samples  # kept positions per sample ("rows", "windows"), else 1
        result = np.empty_like(call.outputs[0])  # filled in place: no pieces to concatenate
        for start in range(0, samples, self.batch):
            outputs = keras.ops.convert_to_numpy(
                layer(inputs[start * per_sample : (start + self.batch) * per_sample])
            )
            if call.mode == "full":
                outputs = flatten(outputs, call.subset)
            result[start : start + self.batch] = outputs.reshape(len(outputs) // per_sample, -1)
        return result

    def similarities(self, keras_layout: np.ndarray) -> dict[str, float]:
        for layer in self.layers.values():
            kernel_variable(layer, self.spec.geometry).assign(keras_layout)
        scores = {name: 0.0 for name in METRICS}
        for call, reference in zip(self.captured.calls, self.references):
            for name, value in reference.scores(self._outputs(call)).items():
                scores[name] += value / len(self.references)
        return scores


class _NetworkProbe:
    """The whole model with one candidate swapped in, scored on the network outputs."""

    def __init__(self, model: keras.Model, analysis: ModelAnalysis, data: np.ndarray, batch_size: int):
        self.swapper = KernelSwapper(model, analysis, data, batch_size=batch_size)
        self.reference = ReferenceMaps(self.swapper.outputs())

    def similarities(self, name: str, key: tuple, keras_layout: np.ndarray) -> dict[str, float]:
        self.swapper.assign(name, key, keras_layout)
        scores = self.reference.scores(self.swapper.outputs())
        self.swapper.assign(name, None)
        return {f"output_{metric}": value for metric, value in scores.items()}


def _profile_layer(
    layer, spec: LayerSpec, captured: Captured, settings: ProfileSettings, network: _NetworkProbe | None
) -> list[dict]:
    probe = _LayerProbe(layer, spec, captured, settings)
    geom = spec.geometry
    kernel = canonical_kernel(layer, geom)
    norm = float(np.linalg.norm(kernel)) or 1.0
    rows = []
    methods = [m for m in spec.methods if settings.methods is None or m in settings.methods]
    stats = captured.statistics
    for method in methods:
        factorizer = get_factorizer(geom.kind, method)
        ranks = rank_grid(spec.useful_ranks[method], settings.ranks_per_method)
        if not ranks:
            continue
        start = time.perf_counter()
        kernels = factorizer.decompose_ranks(kernel, geom, ranks, seed=settings.seed, stats=stats)
        shared = (time.perf_counter() - start) / len(ranks)
        for rank in ranks:
            tick = time.perf_counter()
            approx = factorizer.reconstruct(kernels[rank], geom, rank)
            layout = keras_kernel(approx, probe.layer, geom)
            scores = probe.similarities(layout)
            if network is None:
                scores.update(dict.fromkeys(OUTPUT_METRICS, float("nan")))
            else:
                scores.update(network.similarities(spec.name, (method, rank), layout))
            cost = factorizer.cost(geom, rank)
            rows.append({
                "layer": spec.name, "method": method, "rank": rank,
                "params": cost.params, "macs": cost.macs, **scores,
                "weight_error": float(np.linalg.norm(approx - kernel)) / norm,
                "seconds": shared + time.perf_counter() - tick,
            })  # fmt: skip
    return rows


def run_profile(
    model: keras.Model,
    calibration_x: np.ndarray,
    *,
    settings: ProfileSettings | None = None,
    analysis: ModelAnalysis | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Similarity, params and MACs of every candidate; see ``PROFILE_COLUMNS``."""
    settings = settings or ProfileSettings()
    analysis = analysis or analyze(model)
    data = check_calibration(model, calibration_x, max_samples=settings.max_samples)[: settings.max_samples]
    specs = list(analysis.specs.values())
    layers = analysis.layers
    rows: list[dict] = []
    aware = settings.factorization == "data_aware"
    batch, probe_batch, groups = plan_capture(
        model, specs, layers, len(data), budget=settings.memory_budget_mb * 2**20,
        batch_size=settings.batch_size, limit=settings.max_positions, statistics=aware,
    )  # fmt: skip
    settings = dataclasses.replace(settings, batch_size=probe_batch)  # the layer probes' batches
    network = None
    if settings.output_samples:  # None (unresolved) computes none, as 0 does
        network = _NetworkProbe(model, analysis, data[: settings.output_samples], batch)
    groups = capture_groups(
        model, groups, layers, data, max_positions=settings.max_positions, seed=settings.seed,
        batch_size=batch, statistics=aware,
    )  # fmt: skip
    with tqdm(total=len(specs), desc="profile", unit="layer", disable=not show_progress) as bar:
        # not tqdm(groups): its frame, like the loop variable, would hold the last layer's capture
        # through the next group's forward pass
        for spec, captured in groups:
            rows.extend(_profile_layer(layers[spec.name], spec, captured, settings, network))
            del captured
            bar.update()
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)
