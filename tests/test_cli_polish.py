"""CLI polish: ``--version``, a description and no Sphinx markup on every (sub-)command, README and help
agree, output extensions are checked, optional dependencies are extras with a one-line error."""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contrast3d import PointCloud, cli
from contrast3d.commands._args import output_file, plain_text, tidy_help
from contrast3d.errors import DataError
from contrast3d.io import write_pointcept_scene

ROOT = Path(__file__).resolve().parents[1]
MARKUP = ("``", ":class:", ":mod:", ":func:", ":meth:", ":data:", ":attr:")


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("contrast3d",)):
    """``(path, parser)`` for the parser and every sub-parser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def texts(parser: argparse.ArgumentParser) -> list[str]:
    out = [parser.description or "", parser.epilog or "", parser.format_help()]
    for action in parser._actions:
        out.append(action.help or "")
        if isinstance(action, argparse._SubParsersAction):
            out += [choice.help or "" for choice in action._choices_actions]
    return out


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    version = _pyproject()["project"]["version"]
    assert capsys.readouterr().out.strip() == f"contrast3d {version}"


def test_every_subcommand_has_a_description_and_no_sphinx_markup():
    parsers = list(walk(cli.build_parser()))
    assert len(parsers) > 15  # the commands and their sub-commands (prepare rgbd, viz tsne, ...)
    for path, parser in parsers:
        assert parser.description and parser.description.strip(), f"{' '.join(path)} has no description"
        for text in texts(parser):
            found = [m for m in MARKUP if m in text]
            assert not found, f"{' '.join(path)} --help shows {found}: {text[:200]!r}"


def test_tidy_help_fills_descriptions_and_strips_markup():
    parser = argparse.ArgumentParser(description="Uses :class:`~a.b.Thing` and ``--flag``.")
    sub = parser.add_subparsers()
    child = sub.add_parser("child", help="t-SNE of :func:`x.y` features")
    child.add_subparsers().add_parser("leaf", help="writes ``out.png``")
    tidy_help(parser)
    assert parser.description == "Uses Thing and --flag."
    assert child.description == "t-SNE of x.y features."
    leaf = next(p for path, p in walk(parser) if path[-1] == "leaf")
    assert leaf.description == "Writes out.png."
    assert plain_text(":mod:`the module <contrast3d.io>` and :meth:`~a.B.parse`") == "the module and parse"


def _readme_commands() -> list[list[str]]:
    """The ``contrast3d ...`` command lines of README's code blocks (continuations joined)."""
    lines, commands = (ROOT / "README.md").read_text().splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if lines[i].startswith("    ") and line.startswith("contrast3d "):
            while line.split("#")[0].rstrip().endswith("\\"):
                i += 1
                line = line.split("#")[0].rstrip()[:-1] + " " + lines[i].strip()
            commands.append(shlex.split(line.split("#")[0]))
        i += 1
    return commands


def test_readme_commands_use_flags_and_values_the_parser_knows():
    parser = cli.build_parser()
    commands = _readme_commands()
    assert len(commands) >= 6
    for argv in commands:
        # parse_args exits 2 on an unknown flag or a value the parser refuses (choices, ranges)
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exc:  # pragma: no cover - the failure message names the line
            pytest.fail(f"README command does not parse: {' '.join(argv)} (exit {exc.code})")


def test_readme_numbers_match_the_help():
    readme = " ".join((ROOT / "README.md").read_text().split())
    quick = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["quickstart"].format_help().split())
    minutes = re.search(r"about (\d+) minutes on 2 CPU cores", quick)
    assert minutes and f"about {minutes.group(1)} minutes on 2 CPU cores" in readme
    fast = re.search(r"--fast: about (\d+)", quick)
    assert fast and f"--fast` for a {fast.group(1)}-minute" in readme
    bench = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())
    factor = re.search(r"scratch run with ([\d.]+)x", bench)
    assert factor and f"{factor.group(1)}x-longer scratch control" in readme


def test_output_file_extension(tmp_path):
    assert output_file(tmp_path / "a.PNG", suffix=".png") == tmp_path / "a.PNG"
    for bad in ("a.jpg", "a"):
        with pytest.raises(DataError, match=r"must end in \.png"):
            output_file(tmp_path / bad, suffix=".png")
    with pytest.raises(DataError, match=r"\.ply or \.npz"):
        output_file(tmp_path / "x.obj", "OUTPUT", suffix=(".ply", ".npz"))


def _scene(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    cloud = PointCloud(coord=rng.random((20, 3)).astype(np.float32), segment=rng.integers(-1, 5, 20))
    write_pointcept_scene(tmp_path / "scene", cloud)
    return tmp_path / "scene"


@pytest.mark.parametrize("output, extra, reason", [
    ("out.obj", [], "unknown output extension '.obj'"),
    ("out.txt", ["--to", "ply"], "must end in .ply"),
    ("out.ply", ["--to", "pointcept"], "must not end in the file extension '.ply'"),
    ("frames.npz", ["--to", "pointcept"], "must not end in the file extension '.npz'"),
])
def test_convert_refuses_wrong_output_extensions(tmp_path, capsys, output, extra, reason):
    scene = _scene(tmp_path)
    assert cli.main(["convert", str(scene), str(tmp_path / output), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / output}: ") and reason in err
    assert not (tmp_path / output).exists()


def test_convert_accepts_matching_outputs(tmp_path):
    scene = _scene(tmp_path)
    assert cli.main(["convert", str(scene), str(tmp_path / "out.PLY")]) == 0
    assert cli.main(["convert", str(scene), str(tmp_path / "scene.v2"), "--to", "pointcept"]) == 0
    assert (tmp_path / "scene.v2" / "coord.npy").is_file()


def test_optional_dependencies_are_extras():
    project = _pyproject()["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for name in ("matplotlib", "scikit-learn", "tensorboard"):
        assert name not in core

    def resolve(extra: str) -> set[str]:
        out: set[str] = set()
        for req in extras[extra]:
            m = re.match(r"contrast3d\[([\w,]+)\]", req)
            if m:
                for e in m.group(1).split(","):
                    out |= resolve(e)
            else:
                out.add(re.split(r"[<>=\[ ]", req)[0])
        return out

    assert {"matplotlib", "scikit-learn"} <= resolve("viz") and "tensorboard" in resolve("tb")
    assert {"matplotlib", "scikit-learn", "tensorboard", "pytest"} <= resolve("test")
    # the README's install commands pull what they run: quickstart writes PNGs, the tests need everything
    readme = (ROOT / "README.md").read_text()
    for runs, needs in (("contrast3d quickstart", {"matplotlib", "tensorboard"}),
                        ("pytest", {"matplotlib", "scikit-learn", "tensorboard"})):
        line = next(ln for ln in readme.splitlines() if "pip install" in ln and runs in ln)
        m = re.search(r"-e \"?\.(?:\[([\w,]+)\])?", line)
        assert m, line
        got = set().union(*(resolve(e) for e in (m.group(1) or "").split(",") if e))
        assert needs <= got, f"{line!r} does not install {needs - got}"


def test_missing_optional_dependency_is_one_line_naming_the_extra(monkeypatch, capsys):
    from contrast3d.extras import MissingExtra, missing_extra, require

    for name in [m for m in sys.modules if m.split(".")[0] in ("matplotlib", "sklearn")] + ["matplotlib", "sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # also submodules an earlier test imported
    with pytest.raises(MissingExtra, match=r'matplotlib: not installed; pip install "contrast3d\[viz\]"'):
        require("matplotlib.colors")
    with pytest.raises(ImportError, match=r"scikit-learn: .*contrast3d\[viz\]"):
        require("sklearn.manifold")
    err = missing_extra(ImportError("TensorBoard logging requires TensorBoard"), "tensorboard")
    assert err is not None and 'pip install "contrast3d[tb]"' in str(err)
    assert missing_extra(ImportError("no module", name="numpy")) is None
    code = cli.main(["viz", "similarity", "--init", "w.safetensors", "--scene", "s", "--out", "x.png", "--cmap", "jet"])
    err_text = capsys.readouterr().err
    assert code == 2 and err_text.count("\n") == 1 and 'pip install "contrast3d[viz]"' in err_text


@pytest.mark.slow  # a fresh interpreter importing every module (~5 s)
def test_package_imports_without_the_optional_dependencies():
    """Every module of the package imports with matplotlib, scikit-learn and tensorboard missing (lazy)."""
    script = """
import sys
for name in ("matplotlib", "sklearn", "tensorboard", "torch.utils.tensorboard"):
    sys.modules[name] = None
import importlib, pkgutil, contrast3d
names = [m.name for m in pkgutil.walk_packages(contrast3d.__path__, "contrast3d.")]
for name in names:
    importlib.import_module(name)
from contrast3d.cli import build_parser
build_parser()
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 50
