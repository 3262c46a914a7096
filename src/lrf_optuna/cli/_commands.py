"""Implementations of the ``lrf-optuna`` sub-commands (argparse namespaces in, exit code out)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import optuna

from lrf_optuna.cli._parser import DEFAULT_MODEL
from lrf_optuna.factorizers import methods_for
from lrf_optuna.files._models import load_arrays, load_inputs, load_model_file, writable_directory
from lrf_optuna.model._analysis import analyze
from lrf_optuna.results._compress import calibration_subset, compress_trial
from lrf_optuna.results._report import summary_table, write_report
from lrf_optuna.results._selection import select_trial
from lrf_optuna.search._objective import trial_metrics
from lrf_optuna.search._run import run_study
from lrf_optuna.search._settings import DataSpec, SearchSettings
from lrf_optuna.search._settings_record import stored_settings
from lrf_optuna.search._storage import artifact_dir_for, default_storage_url, open_storage, storage_label
from lrf_optuna.search._study import remaining_trials
from lrf_optuna.search._worker import run_worker as _run_worker
from lrf_optuna.similarity._profile import ProfileSettings
from lrf_optuna.similarity._profile_model import profile_model

logger = logging.getLogger("lrf_optuna")
Show = Callable[[str], None]  # how a command hands its output to the CLI (cli/_main.py prints it)


def _storage_url(args: argparse.Namespace) -> str:
    return args.storage or default_storage_url(args.study)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The model file and data of a command: its options, else the study's record, else defaults."""

    model: str
    data: DataSpec


def _recorded(args: argparse.Namespace) -> SearchSettings | None:
    """The settings study --study recorded, when it exists (nothing is created)."""
    try:
        storage = open_storage(_storage_url(args), create=False)
    except FileNotFoundError:
        return None
    return stored_settings(storage, args.study)


def _inputs(
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


def _load(inputs: Inputs):
    model = load_model_file(inputs.model)
    train, test = load_arrays(inputs.data.source)
    return model, train, test


def _calibration(inputs: Inputs, x: np.ndarray | None = None) -> np.ndarray:
    """The calibration subset of ``x`` (default: the inputs of the data; an .npy is enough)."""
    x = load_inputs(inputs.data.source) if x is None else x
    return calibration_subset(x, inputs.data.calibration, seed=inputs.data.seed)


def _search_options(args: argparse.Namespace, recorded: SearchSettings | None) -> dict[str, object]:
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


def _search(
    args: argparse.Namespace, recorded: SearchSettings | None, inputs: Inputs, model, x_train: np.ndarray
) -> optuna.Study:
    """Run or resume the search, recording the model path and data spec in a new study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_study(
        model, _calibration(inputs, x_train), storage=_storage_url(args), study_name=args.study,
        n_trials=args.trials, cache_dir=Path(args.cache_dir), model_path=str(Path(inputs.model).resolve()),
        data_spec=inputs.data, **_search_options(args, recorded),
    )  # fmt: skip


def _load_study(args: argparse.Namespace) -> optuna.Study:
    url = _storage_url(args)
    storage = open_storage(url, create=False)  # FileNotFoundError for a missing SQLite/journal file
    names = optuna.get_all_study_names(storage)
    if args.study not in names:
        raise ValueError(
            f"Invalid --study: expected one of {names} in {storage_label(url)}, received {args.study!r}"
        )
    return optuna.load_study(study_name=args.study, storage=storage)


def _finetune(args: argparse.Namespace, inputs: Inputs, model, study, train, test, show: Show) -> int:
    trial = select_trial(
        study,
        trial_number=args.trial,
        min_similarity=args.pick_min_similarity,
        max_params=args.pick_max_params,
    )
    output = Path(args.output or f"studies/{args.study}-trial{trial.number}.keras")
    done = compress_trial(
        model, study, trial, train=train, test=test, output=output, artifact_dir=artifact_dir_for(_storage_url(args)),
        epochs=args.epochs, distill=args.distill, learning_rate=args.learning_rate, schedule=args.schedule,
        seed=inputs.data.seed, input_path=Path(inputs.model),
    )  # fmt: skip
    similarity = trial_metrics(trial, study.metric_names)["similarity"]
    show(f"\nTrial {trial.number} (similarity {similarity:.4f}), {len(done.plan)} layer(s) factorized")
    show(summary_table(done.original_cost, done.cost, done.result))
    show(f"\nCompressed model: {done.path}")
    return 0


def run_profile(args: argparse.Namespace, show: Show) -> int:
    inputs = _inputs(args, None, new=True)
    model, x = load_model_file(inputs.model), _calibration(inputs)
    settings = ProfileSettings(ranks_per_method=args.ranks, seed=inputs.data.seed).for_metric(args.metric)
    profile = profile_model(model, x, settings=settings, cache_dir=Path(args.cache_dir))
    show(profile.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def run_search(args: argparse.Namespace, show: Show) -> int:
    recorded = _recorded(args)
    inputs = _inputs(args, recorded, new=True)
    model = load_model_file(inputs.model)
    study = _search(args, recorded, inputs, model, load_inputs(inputs.data.source))
    show(
        f"study '{study.study_name}': {len(study.trials)} trials, {len(study.best_trials)} on the Pareto front"
    )
    return 0


def run_worker(args: argparse.Namespace, show: Show) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inputs = _inputs(args, _recorded(args))
    model, x = load_model_file(inputs.model), _calibration(inputs)
    study = _run_worker(
        model, x, storage=_storage_url(args), study_name=args.study, n_trials=args.trials,
        seed=inputs.data.seed, worker_id=args.worker_id, cache_dir=Path(args.cache_dir),
    )  # fmt: skip
    complete = args.trials - remaining_trials(study, args.trials)
    show(f"study '{study.study_name}': {complete} COMPLETE search trials (budget {args.trials})")
    return 0


def run_finetune(args: argparse.Namespace, show: Show) -> int:
    study = _load_study(args)
    inputs = _inputs(args, _recorded(args))
    model, train, test = _load(inputs)
    return _finetune(args, inputs, model, study, train, test, show)


def run_report(args: argparse.Namespace, show: Show) -> int:
    study = _load_study(args)
    model = load_model_file(_inputs(args, _recorded(args), data=False).model)
    out = writable_directory(args.out or f"studies/{args.study}-report", option="--out directory")
    for path in write_report(study, out, layers=list(analyze(model).specs)):
        show(path)
    return 0


def run_demo(args: argparse.Namespace, show: Show) -> int:
    recorded = _recorded(args)
    inputs = _inputs(args, recorded, new=True)
    model, train, test = _load(inputs)
    study = _search(args, recorded, inputs, model, train[0])
    _finetune(args, inputs, model, study, train, test, show)
    out = Path(f"studies/{args.study}-report")
    written = write_report(study, out, layers=list(analyze(model).specs))
    show(f"\nPareto front: {out / 'pareto_2d.html'} ({len(written)} report files in {out})")
    show(f"Dashboard:    lrf-optuna dashboard --study {args.study}   (then open http://127.0.0.1:8080)")
    show("Run `make demo` again to resume the same study.")
    return 0


def run_dashboard(args: argparse.Namespace, show: Show) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    study = _load_study(args)  # fails clearly on a missing database or study
    url = _storage_url(args)
    artifacts = artifact_dir_for(url)
    artifacts.mkdir(parents=True, exist_ok=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can read the study", args.host)
    show(f"optuna-dashboard for study '{study.study_name}' on http://{args.host}:{args.port}/dashboard/")
    run_server(
        open_storage(url),
        host=args.host,
        port=args.port,
        artifact_store=FileSystemArtifactStore(str(artifacts)),
    )
    return 0


def _export_source(args: argparse.Namespace, scratch: Path) -> tuple[Path, Path]:
    """The .keras file ``export`` converts (--model, or the study's recorded fine-tuned model)
    and the path the .tflite is named after."""
    from lrf_optuna.results._records import finetune_records, recorded_model

    if args.model is not None:
        if args.trial is not None:
            raise ValueError("Invalid --trial: expected it with --study only, received it with --model")
        return Path(args.model), Path(args.model)
    study = _load_study(args)
    records = finetune_records(study, args.trial)
    if not records:
        trial = "" if args.trial is None else f" --trial {args.trial}"
        done = sorted({t.user_attrs["lrf_optuna:finetuned_from"] for t in finetune_records(study)})
        raise ValueError(
            f"Invalid --study '{args.study}'{trial}: expected a fine-tuned model, received none "
            f"(trials fine-tuned so far: {done or 'none'}). Run `lrf-optuna finetune --study "
            f"{args.study}{trial}` first, then export again."
        )
    record = records[-1]  # the latest fine-tuning of that trial
    source = recorded_model(record, artifact_dir_for(_storage_url(args)), scratch)
    return source, Path(record.user_attrs["model_file"])


def run_export(args: argparse.Namespace, show: Show) -> int:
    import tempfile

    from lrf_optuna.runtime._tflite import export_tflite

    quantization = None if args.quantization == "none" else args.quantization
    with tempfile.TemporaryDirectory() as scratch:
        source, named = _export_source(args, Path(scratch))
        model = load_model_file(source)
        suffix = "" if quantization is None else f"-{quantization}"
        output = Path(args.output or named.with_name(f"{named.stem}{suffix}.tflite"))
        path = export_tflite(model, output, quantization=quantization, seed=args.seed)
    show(f"TFLite model: {path} ({path.stat().st_size:,} bytes, from {named}, checked against Keras)")
    return 0


def run_bench(args: argparse.Namespace, show: Show) -> int:
    from lrf_optuna.runtime._bench import bench_model, bench_table

    paths = [Path(args.model)] + ([Path(args.compare)] if args.compare else [])
    models = [load_model_file(path) for path in paths]  # every file checked before timing any
    options = {"warmup": args.warmup, "runs": args.runs, "seed": args.seed}
    show(bench_table([bench_model(model, path, **options) for model, path in zip(models, paths)]))
    return 0
