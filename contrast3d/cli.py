"""The ``contrast3d`` command line.

Each sub-command lives in its own module under :mod:`contrast3d.commands` and exposes
``register(subparsers)`` which adds its parser and sets ``func``. A :class:`DataError`
anywhere prints one line (``error: <file>: <reason>``) and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys

from contrast3d.commands import convert as convert_command
from contrast3d.commands import finetune as finetune_command
from contrast3d.commands import info as info_command
from contrast3d.commands import prepare as prepare_command
from contrast3d.commands import pretrain as pretrain_command
from contrast3d.commands import probe as probe_command
from contrast3d.commands import quickstart as quickstart_command
from contrast3d.commands import simulate as simulate_command
from contrast3d.commands import viz as viz_command
from contrast3d.errors import DataError

#: The sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = [quickstart_command, info_command, convert_command, simulate_command, prepare_command,
                   pretrain_command, finetune_command, probe_command, viz_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrast3d",
        description="Self-supervised pre-training of sparse-conv 3D backbones on unlabelled scans, "
                    "fine-tuning and evaluation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
