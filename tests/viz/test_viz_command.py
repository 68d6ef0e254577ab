"""Backbone loading (through load_pretrained: exports, Pointcept .pth) and the ``contrast3d viz`` commands."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_room import make_room

from contrast3d.cli import main
from contrast3d.errors import DataError
from contrast3d.io import write_ply
from contrast3d.models import create_spunet
from contrast3d.models.backbone import spunet_record
from contrast3d.models.pretrained import PretrainedRecord, save_pointcept_pth, save_pretrained
from contrast3d.structures import PointCloud
from contrast3d.viz.backbone_io import load_backbone, scene_features


@pytest.fixture(autouse=True)
def _one_thread():
    """Small sparse convs: one thread avoids spin-wait overhead on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    torch.manual_seed(0)
    model = create_spunet("spunet-tiny", 6)
    record = PretrainedRecord(**spunet_record(model, "spunet-tiny", ["color", "normal"], 0.1))
    path = save_pretrained(model, tmp_path_factory.mktemp("bb") / "backbone.safetensors", record)
    return model, path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    coord, labels = make_room(2000, seed=0)
    color = np.random.default_rng(0).random((len(coord), 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("scene") / "room.ply"
    write_ply(path, PointCloud(coord=coord, color=color, segment=labels))
    return path


def test_load_backbone_from_safetensors_with_config(backbone):
    model, path = backbone
    loaded, info = load_backbone(path)
    assert info["model"] == "spunet-tiny" and info["in_channels"] == 6 and info["num_classes"] == 0
    assert info["feat_keys"] == ["color", "normal"] and info["grid_size"] == 0.1 and not info["grid_size_guessed"]
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_backbone_from_pointcept_pth_assumes_pointcept_defaults(backbone, tmp_path):
    model, _ = backbone
    save_pointcept_pth(model, tmp_path / "model_last.pth")
    loaded, info = load_backbone(tmp_path / "model_last.pth")
    assert info["model"] == "spunet-tiny" and info["feat_keys"] == ["color", "normal"] and info["grid_size_guessed"]
    assert info["grid_size"] == 0.02
    assert torch.equal(loaded.state_dict()["conv_input.0.weight"], model.state_dict()["conv_input.0.weight"])
    torch.save({"model": {"head.weight": torch.zeros(2)}}, tmp_path / "bad.pt")
    for bad in (tmp_path / "bad.pt", tmp_path / "missing.safetensors"):
        with pytest.raises(DataError):
            load_backbone(bad)


def test_scene_features_cover_every_point(backbone):
    model, path = backbone
    _, info = load_backbone(path)
    coord, _ = make_room(1500, seed=2)
    cloud = PointCloud(coord=coord, color=np.full((len(coord), 3), 0.5, np.float32))
    feats = scene_features(model, cloud, info)
    assert feats.shape == (len(coord), model.out_channels) and torch.isfinite(feats).all()
    assert torch.equal(feats, scene_features(model, cloud, info))  # seeded voxel sampling


def test_viz_similarity_and_tsne_commands(backbone, scene, tmp_path, capsys):
    _, path = backbone
    out = tmp_path / "sim.png"
    assert main(["viz", "similarity", "--init", str(path), "--scene", str(scene), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "query" in capsys.readouterr().out
    pair = tmp_path / "pair.png"
    assert main(["viz", "similarity", "--init", str(path), "--scene", str(scene), "--scene2", str(scene),
                 "--query", "5", "--out", str(pair)]) == 0
    assert pair.is_file()
    assert main(["viz", "similarity", "--init", str(path), "--scene", str(scene), "--query", "99999",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "out of range" in capsys.readouterr().err
    tsne = tmp_path / "tsne.png"
    assert main(["viz", "tsne", "--init", str(path), "--scene", str(scene), "--max-points", "200",
                 "--out", str(tsne)]) == 0
    assert tsne.is_file()
