"""ScanNet (raw scans and the object export), S3DIS and SemanticKITTI readers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from contrast3d import DataError, PointCloud
from contrast3d.io import (
    read_any,
    read_ply,
    read_s3dis_room,
    read_scannet_objects,
    read_scannet_scan,
    read_semantickitti,
    write_ply,
)
from contrast3d.io.labels import (
    S3DIS_CLASSES,
    SCANNET20_CLASSES,
    SCANNET20_NYU40_IDS,
    nyu40_to_scannet20,
    semantickitti_to_train,
)
from contrast3d.structures import TriangleMesh


def test_label_tables():
    assert len(SCANNET20_CLASSES) == 20 and SCANNET20_CLASSES[0] == "wall" and SCANNET20_CLASSES[-1] == "otherfurniture"
    assert nyu40_to_scannet20(np.array([0, 1, 13, 14, 39, 40, 41, -5])).tolist() == [-1, 0, -1, 12, 19, -1, -1, -1]
    assert len(S3DIS_CLASSES) == 13
    got = semantickitti_to_train(np.array([0, 1, 10, 252, 52, 81, 99, 1000]))
    assert got.tolist() == [-1, -1, 0, 0, -1, 18, -1, -1]


def test_scannet20_table_matches_simulator():
    classes = pytest.importorskip("contrast3d.simulate.classes")
    assert SCANNET20_CLASSES == classes.SCANNET20_NAMES


def _scannet_scan(folder, nyu40, seg, groups, n_labels=None):
    folder.mkdir()
    n = len(seg)
    rng = np.random.default_rng(0)
    mesh = TriangleMesh(rng.random((n, 3)).astype(np.float32), np.array([[0, 1, 2]]),
                        vertex_color=np.full((n, 3), 0.5, np.float32),
                        vertex_extra={"alpha": np.full(n, 255, np.uint8)})
    write_ply(folder / "scene0001_00_vh_clean_2.ply", mesh)
    labelled = PointCloud(coord=mesh.vertices[: n_labels or n], segment=np.asarray(nyu40)[: n_labels or n])
    write_ply(folder / "scene0001_00_vh_clean_2.labels.ply", labelled)
    (folder / "scene0001_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg}))
    (folder / "scene0001_00.aggregation.json").write_text(json.dumps({"segGroups": groups}))


def test_scannet_raw_scan(tmp_path):
    nyu40 = [1, 2, 13, 39, 40, 5, 0]
    seg = [10, 10, 11, 12, 12, 13, 14]
    groups = [{"id": 0, "objectId": 0, "label": "chair", "segments": [10, 12]},
              {"id": 1, "objectId": 1, "label": "table", "segments": [13]}]
    _scannet_scan(tmp_path / "scene0001_00", nyu40, seg, groups)
    cloud = read_any(tmp_path / "scene0001_00")
    assert cloud.name == "scene0001_00" and len(cloud) == 7
    assert cloud.segment.tolist() == [0, 1, -1, 19, -1, 4, -1]
    assert cloud.instance.tolist() == [0, 0, -1, 0, 0, 1, -1]
    assert cloud.superpoint.tolist() == seg
    assert cloud.extra["segment_nyu40"].tolist() == nyu40 and "alpha" not in cloud.extra
    np.testing.assert_allclose(cloud.color, 128 / 255)


def test_scannet_raw_scan_errors(tmp_path):
    _scannet_scan(tmp_path / "a", [1] * 5, [0] * 5, [], n_labels=4)
    with pytest.raises(DataError, match="labels.ply: length mismatch"):
        read_scannet_scan(tmp_path / "a")
    _scannet_scan(tmp_path / "b", [1] * 5, [0] * 4 + [1], [{"objectId": "x", "segments": [0]}])
    with pytest.raises(DataError, match="segGroups\\[0\\]"):
        read_scannet_scan(tmp_path / "b")
    (tmp_path / "b" / "scene0001_00_vh_clean_2.0.010000.segs.json").write_text('{"segIndices": [0, 1')
    with pytest.raises(DataError, match="invalid JSON"):
        read_scannet_scan(tmp_path / "b")
    (tmp_path / "b" / "scene0001_00_vh_clean_2.0.010000.segs.json").write_text('{"segIndices": [0, 1]}')
    with pytest.raises(DataError, match="2 segIndices for 5 vertices"):
        read_scannet_scan(tmp_path / "b")


def test_scannet_object_export_real(shared_data):
    folder = shared_data / "scannet_scene0000_00"
    plain = read_ply(folder / "scene0000_00_pc_result.ply")
    assert len(plain) == 77012 and plain.color.dtype == np.float32 and plain.color.max() <= 1.0
    cloud = read_scannet_objects(folder)
    ref = np.load(folder / "DERIVED_scene0000_00_points_labels.npz")
    np.testing.assert_array_equal(cloud.coord, ref["coord"])
    np.testing.assert_array_equal(np.round(cloud.color * 255).astype(np.uint8), ref["color"])
    np.testing.assert_array_equal(cloud.extra["segment_nyu40"], ref["semantic_nyu40"])
    np.testing.assert_array_equal(cloud.instance, ref["instance"])
    np.testing.assert_array_equal(cloud.segment, nyu40_to_scannet20(ref["semantic_nyu40"]))
    assert len(np.unique(cloud.instance)) == 67
    assert set(np.unique(ref["semantic_nyu40"])) - set(SCANNET20_NYU40_IDS)  # some classes are ignored
    assert (cloud.segment == -1).any() and cloud.segment.max() <= 19


def _room(folder, objects):
    ann = folder / "Annotations"
    ann.mkdir(parents=True)
    for name, text in objects.items():
        (ann / name).write_bytes(text)


def test_s3dis_room_with_known_quirks(tmp_path):
    _room(tmp_path / "office_1", {
        "chair_1.txt": b"1.0 2.0 3.0 255 0 0\r\n1.5 2.5 3.5 0 255 0\r\n",
        "ceiling_10.txt": b"0 0 3 10 10 10\n\n0 1 3 1\x100 10 10\n",  # stray control byte, blank line
        "ceiling_2.txt": b"0 0 2.9 1 2 3 \n",
        "stairs_1.txt": b"5 5 5 0 0 0\n",
    })
    cloud = read_s3dis_room(tmp_path / "office_1")
    assert cloud.meta["objects"] == ["ceiling_2", "ceiling_10", "chair_1", "stairs_1"]
    assert cloud.segment.tolist() == [0, 0, 0, 8, 8, 12]
    assert cloud.instance.tolist() == [0, 1, 1, 2, 2, 3]
    np.testing.assert_allclose(cloud.color[3], [1, 0, 0])
    np.testing.assert_allclose(cloud.coord[2], [0, 1, 3])
    assert isinstance(read_any(tmp_path / "office_1"), PointCloud)


@pytest.mark.parametrize("text, message", [
    (b"0 0 0 1 2 3\n0 0 zero 1 2 3\n", "line 2: expected 'x y z r g b'"),
    (b"0 0 0 1 2 3\n0 0 0 1 2\n0 0 0 1 2 3 4\n", "line 2"),
    (b"0 0 0 1 2 300\n", "outside 0..255"),
    (b"0 nan 0 1 2 3\n", "NaN/Inf"),
])
def test_s3dis_malformed(tmp_path, text, message):
    _room(tmp_path / "r", {"table_1.txt": text})
    with pytest.raises(DataError, match=message) as info:
        read_s3dis_room(tmp_path / "r")
    assert "table_1.txt" in str(info.value)


def test_s3dis_empty_room(tmp_path):
    (tmp_path / "r" / "Annotations").mkdir(parents=True)
    with pytest.raises(DataError, match="no annotation"):
        read_s3dis_room(tmp_path / "r")


def test_semantickitti_real(shared_data):
    folder = shared_data / "semantickitti_000000"
    cloud = read_semantickitti(folder / "000000.bin", folder / "000000.label")
    assert len(cloud) == 123389 and cloud.coord.dtype == np.float32
    raw = np.fromfile(folder / "000000.label", np.uint32)
    np.testing.assert_array_equal(cloud.segment, semantickitti_to_train(raw & 0xFFFF))
    assert cloud.segment.min() == -1 and cloud.segment.max() <= 18
    assert cloud.extra["strength"].shape == (123389,) and 0 <= cloud.extra["strength"].min()
    assert (cloud.instance[cloud.instance >= 0] == (raw >> 16)[cloud.instance >= 0]).all()
    auto = read_any(folder / "000000.bin")  # label file found beside the scan
    np.testing.assert_array_equal(auto.segment, cloud.segment)


def test_semantickitti_errors(tmp_path):
    scan = np.zeros((10, 4), np.float32)
    scan[:, 0] = np.arange(10)
    (tmp_path / "a.bin").write_bytes(scan.tobytes()[:-4])
    with pytest.raises(DataError, match="not a multiple of 16"):
        read_semantickitti(tmp_path / "a.bin")
    (tmp_path / "a.bin").write_bytes(scan.tobytes())
    (tmp_path / "a.label").write_bytes(np.zeros(9, np.uint32).tobytes())
    with pytest.raises(DataError, match="a.label: length mismatch: 9 labels for 10 points"):
        read_semantickitti(tmp_path / "a.bin", tmp_path / "a.label")
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(DataError, match="empty point cloud"):
        read_semantickitti(tmp_path / "e.bin")
    scan[3, 2] = np.nan
    (tmp_path / "n.bin").write_bytes(scan.tobytes())
    with pytest.raises(DataError, match="NaN/Inf"):
        read_semantickitti(tmp_path / "n.bin")


def test_read_any_rejects_unknown(tmp_path):
    (tmp_path / "x.xyz").write_text("0 0 0\n")
    with pytest.raises(DataError, match="unsupported format '.xyz'"):
        read_any(tmp_path / "x.xyz")
    with pytest.raises(DataError, match="unsupported folder layout"):
        read_any(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        read_any(tmp_path / "nope.ply")
