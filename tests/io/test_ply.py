"""PLY reader/writer: round trips, all three formats, polygons, and every malformed-input error."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d import DataError, PointCloud
from contrast3d.io import read_any, read_ply, read_ply_mesh, write_ply
from contrast3d.structures import TriangleMesh


def make_cloud(n: int = 50, seed: int = 0) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(
        coord=rng.normal(size=(n, 3)).astype(np.float32),
        color=rng.integers(0, 256, (n, 3)).astype(np.float32) / np.float32(255),
        normal=rng.normal(size=(n, 3)).astype(np.float32),
        segment=rng.integers(-1, 20, n), instance=rng.integers(-1, 1000, n), superpoint=rng.integers(0, 7, n),
        extra={"strength": rng.random(n).astype(np.float32), "height": rng.random(n),
               "flag": rng.integers(0, 2, n).astype(np.uint8), "ring": rng.integers(-5, 5, n).astype(np.int16)},
    ).validate()


def make_mesh() -> TriangleMesh:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4]])
    return TriangleMesh(v, f, vertex_color=np.full((5, 3), 0.2, np.float32),
                        vertex_segment=np.array([0, 1, 2, 3, -1])).validate()


def assert_same_cloud(a: PointCloud, b: PointCloud) -> None:
    for key, value in a.point_arrays().items():
        got = b.get(key)
        assert got is not None, key
        np.testing.assert_array_equal(np.asarray(got).reshape(value.shape), value, err_msg=key)
        if key in a.extra:
            assert got.dtype == value.dtype, key
    assert set(b.extra) == set(a.extra)


@pytest.mark.parametrize("binary", [True, False])
def test_cloud_round_trip_exact(tmp_path, binary):
    cloud = make_cloud()
    path = tmp_path / "c.ply"
    write_ply(path, cloud, binary=binary)
    back = read_ply(path)
    assert back.meta["ply_format"] == ("binary_little_endian" if binary else "ascii")
    assert_same_cloud(cloud, back)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


@pytest.mark.parametrize("binary", [True, False])
def test_mesh_round_trip(tmp_path, binary):
    mesh = make_mesh()
    path = tmp_path / "m.ply"
    write_ply(path, mesh, binary=binary)
    back = read_ply_mesh(path)
    np.testing.assert_array_equal(back.vertices, mesh.vertices)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_array_equal(back.vertex_segment, mesh.vertex_segment)
    np.testing.assert_allclose(back.vertex_color, mesh.vertex_color, atol=1 / 255)
    assert isinstance(read_any(path), TriangleMesh)
    write_ply(path, mesh.to_point_cloud())
    assert isinstance(read_any(path), PointCloud)
    with pytest.raises(DataError, match="no 'face' element"):
        read_ply_mesh(path)


def _header(fmt: str, n: int, props: list[str], faces: int | None = None,
            face_prop: str = "list uchar int vertex_indices") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment test", f"element vertex {n}"]
    lines += [f"property {p}" for p in props]
    if faces is not None:
        lines += [f"element face {faces}", f"property {face_prop}"]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


def test_big_endian_polygons_and_property_mapping(tmp_path):
    v = np.zeros(5, [("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                     ("label", ">u2"), ("objectId", ">i4"), ("quality", ">f8")])
    v["x"] = np.arange(5)
    v["red"] = 255
    v["label"] = [1, 2, 3, 4, 40]
    v["objectId"] = [7, 7, 8, 8, -1]
    v["quality"] = np.linspace(0, 1, 5)
    # a quad, a pentagon, a triangle and a degenerate 2-corner face (dropped)
    faces = [[0, 1, 2, 3], [0, 1, 2, 3, 4], [4, 3, 2], [0, 1]]
    body = b"".join(np.array([len(f)], ">u1").tobytes() + np.array(f, ">i4").tobytes() for f in faces)
    path = tmp_path / "be.ply"
    path.write_bytes(_header("binary_big_endian", 5, ["float x", "float y", "float z", "uchar red", "uchar green",
                                                     "uchar blue", "ushort label", "int objectId", "double quality"],
                             faces=4) + v.tobytes() + body)
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.coord[:, 0], np.arange(5))
    np.testing.assert_array_equal(cloud.segment, [1, 2, 3, 4, 40])
    np.testing.assert_array_equal(cloud.instance, [7, 7, 8, 8, -1])
    np.testing.assert_array_equal(cloud.color[:, 0], 1.0)
    np.testing.assert_array_equal(cloud.extra["quality"], np.linspace(0, 1, 5))
    mesh = read_ply_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 2]]
    assert mesh.meta["dropped_faces"] == 1


def test_ascii_polygons_and_extra_list_property(tmp_path):
    path = tmp_path / "a.ply"
    text = _header("ascii", 4, ["float x", "float y", "float z"], faces=2).decode()
    text = text.replace("property list uchar int vertex_indices",
                        "property list uchar int vertex_indices\nproperty list uchar float texcoord\n"
                        "property uchar flags")
    text += "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3 2 0.5 0.5 9\n3 3 2 1 0 7\n"
    path.write_text(text)
    mesh = read_ply_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 1]]


def test_binary_mixed_lists_walker(tmp_path):
    # face element with a list plus a scalar forces the row walker in binary mode
    v = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    body = (np.array([4], "u1").tobytes() + np.array([0, 1, 2, 3], "<i4").tobytes() + b"\x05"
            + np.array([3], "u1").tobytes() + np.array([3, 2, 1], "<i4").tobytes() + b"\x06")
    text = _header("binary_little_endian", 4, ["float x", "float y", "float z"], faces=2)
    text = text.replace(b"vertex_indices\n", b"vertex_indices\nproperty uchar flags\n")
    path = tmp_path / "w.ply"
    path.write_bytes(text + v.tobytes() + body)
    assert read_ply_mesh(path).faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 1]]
    path.write_bytes(text + v.tobytes() + body[:-3])
    with pytest.raises(DataError, match="expected 2 faces, found 1"):
        read_ply_mesh(path)


def _valid_binary(tmp_path, n=10):
    path = tmp_path / "ok.ply"
    write_ply(path, make_cloud(n))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-7], "truncated file: expected 10 vertices, found 9"),
    (lambda b: b.replace(b"format binary_little_endian", b"format binary_middle_endian"), "unsupported PLY format"),
    (lambda b: b.replace(b"ply\n", b"plx\n", 1), "not a PLY file"),
    (lambda b: b.replace(b"end_header", b"end_headxx"), "no 'end_header'"),
    (lambda b: b.replace(b"property float x", b"property float128 x"), "unknown property type"),
    (lambda b: b.replace(b"element vertex 10", b"element vertex -3"), "negative element count"),
    (lambda b: b.replace(b"element vertex 10", b"element vertex ten"), "not an integer"),
    (lambda b: b.replace(b"element vertex 10", b"element vertex 0"), "empty point cloud"),
    (lambda b: b.replace(b"element vertex 10", b"element vertex 99999999999"), "truncated file"),
    (lambda b: b.replace(b"property float x", b"property float q"), "no x, y, z"),
    (lambda b: b.replace(b"comment", b"frobnicate"), "unknown keyword"),
])
def test_malformed_binary(tmp_path, mutate, message):
    path = _valid_binary(tmp_path)
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DataError, match=message) as info:
        read_ply(path)
    assert str(path) in str(info.value)


def test_nan_coordinates_and_missing_file(tmp_path):
    cloud = make_cloud(6)
    cloud.coord[2, 1] = np.nan
    path = tmp_path / "nan.ply"
    write_ply(path, cloud, binary=False)
    with pytest.raises(DataError, match="NaN/Inf"):
        read_ply(path)
    with pytest.raises(DataError, match="no such file"):
        read_ply(tmp_path / "missing.ply")


def test_ascii_errors(tmp_path):
    path = tmp_path / "a.ply"
    head = _header("ascii", 3, ["float x", "float y", "float z", "uchar label"])
    path.write_bytes(head + b"0 0 0 1\n1 1 1 2\n")
    with pytest.raises(DataError, match="expected 3 vertices, found 2"):
        read_ply(path)
    path.write_bytes(head + b"0 0 0 1\n1 1 1 2\n1 2 x 3\n")
    with pytest.raises(DataError, match="non-numeric value b'x'"):
        read_ply(path)
    path.write_bytes(head + b"0 0 0 1\n1 1 1 2\n1 2 3 300\n")
    with pytest.raises(DataError, match="out of range"):
        read_ply(path)
    mesh_head = _header("ascii", 3, ["float x", "float y", "float z"], faces=1)
    path.write_bytes(mesh_head + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n")
    with pytest.raises(DataError, match="face index out of range"):
        read_ply_mesh(path)
    path.write_bytes(mesh_head + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 -1\n")
    with pytest.raises(DataError, match="face index out of range"):
        read_ply_mesh(path)
    path.write_bytes(mesh_head + b"0 0 0\n1 0 0\n0 1 0\n-3 0 1 2\n")
    with pytest.raises(DataError, match="bad list length"):
        read_ply_mesh(path)


def test_writer_is_atomic_on_failure(tmp_path):
    path = tmp_path / "keep.ply"
    write_ply(path, make_cloud(5))
    before = path.read_bytes()
    bad = make_cloud(5)
    bad.extra["text"] = np.array(["a"] * 5)
    with pytest.raises(ValueError):
        write_ply(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.ply"]


def test_multi_column_extra_written_as_columns(tmp_path):
    cloud = make_cloud(8)
    cloud.extra = {"feat": np.arange(16, dtype=np.float32).reshape(8, 2), "one": np.ones((8, 1), np.int64)}
    write_ply(tmp_path / "m.ply", cloud)
    back = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(back.extra["feat_1"], cloud.extra["feat"][:, 1])
    assert back.extra["one"].dtype == np.int32 and back.extra["one"].shape == (8,)
