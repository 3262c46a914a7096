"""Implementations of the ``lrf-optuna`` sub-commands (argparse namespaces in, exit code out)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import optuna

from lrf_optuna.cli._inputs import (
    Inputs,
    calibration_of,
    command_inputs,
    load_model_and_data,
    load_study,
    recorded_settings,
    search_options,
    storage_url,
)
from lrf_optuna.files._models import load_inputs, load_model_file, writable_directory
from lrf_optuna.model._analysis import analyze
from lrf_optuna.results._compress import compress_trial
from lrf_optuna.results._report import summary_table, write_report
from lrf_optuna.results._selection import select_trial
from lrf_optuna.search._objective import trial_metrics
from lrf_optuna.search._run import run_study
from lrf_optuna.search._settings import SearchSettings
from lrf_optuna.search._storage import artifact_dir_for, open_storage
from lrf_optuna.search._study import remaining_trials
from lrf_optuna.search._worker import run_worker as _run_worker
from lrf_optuna.similarity._profile import ProfileSettings
from lrf_optuna.similarity._profile_model import profile_model

logger = logging.getLogger("lrf_optuna")
Show = Callable[[str], None]  # how a command hands its output to the CLI (cli/_main.py prints it)


def _search(
    args: argparse.Namespace, recorded: SearchSettings | None, inputs: Inputs, model, x_train: np.ndarray
) -> optuna.Study:
    """Run or resume the search, recording the model path and data spec in a new study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_study(
        model, calibration_of(inputs, x_train), storage=storage_url(args), study_name=args.study,
        n_trials=args.trials, cache_dir=Path(args.cache_dir), model_path=str(Path(inputs.model).resolve()),
        data_spec=inputs.data, **search_options(args, recorded),
    )  # fmt: skip


def _finetune(args: argparse.Namespace, inputs: Inputs, model, study, train, test, show: Show) -> int:
    trial = select_trial(
        study,
        trial_number=args.trial,
        min_similarity=args.pick_min_similarity,
        max_params=args.pick_max_params,
    )
    output = Path(args.output or f"studies/{args.study}-trial{trial.number}.keras")
    done = compress_trial(
        model, study, trial, train=train, test=test, output=output, artifact_dir=artifact_dir_for(storage_url(args)),
        epochs=args.epochs, distill=args.distill, learning_rate=args.learning_rate, schedule=args.schedule,
        seed=inputs.data.seed, input_path=Path(inputs.model),
    )  # fmt: skip
    similarity = trial_metrics(trial, study.metric_names)["similarity"]
    show(f"\nTrial {trial.number} (similarity {similarity:.4f}), {len(done.plan)} layer(s) factorized")
    show(summary_table(done.original_cost, done.cost, done.result))
    show(f"\nCompressed model: {done.path}")
    return 0


def run_profile(args: argparse.Namespace, show: Show) -> int:
    inputs = command_inputs(args, None, new=True)
    model, x = load_model_file(inputs.model), calibration_of(inputs)
    settings = ProfileSettings(ranks_per_method=args.ranks, seed=inputs.data.seed).for_metric(args.metric)
    profile = profile_model(model, x, settings=settings, cache_dir=Path(args.cache_dir))
    show(profile.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def run_search(args: argparse.Namespace, show: Show) -> int:
    recorded = recorded_settings(args)
    inputs = command_inputs(args, recorded, new=True)
    model = load_model_file(inputs.model)
    study = _search(args, recorded, inputs, model, load_inputs(inputs.data.source))
    show(
        f"study '{study.study_name}': {len(study.trials)} trials, {len(study.best_trials)} on the Pareto front"
    )
    return 0


def run_worker(args: argparse.Namespace, show: Show) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inputs = command_inputs(args, recorded_settings(args))
    model, x = load_model_file(inputs.model), calibration_of(inputs)
    study = _run_worker(
        model, x, storage=storage_url(args), study_name=args.study, n_trials=args.trials,
        seed=inputs.data.seed, worker_id=args.worker_id, cache_dir=Path(args.cache_dir),
    )  # fmt: skip
    complete = args.trials - remaining_trials(study, args.trials)
    show(f"study '{study.study_name}': {complete} COMPLETE search trials (budget {args.trials})")
    return 0


def run_finetune(args: argparse.Namespace, show: Show) -> int:
    study = load_study(args)
    inputs = command_inputs(args, recorded_settings(args))
    model, train, test = load_model_and_data(inputs)
    return _finetune(args, inputs, model, study, train, test, show)


def run_report(args: argparse.Namespace, show: Show) -> int:
    study = load_study(args)
    model = load_model_file(command_inputs(args, recorded_settings(args), data=False).model)
    out = writable_directory(args.out or f"studies/{args.study}-report", option="--out directory")
    for path in write_report(study, out, layers=list(analyze(model).specs)):
        show(path)
    return 0


def run_demo(args: argparse.Namespace, show: Show) -> int:
    recorded = recorded_settings(args)
    inputs = command_inputs(args, recorded, new=True)
    model, train, test = load_model_and_data(inputs)
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

    study = load_study(args)  # fails clearly on a missing database or study
    url = storage_url(args)
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
    study = load_study(args)
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
    source = recorded_model(record, artifact_dir_for(storage_url(args)), scratch)
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
