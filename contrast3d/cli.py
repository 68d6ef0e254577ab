"""The ``contrast3d`` command line.

Each sub-command lives in its own module under :mod:`contrast3d.commands` and exposes
``register(subparsers)`` which adds its parser and sets ``func``. Every user error ends the
same way (SPEC §10): one line on stderr naming the file or flag, exit code 2, no traceback --
a :class:`DataError` anywhere (``error: <file>: <reason>``), an OS error about a named file, and
argparse's usage errors (printed by :class:`OneLineParser` without the usage block). Warnings are
printed as one ``warning: ...`` line each.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from contrast3d.commands import bench as bench_command
from contrast3d.commands import convert as convert_command
from contrast3d.commands import evaluate as evaluate_command
from contrast3d.commands import finetune as finetune_command
from contrast3d.commands import info as info_command
from contrast3d.commands import predict as predict_command
from contrast3d.commands import prepare as prepare_command
from contrast3d.commands import pretrain as pretrain_command
from contrast3d.commands import probe as probe_command
from contrast3d.commands import quickstart as quickstart_command
from contrast3d.commands import simulate as simulate_command
from contrast3d.commands import viz as viz_command
from contrast3d.errors import DataError

#: The sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = [quickstart_command, info_command, convert_command, simulate_command, prepare_command,
                   pretrain_command, finetune_command, evaluate_command, predict_command, probe_command,
                   bench_command, viz_command]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``contrast3d CMD: error: ...``) and exit 2.

    Sub-parsers inherit the class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _one_line_warnings():
    """Print warnings as ``warning: <message>`` on one line while a command runs."""
    saved = warnings.formatwarning
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {_one_line(message)}\n"  # type: ignore
    try:
        yield
    finally:
        warnings.formatwarning = saved


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="contrast3d",
        description="Self-supervised pre-training of sparse-conv 3D backbones on unlabelled scans, "
                    "fine-tuning and evaluation.")
    from contrast3d import __version__
    from contrast3d.commands._args import tidy_help

    parser.add_argument("--version", action="version", version=f"contrast3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return tidy_help(parser)  # every sub-command gets a description; no Sphinx markup in --help


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed on one line)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _one_line_warnings():
            return int(args.func(args) or 0)
    except DataError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the user named cannot be written / read (full disk, permissions ...)
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {_one_line(err.strerror or err)}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional extra (matplotlib, scikit-learn, tensorboard) is not installed
        from contrast3d.extras import missing_extra

        missing = missing_extra(err)
        if missing is None:
            raise
        print(f"error: {_one_line(missing)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
