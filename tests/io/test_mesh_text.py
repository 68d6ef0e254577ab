"""OFF and OBJ readers on synthetic files and the real CAD samples."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d import DataError
from contrast3d.io import read_any, read_obj, read_off

SQUARE = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"


def test_off_glued_header_comments_polygons(tmp_path):
    path = tmp_path / "glued.off"
    path.write_text("OFF4 2 0\n# a comment\n" + SQUARE + "4 0 1 2 3\n3 3 2 1 # trailing comment\n")
    mesh = read_off(path)
    assert mesh.num_vertices == 4
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 1]]
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64


def test_off_face_colours_and_coff(tmp_path):
    path = tmp_path / "fc.off"
    path.write_text("OFF\n4 2 0\n" + SQUARE + "3 0 1 2 255 0 0\n3 0 2 3 0 255 0\n")
    assert read_off(path).faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    path.write_text("COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n0 1 0 0 0 255 255\n3 0 1 2\n")
    mesh = read_off(path)
    np.testing.assert_array_equal(mesh.vertex_color, np.eye(3, dtype=np.float32))


@pytest.mark.parametrize("text, message", [
    ("OFF\n4 1 0\n0 0 0\n1 0 0\n", "expected 4 vertices, found 2"),
    ("OFF\n4 2 0\n" + SQUARE + "3 0 1 2\n", "expected 2 faces, found 1"),
    ("OFF\n4 1 0\n" + SQUARE + "3 0 1 4\n", "face index out of range"),
    ("OFF\n4 1 0\n" + SQUARE.replace("1 1 0", "nan 1 0") + "3 0 1 2\n", "NaN/Inf"),
    ("OFF\n4 1 0\n" + SQUARE.replace("1 1 0", "1 abc 0") + "3 0 1 2\n", "non-numeric"),
    ("OFX\n4 1 0\n", "not an OFF file"),
    ("OFF\nfour 1 0\n", "not an integer"),
    ("OFF\n0 0 0\n", "no vertices"),
    ("OFF\n4 1 0\n" + SQUARE + "3 0 1 2.5\n", "not an integer"),
])
def test_off_errors(tmp_path, text, message):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_off(path)
    assert str(path) in str(info.value)


def test_obj_corner_forms_negative_indices_normals(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "# comment\nmtllib x.mtl\no thing\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\n"
        "vn 0 0 1\nvn 0 0 -1\n"
        "g part\nusemtl red\ns off\n"
        "f 1//1 2//1 3//1\n"
        "f -4/1/2 -2/2/2 -1/3/2\n"
        "l 1 2\n"
        "v 0 0 1\n"
        "f 1 2 3 4 5\n"
        "f 1/1 2/2 -1/3\n")
    mesh = read_obj(path)
    assert mesh.num_vertices == 5
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 1, 4]]
    assert mesh.vertex_normal is None  # not every corner has a normal


def test_obj_vertex_colours_and_normals(tmp_path):
    path = tmp_path / "c.obj"
    path.write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nvn 0 0 1\nf 1//1 2//1 3//1\n")
    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.vertex_color, np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(mesh.vertex_normal, np.tile([[0, 0, 1]], (3, 1)))


@pytest.mark.parametrize("text, message", [
    ("v 0 0 0\nv 1 0 0\nf 1 2 3\n", "face index out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "index 0"),
    ("v 0 0\n", "needs 3 coordinates"),
    ("v 0 0 x\nf 1 1 1\n", "non-numeric"),
    ("v 0 0 0\nf 1 a 1\n", "bad face corner"),
    ("# nothing\n", "no vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//2\n", "normal index out of range"),
])
def test_obj_errors(tmp_path, text, message):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_obj(path)


def test_real_cad_objects(shared_data):
    folder = shared_data / "cad_objects"
    expected = {"chair_0001.off": (2382, 2234), "chair_0002.off": (192, 96), "toilet_0001.off": (3739, 6341)}
    for name, (nv, nf) in expected.items():
        mesh = read_off(folder / name)
        assert (mesh.num_vertices, mesh.num_faces) == (nv, nf)
        assert np.isfinite(mesh.vertices).all()
    chair = read_off(folder / "chair_0059.off")
    assert chair.num_vertices == 44828 and chair.num_faces == 71101
    obj = read_any(folder / "shapenet_scan2mesh_model.obj")
    assert obj.num_vertices == 1250 and obj.num_faces == 4688 and obj.vertex_normal is not None
    bath = read_any(folder / "bathtub_0154.ply")
    assert bath.num_vertices == 1494 and bath.num_faces == 1194
