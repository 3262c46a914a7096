"""What a command works on: its storage, study, model file and data, from its options, else the
study's record, else the defaults; and the search options its flags ask for."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import optuna

from lrf_optuna.cli._parser import DEFAULT_MODEL
from lrf_optuna.factorizers import methods_for
from lrf_optuna.files._models import load_arrays, load_inputs, load_model_file
from lrf_optuna.results._compress import calibration_subset
from lrf_optuna.search._settings import DataSpec, SearchSettings
from lrf_optuna.search._settings_record import stored_settings
from lrf_optuna.search._storage import default_storage_url, open_storage, storage_label

__all__ = [
    "Inputs",
    "calibration_of",
    "command_inputs",
    "load_model_and_data",
    "load_study",
    "recorded_settings",
    "search_options",
    "storage_url",
]


def storage_url(args: argparse.Namespace) -> str:
    return args.storage or default_storage_url(args.study)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The model file and data of a command: its options, else the study's record, else defaults."""

    model: str
    data: DataSpec


def recorded_settings(args: argparse.Namespace) -> SearchSettings | None:
    """The settings study --study recorded, when it exists (nothing is created)."""
    try:
        storage = open_storage(storage_url(args), create=False)
    except FileNotFoundError:
        return None
    return stored_settings(storage, args.study)


def command_inputs(
    args: argparse.Namespace, recorded: SearchSettings | None, *, new: bool = False, data: bool = True
) -> Inputs:
    """``new``: a command that may create the study (search, demo, profile) falls back to defaults;
    ``data=False``: a command that reads no data (report) does not need it recorded."""
    spec = recorded.data_spec if recorded else None
    model = args.model or (recorded.model_path if recorded else None)
    if model is None and not new:
        raise ValueError(
            f"Invalid --model: expected the study's recorded model, received a study ('{args.study}') "
            "that recorded none (created by an older version). Pass --model PATH (and --data)."
        )
    if not args.model and model and not Path(model).is_file():
        raise FileNotFoundError(
            f"Invalid study '{args.study}': expected its recorded model file '{model}', which no longer "
            "exists. Pass --model PATH (a model with the same weights)."
        )
    source = args.data or (spec.source if spec else None)
    if source is None and not new and data:
        raise ValueError(
            f"Invalid --data: expected the study's recorded data, received a study ('{args.study}') "
            "that recorded none. Pass --data."
        )
    defaults = DataSpec()
    return Inputs(
        model=model or DEFAULT_MODEL,
        data=DataSpec(
            source=_absolute(source or defaults.source),
            calibration=args.calibration or (spec.calibration if spec else defaults.calibration),
            seed=_first(args.seed, spec.seed if spec else None, defaults.seed),
        ),
    )


def _absolute(source: str) -> str:
    return source if source == DataSpec().source or not Path(source).exists() else str(Path(source).resolve())


def _first(*values):
    return next(v for v in values if v is not None)


def load_model_and_data(inputs: Inputs):
    model = load_model_file(inputs.model)
    train, test = load_arrays(inputs.data.source)
    return model, train, test


def calibration_of(inputs: Inputs, x: np.ndarray | None = None) -> np.ndarray:
    """The calibration subset of ``x`` (default: the inputs of the data; an .npy is enough)."""
    x = load_inputs(inputs.data.source) if x is None else x
    return calibration_subset(x, inputs.data.calibration, seed=inputs.data.seed)


def search_options(args: argparse.Namespace, recorded: SearchSettings | None) -> dict[str, object]:
    """The settings the options ask for (the others: the study's, or SearchSettings's defaults)."""
    base = recorded or SearchSettings()
    names = {"proxy": "proxy", "metric": "metric", "aggregator": "aggregator", "sampler": "sampler"}
    names |= {"population": "population_size", "exclude": "exclude", "seed": "seed"}
    names |= {"min_rank_fraction": "min_rank_fraction", "objectives": "objectives"}
    options = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    latency = {"latency_runtime": "runtime", "latency_batch_size": "batch_size"}
    given = {field: getattr(args, arg) for arg, field in latency.items() if getattr(args, arg) is not None}
    if given:
        options["latency_settings"] = dataclasses.replace(base.latency_settings, **given)
    if args.fixed is not None:
        options["fixed"] = dict(args.fixed)
    if args.conv_methods or args.dense_methods:
        every = {kind: methods_for(kind) for kind in ("conv", "dense")}
        methods = base.methods if base.methods is not None else every
        options["methods"] = {
            "conv": args.conv_methods or methods["conv"],
            "dense": args.dense_methods or methods["dense"],
        }
    limits = ("max_params", "max_macs", "max_flops", "max_latency_ms", "min_similarity")
    limits = {name: getattr(args, name) for name in limits}
    if any(value is not None for value in limits.values()):  # each flag changes one limit
        given = {name: value for name, value in limits.items() if value is not None}
        options["constraints"] = dataclasses.replace(base.constraints, **given)
    return options


def load_study(args: argparse.Namespace) -> optuna.Study:
    url = storage_url(args)
    storage = open_storage(url, create=False)  # FileNotFoundError for a missing SQLite/journal file
    names = optuna.get_all_study_names(storage)
    if args.study not in names:
        raise ValueError(
            f"Invalid --study: expected one of {names} in {storage_label(url)}, received {args.study!r}"
        )
    return optuna.load_study(study_name=args.study, storage=storage)
