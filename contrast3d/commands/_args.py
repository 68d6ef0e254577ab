"""Argument checks shared by the sub-commands: numeric ranges at parse time, output paths, devices.

Every user error of the command line ends the same way (SPEC §10): one line naming the flag or
the file, exit code 2, no traceback. Numbers are checked by argparse ``type=`` functions built
here (an out-of-range value is an ``argparse.ArgumentTypeError``, which the one-line parser of
:mod:`contrast3d.cli` prints as ``contrast3d CMD: error: argument --flag: <reason>``); paths that
can only be checked once all arguments are known raise :class:`~contrast3d.errors.DataError`
naming the path.

Decisions: NaN and infinities are never valid numbers for a flag; ``0`` is allowed only where it
means "off" (documented in the flag's help); an output folder may exist (runs resume, prepare skips
finished scenes) but must be a folder; an output file's folder must exist (nothing is created
silently in a mistyped place), the output file must not be a folder, and a file written in one
format (a PNG) must carry its extension (``--out plot.jpg`` would otherwise be a PNG named .jpg).

Help texts: :func:`tidy_help` gives every sub-command a description and strips the Sphinx markup
(````x````, ``:class:`...```) that module docstrings used as descriptions carry.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from contrast3d.errors import DataError


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[lo, hi]`` (either bound may be open)."""
    def parse(text: str) -> int:
        value = int(_number(text, int))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_bounds(lo, hi)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite floats in the interval (open ends where asked)."""
    def parse(text: str) -> float:
        value = float(_number(text, float))
        bad = ((lo is not None and (value <= lo if lo_open else value < lo))
               or (hi is not None and (value >= hi if hi_open else value > hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"must be {_bounds(lo, hi, lo_open, hi_open)}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _bounds(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}"


#: Common argparse types.
positive_int = int_range(1)
nonnegative_int = int_range(0)
positive_float = float_range(0.0, lo_open=True)
fraction = float_range(0.0, 1.0)


def device(text: str) -> str:
    """An argparse ``type`` for ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; CUDA must exist."""
    import torch

    name = text.strip().lower()
    if name in ("auto", "cpu"):
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine (use cpu or auto)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise argparse.ArgumentTypeError(f"{text!r}: no such GPU ({torch.cuda.device_count()} visible)")
        return name
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def train_device(text: str) -> str:
    """``--device`` of the training commands: ``auto``, ``cpu`` or ``cuda`` (checked as :func:`device`)."""
    name = device(text)
    if name.startswith("cuda:"):
        raise argparse.ArgumentTypeError("use --device cuda (each process picks its GPU from LOCAL_RANK)")
    return name


def colormap(text: str) -> str:
    """An argparse ``type``: the name of a matplotlib colour map (matplotlib: the ``[viz]`` extra)."""
    from contrast3d.extras import MissingExtra, require

    try:
        colormaps = require("matplotlib").colormaps
    except MissingExtra as err:
        raise argparse.ArgumentTypeError(str(err)) from None

    if text not in colormaps:
        import difflib

        close = difflib.get_close_matches(text, list(colormaps), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else " (e.g. jet, viridis, turbo)"
        raise argparse.ArgumentTypeError(f"unknown matplotlib colour map {text!r}{hint}")
    return text


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as an output folder: it may exist (as a folder) or be created; :class:`DataError` otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(p, f"{flag} exists and is not a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(p, f"{flag}: {parent} is not a folder")
            break
    return p


def output_file(path: str | Path, flag: str = "--out", suffix: str | Sequence[str] | None = None) -> Path:
    """``path`` as an output file: its folder must exist and it must not be a folder.

    ``suffix`` (e.g. ``".png"``, or several): the extension(s) the file must end in, any case (the
    file is written in that format whatever its name says).
    """
    p = Path(path)
    if suffix is not None:
        allowed = (suffix,) if isinstance(suffix, str) else tuple(suffix)
        if p.suffix.lower() not in allowed:
            want = " or ".join(allowed)
            raise DataError(p, f"{flag} must end in {want} (the file is written as {allowed[0][1:].upper()}), "
                               f"got '{p.suffix or p.name}'")
    if p.is_dir():
        raise DataError(p, f"{flag} is a folder, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise DataError(p, f"{flag}: the folder {parent} {what}")
    return p


def label_budget(text: str) -> str:
    """An argparse ``type`` for ``--labels``: checked with :meth:`~contrast3d.evaluation.splits.LabelBudget.parse`,
    returned as given (the run records the user's spelling). A split file must exist (its content is
    checked by the run); a CSC / Pointcept budget name (``points20``, ``tr1``) that is also a file
    here is refused as ambiguous (write ``./points20`` for the file)."""
    import re

    from contrast3d.evaluation.splits import LabelBudget

    try:
        budget = LabelBudget.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if budget.kind == "file" and not Path(budget.path).is_file():
        what = "is not a file" if Path(budget.path).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{budget.path}: the label split file {what}")
    if budget.kind != "file" and re.fullmatch(r"(points|tr)\d+", text.strip().lower()) and Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is a label budget name and also a file here: write "
                                         f"./{text.strip()} to read the file, or rename it")
    return text


def run_device(text: str) -> str:
    """Like :func:`device`, with ``auto`` resolved (``cuda`` when available, else ``cpu``): a torch device string."""
    import torch

    name = device(text)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def plain_text(text: str) -> str:
    """``text`` without Sphinx markup, for ``--help``: ````x```` -> ``x``; ``:func:`a.b``` -> ``a.b``;
    ``:class:`~a.B``` -> ``B``; ``:mod:`title <a.b>``` -> ``title``."""
    def role(m: re.Match) -> str:
        target = m.group(1).strip()
        return target.rsplit(".", 1)[-1] if m.group(0).split("`", 1)[1].startswith("~") else target

    return _ROLE.sub(role, text).replace("``", "")


def _as_sentence(help_text: str) -> str:
    """A one-line ``help`` as a description: capitalised (unless its first word is a name such as
    ``t-SNE`` or ``image2point``), ending in a full stop."""
    text = help_text.replace("%%", "%").strip()
    if not text:
        return ""
    first = text.split()[0]
    if first.isalpha() and first.islower():
        text = text[0].upper() + text[1:]
    return text.rstrip(".") + "."


def tidy_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Walk ``parser`` and its sub-parsers (every depth): a sub-parser without a description gets
    its one-line help as one; descriptions, epilogs and help strings lose Sphinx markup
    (:func:`plain_text`). Returns ``parser``."""
    for attr in ("description", "epilog"):
        if getattr(parser, attr):
            setattr(parser, attr, plain_text(getattr(parser, attr)))
    for action in parser._actions:
        if isinstance(action.help, str) and action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    sub.description = _as_sentence(helps[name])
                tidy_help(sub)
            for choice in action._choices_actions:
                if isinstance(choice.help, str):
                    choice.help = plain_text(choice.help)
    return parser
