"""The ``spikedistill`` command line: ``train``, ``eval``, ``demo``, ``report``, ``bench``,
``export``, ``config`` (a resolved config, every key) and ``configs`` (the shipped recipes); also
``python -m spikedistill``.

Every failure prints one line on stderr, once (rank 0 under torchrun; during training every
rank that fails, naming itself, as its data shard is its own): a mistake (bad config,
missing data, corrupt checkpoint, full disk, ...) exits with status 2, anything unexpected with
status 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from types import ModuleType

from ..errors import RankError, SpikeDistillError, first_line, is_out_of_memory
from ..warning_site import is_own
from . import bench, demo, evaluate, export, recipes, report, show_config, train

COMMANDS: tuple[ModuleType, ...] = (train, evaluate, demo, report, bench, export)
COMMANDS += (show_config, recipes)

OOM_HINT = (
    "Lower data.batch_size or model.T, train with train.backprop=rate (memory does not grow "
    "with T), set model.options.checkpoint_blocks=true, or use train.amp=bf16"
)


class VersionAction(argparse.Action):
    """``--version``: this package's version and torch's (imported only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import torch

        from .. import __version__

        print(f"spikedistill {__version__} (torch {torch.__version__})")
        parser.exit()


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="spikedistill", description="Train spiking networks by distillation from ANNs."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action=VersionAction, help="show the versions and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(text.split())


def _other_rank() -> bool:
    """A process of a torchrun job other than rank 0 (an odd environment counts as not)."""
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return False
    return 0 < rank < world


def _print_error(message: str, every_rank: bool = False) -> None:
    if every_rank or not _other_rank():  # under torchrun: once, from rank 0
        print(f"spikedistill: error: {one_line(message)}", file=sys.stderr, flush=True)


def _error_message(err: BaseException) -> tuple[str, int]:
    """The line and exit status for an exception that ended a command."""
    if isinstance(err, RankError):
        message, status = _error_message(err.error)
        return f"rank {err.rank}: {message}", status
    if isinstance(err, SpikeDistillError):
        return str(err), getattr(err, "exit_status", 2)
    if is_out_of_memory(err):
        return f"out of memory ({first_line(err)}). {OOM_HINT}", 2
    if isinstance(err, OSError):
        return str(err), 2
    text = str(err).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    hint = "(a bug? spikedistill --debug COMMAND ... shows the traceback)"
    return f"unexpected {type(err).__name__}{detail} {hint}", 1


class HeldWarnings:
    """Holds the warnings a command raises until ``release()`` (its setup went well: they are
    shown, and later ones as they come); dropped if it fails first, so its error stays one
    line. spikedistill's own show as one line (each says what to change), from rank 0."""

    def __init__(self) -> None:
        self.held: list[tuple] = []
        self.live = False
        self.python_show = warnings.showwarning

    def show(self, message, category, filename, lineno, file=None, line=None) -> None:
        if not is_own(filename):
            self.python_show(message, category, filename, lineno, file, line)
        elif not _other_rank():
            print(f"spikedistill: warning: {one_line(str(message))}", file=file or sys.stderr)

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        if self.live:
            self.show(message, category, filename, lineno, file, line)
        else:
            self.held.append((message, category, filename, lineno, file, line))

    def release(self) -> None:
        self.live = True
        for held in self.held:
            self.show(*held)
        self.held.clear()


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command: any failure is one line (``--debug``: the traceback); warnings wait for
    ``args.release_warnings()`` or the command's end (see ``HeldWarnings``)."""
    if args.debug:
        args.release_warnings = lambda: None
        return func(args)
    held = HeldWarnings()
    args.release_warnings = held.release
    with warnings.catch_warnings():
        warnings.showwarning = held
        try:
            status = func(args)
        except KeyboardInterrupt:
            print("spikedistill: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            message, status = _error_message(err)
            _print_error(message, every_rank=isinstance(err, RankError))
            return status
        held.release()
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
            args.overrides += extra  # overrides may follow the flags
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # --help, or a usage error (printed on one line)
        return done.code if isinstance(done.code, int) else 2
    args.argv = argv
    return run_command(args.func, args)
