"""``lrf-optuna``'s entry point: logging, a quiet TensorFlow import, SIGINT, user errors to exit codes."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading

from lrf_optuna.cli._parser import build_parser

logger = logging.getLogger("lrf_optuna")


USER_ERRORS = (FileNotFoundError, ValueError, TypeError, PermissionError, ConnectionError, ImportError)
INTERRUPTED = "interrupted: the study keeps every finished trial; run the same command to resume"


class _Interrupts:
    """Remembers SIGINT: TensorFlow may turn a KeyboardInterrupt into another exception."""

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our messages at INFO; third-party libraries (TensorFlow, kaleido) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("kaleido", "choreographer"):  # they set INFO on their own loggers
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _import_tensorflow(verbose=args.verbose)
    from lrf_optuna.cli import _commands as commands  # heavy imports (TensorFlow) only after --help

    interrupts = _Interrupts()
    previous = signal.signal(signal.SIGINT, interrupts) if _main_thread() else None
    try:
        return getattr(commands, f"run_{args.command}")(args, show=_show)
    except KeyboardInterrupt:
        logger.error(INTERRUPTED)
        return 130
    except Exception as error:
        if interrupts.count:
            logger.error(INTERRUPTED)
            return 130
        if not isinstance(error, USER_ERRORS):
            raise
        logger.error("%s", error)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _import_tensorflow(*, verbose: bool) -> None:
    """Import TensorFlow (Keras' backend) quietly, unless ``verbose``.

    TF_CPP_MIN_LOG_LEVEL=3 must be set before the import; even then the import writes
    absl's "All log messages before absl::InitializeLog()" and the oneDNN notice straight
    to file descriptor 2, so that descriptor points at /dev/null for the import only.
    """
    # a value the user set wins; -v shows TensorFlow's C++ log lines (all levels) as they come
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if verbose:
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules or backend != "tensorflow" or not importlib.util.find_spec("tensorflow"):
        return
    with _native_stderr_silenced():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _show(text: str) -> None:
    """The command line's output: the only place in the package that prints."""
    print(text, flush=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
