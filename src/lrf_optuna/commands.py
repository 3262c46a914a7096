"""Implementations of the ``lrf-optuna`` sub-commands (argparse namespaces in, exit code out)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import optuna

from lrf_optuna.analysis import analyze
from lrf_optuna.model_io import load_arrays, load_inputs, load_model_file, writable_directory
from lrf_optuna.objective import Constraints
from lrf_optuna.profile import ProfileSettings
from lrf_optuna.report import summary_table, write_report
from lrf_optuna.search import profile_model, run_study
from lrf_optuna.search_space import DEFAULT_METHODS
from lrf_optuna.select import select_trial
from lrf_optuna.storage import artifact_dir_for, default_storage_url, open_storage, storage_label
from lrf_optuna.study import remaining_trials
from lrf_optuna.worker import run_worker as _run_worker
from lrf_optuna.workflow import calibration_subset, compress_trial

logger = logging.getLogger("lrf_optuna")
Show = Callable[[str], None]  # how a command hands its output to the CLI (cli.py prints it)


def _storage_url(args: argparse.Namespace) -> str:
    return args.storage or default_storage_url(args.study)


def _load(args: argparse.Namespace):
    model = load_model_file(args.model)
    train, test = load_arrays(args.data)
    return model, train, test


def _calibration(args: argparse.Namespace):
    """The model and its calibration inputs (an .npy of inputs is enough here)."""
    model = load_model_file(args.model)
    return model, calibration_subset(load_inputs(args.data), args.calibration, seed=args.seed)


def _search(args: argparse.Namespace, model, x_train) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = {k: getattr(args, k) for k in ("metric", "aggregator") if getattr(args, k) is not None}
    if args.conv_methods or args.dense_methods:
        options["methods"] = {
            "conv": args.conv_methods or DEFAULT_METHODS["conv"],
            "dense": args.dense_methods or DEFAULT_METHODS["dense"],
        }
    constraints = Constraints(args.max_params, args.max_macs, args.min_similarity)
    return run_study(
        model, calibration_subset(x_train, args.calibration, seed=args.seed),
        storage=_storage_url(args), study_name=args.study, n_trials=args.trials, seed=args.seed,
        sampler=args.sampler, population_size=args.population, proxy=args.proxy,
        constraints=constraints, cache_dir=Path(args.cache_dir), **options,
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


def _finetune(args: argparse.Namespace, model, study, train, test, show: Show) -> int:
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
        seed=args.seed, input_path=Path(args.model),
    )  # fmt: skip
    show(f"\nTrial {trial.number} (similarity {trial.values[2]:.4f}), {len(done.plan)} layer(s) factorized")
    show(summary_table(done.original_cost, done.cost, done.result))
    show(f"\nCompressed model: {done.path}")
    return 0


def run_profile(args: argparse.Namespace, show: Show) -> int:
    model, x = _calibration(args)
    settings = ProfileSettings(ranks_per_method=args.ranks, seed=args.seed).for_metric(args.metric)
    profile = profile_model(model, x, settings=settings, cache_dir=Path(args.cache_dir))
    show(profile.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def run_search(args: argparse.Namespace, show: Show) -> int:
    model = load_model_file(args.model)
    study = _search(args, model, load_inputs(args.data))
    show(
        f"study '{study.study_name}': {len(study.trials)} trials, {len(study.best_trials)} on the Pareto front"
    )
    return 0


def run_worker(args: argparse.Namespace, show: Show) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model, x = _calibration(args)
    study = _run_worker(
        model, x, storage=_storage_url(args), study_name=args.study, n_trials=args.trials,
        seed=args.seed, worker_id=args.worker_id, cache_dir=Path(args.cache_dir),
    )  # fmt: skip
    complete = args.trials - remaining_trials(study, args.trials)
    show(f"study '{study.study_name}': {complete} COMPLETE search trials (budget {args.trials})")
    return 0


def run_finetune(args: argparse.Namespace, show: Show) -> int:
    model, train, test = _load(args)
    return _finetune(args, model, _load_study(args), train, test, show)


def run_report(args: argparse.Namespace, show: Show) -> int:
    model = load_model_file(args.model)
    study = _load_study(args)
    out = writable_directory(args.out or f"studies/{args.study}-report", option="--out directory")
    for path in write_report(study, out, layers=list(analyze(model).specs)):
        show(path)
    return 0


def run_demo(args: argparse.Namespace, show: Show) -> int:
    model, train, test = _load(args)
    study = _search(args, model, train[0])
    _finetune(args, model, study, train, test, show)
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
    from lrf_optuna.records import finetune_records, recorded_model

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

    from lrf_optuna.tflite import export_tflite

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
    from lrf_optuna.bench import bench_model, bench_table

    paths = [Path(args.model)] + ([Path(args.compare)] if args.compare else [])
    models = [load_model_file(path) for path in paths]  # every file checked before timing any
    options = {"warmup": args.warmup, "runs": args.runs, "seed": args.seed}
    show(bench_table([bench_model(model, path, **options) for model, path in zip(models, paths)]))
    return 0
