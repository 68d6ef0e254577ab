"""``contrast3d convert``: through its own parser and through ``contrast3d.cli.main``."""
from __future__ import annotations

import argparse

import numpy as np

from contrast3d import PointCloud
from contrast3d.commands import convert
from contrast3d.io import read_any, read_ply, read_pointcept_scene, write_ply, write_pointcept_scene
from contrast3d.structures import TriangleMesh


def run_convert(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    convert.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", *argv])
    return args.func(args)


def make_cloud(n: int = 30) -> PointCloud:
    rng = np.random.default_rng(2)
    return PointCloud(coord=rng.random((n, 3)).astype(np.float32), color=rng.integers(0, 256, (n, 3)).astype(np.uint8),
                      segment=rng.integers(-1, 13, n), instance=rng.integers(-1, 4, n),
                      extra={"strength": rng.random(n).astype(np.float32)}).validate()


def test_pointcept_to_ascii_ply_and_back(tmp_path, capsys):
    cloud = make_cloud()
    write_pointcept_scene(tmp_path / "scene", cloud)
    assert run_convert(str(tmp_path / "scene"), str(tmp_path / "out.ply"), "--ascii") == 0
    assert "wrote ply" in capsys.readouterr().out
    ply = read_ply(tmp_path / "out.ply")
    assert ply.meta["ply_format"] == "ascii"
    for key in ("coord", "color", "segment", "instance", "strength"):
        np.testing.assert_array_equal(ply.get(key), cloud.get(key), err_msg=key)
    assert run_convert(str(tmp_path / "out.ply"), str(tmp_path / "again")) == 0
    again = read_pointcept_scene(tmp_path / "again")
    np.testing.assert_array_equal(again.segment, cloud.segment)
    np.testing.assert_array_equal(again.extra["strength"], cloud.extra["strength"])


def test_mesh_to_ply_and_pointcept(tmp_path):
    mesh = TriangleMesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    (tmp_path / "m.off").write_text("OFF\n3 1 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n")
    assert run_convert(str(tmp_path / "m.off"), str(tmp_path / "m.ply")) == 0
    back = read_any(tmp_path / "m.ply")
    assert isinstance(back, TriangleMesh) and back.faces.tolist() == mesh.faces.tolist()
    assert run_convert(str(tmp_path / "m.off"), str(tmp_path / "m_scene"), "--to", "pointcept") == 0
    assert len(read_pointcept_scene(tmp_path / "m_scene")) == 3
    from contrast3d import cli

    assert cli.main(["convert", str(tmp_path / "m.off"), str(tmp_path / "x"), "--ascii"]) == 2  # --ascii needs PLY


def test_cli_data_error_exits_2_with_one_line(tmp_path, capsys):
    from contrast3d import cli

    bad = tmp_path / "bad.ply"
    write_ply(bad, make_cloud())
    bad.write_bytes(bad.read_bytes()[:-5])
    code = cli.main(["convert", str(bad), str(tmp_path / "out.ply")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "truncated file" in err and str(bad) in err
    assert not (tmp_path / "out.ply").exists()
    assert cli.main(["convert", str(tmp_path / "missing.off"), str(tmp_path / "o.ply")]) == 2
