"""Fuzzing the PLY and OFF readers: any input either parses or raises DataError, nothing else."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contrast3d import DataError
from contrast3d.io import read_off, read_ply, read_ply_mesh, write_ply
from contrast3d.structures import PointCloud, TriangleMesh

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TMP = Path(tempfile.mkdtemp(prefix="contrast3d-fuzz-"))


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    cloud = PointCloud(coord=rng.normal(size=(12, 3)).astype(np.float32),
                       color=rng.random((12, 3)).astype(np.float32), segment=rng.integers(-1, 5, 12),
                       extra={"s": rng.random(12).astype(np.float32)})
    mesh = TriangleMesh(rng.normal(size=(6, 3)).astype(np.float32), np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5]]))
    out = {}
    for name, data, binary in (("cb", cloud, True), ("ca", cloud, False), ("mb", mesh, True), ("ma", mesh, False)):
        write_ply(_TMP / f"{name}.ply", data, binary=binary)
        out[name] = (_TMP / f"{name}.ply").read_bytes()
    out["off"] = b"OFF\n6 4 0\n" + b"".join(b"%g %g %g\n" % tuple(r) for r in mesh.vertices) + \
        b"3 0 1 2\n3 2 3 4\n4 0 1 4 5\n3 3 4 5\n"
    out["offglued"] = out["off"].replace(b"OFF\n", b"OFF", 1)
    return out


SEEDS = _seed_files()
PLY_SEEDS = [k for k in SEEDS if not k.startswith("off")]
OFF_SEEDS = [k for k in SEEDS if k.startswith("off")]


def _read_all_ply(data: bytes) -> None:
    path = _TMP / "fuzz.ply"
    path.write_bytes(data)
    for reader in (read_ply, read_ply_mesh):
        try:
            result = reader(path)
        except DataError as err:
            assert str(path) in str(err)
        else:
            coord = result.to_point_cloud().coord if isinstance(result, TriangleMesh) else result.coord
            assert np.isfinite(coord).all()


def _read_off(data: bytes) -> None:
    path = _TMP / "fuzz.off"
    path.write_bytes(data)
    try:
        mesh = read_off(path)
    except DataError as err:
        assert str(path) in str(err)
    else:
        assert mesh.faces.size == 0 or mesh.faces.max() < mesh.num_vertices


def _flip(data: bytes, positions: list[int], values: list[int]) -> bytes:
    buf = bytearray(data)
    for p, v in zip(positions, values):
        buf[p % len(buf)] = v
    return bytes(buf)


@FUZZ
@given(st.binary(max_size=300))
def test_ply_random_bytes(data):
    _read_all_ply(data)
    _read_all_ply(b"ply\nformat ascii 1.0\n" + data)
    for name in PLY_SEEDS:  # a valid header (binary and ascii, points and meshes) + random body
        _read_all_ply(SEEDS[name][:SEEDS[name].index(b"end_header") + 11] + data)


@FUZZ
@given(st.sampled_from(PLY_SEEDS), st.floats(0, 1))
def test_ply_truncated(name, fraction):
    data = SEEDS[name]
    _read_all_ply(data[: int(len(data) * fraction)])


@FUZZ
@given(st.sampled_from(PLY_SEEDS), st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
       st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_ply_byte_flips(name, positions, values):
    _read_all_ply(_flip(SEEDS[name], positions, values))


@FUZZ
@given(st.sampled_from(OFF_SEEDS), st.floats(0, 1), st.lists(st.integers(0, 10**6), max_size=3),
       st.lists(st.integers(0, 255), min_size=3, max_size=3), st.binary(max_size=40))
def test_off_truncated_flipped_random(name, fraction, positions, values, junk):
    data = SEEDS[name]
    _read_off(data[: int(len(data) * fraction)])
    _read_off(_flip(data, positions, values))
    _read_off(junk)
    _read_off(b"OFF\n" + junk)
