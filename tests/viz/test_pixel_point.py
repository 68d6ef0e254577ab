"""Image-to-point Fig. 2: PCA colours against a float64 reference, the shared vs separate projection, the
three-panel PNG, and the figure from freshly initialised tiny networks on simulated RGB-D frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from contrast3d.cli import main
from contrast3d.data.frame_images import smoke_frames
from contrast3d.engine.checkpoint import FORMAT, VERSION
from contrast3d.models import create_spunet
from contrast3d.models.backbone import spunet_record
from contrast3d.models.image_unet import create_image_unet
from contrast3d.models.pretrained import PretrainedRecord, save_pretrained
from contrast3d.viz.pixel_point import (
    fit_pca_colors,
    load_point_head,
    pixel_point_colors,
    pixel_point_figure,
    pixel_point_from_weights,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_pca_matches_an_eigen_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) * np.array([5.0, 3.0, 2.0, 0.5, 0.3, 0.1]) + 10.0
    x = x @ np.linalg.qr(rng.standard_normal((6, 6)))[0]
    maps = fit_pca_colors(x[:150], x[150:])
    pca = maps[0]
    assert maps[1].mean is pca.mean and maps[1].components is pca.components  # joint: one map
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cov = np.cov(xn.T, bias=True)
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1]
    for i in range(3):
        assert abs(float(pca.components[i] @ vec[:, order[i]])) == pytest.approx(1.0, abs=1e-8)
        assert pca.explained[i] == pytest.approx(val[order[i]] / val.sum(), rel=1e-8)
        assert pca.components[i][np.argmax(np.abs(pca.components[i]))] > 0  # sign convention
    rgb = pca(x)
    proj = (xn - xn.mean(0)) @ pca.components.T
    for c in range(3):  # 1st..99th percentile -> [0, 1], clipped
        want = np.clip((proj[:, c] - np.percentile(proj[:, c], 1)) /
                       (np.percentile(proj[:, c], 99) - np.percentile(proj[:, c], 1)), 0, 1)
        np.testing.assert_allclose(rgb[:, c], want, atol=1e-6)
    assert 0 < (rgb == 0).mean() < 0.05 and 0 < (rgb == 1).mean() < 0.05
    two = fit_pca_colors(rng.standard_normal((50, 2)))[0]  # fewer than 3 dims: the third channel is mid-grey
    assert np.all(two(rng.standard_normal((5, 2)))[:, 2] == 0.5)


def test_shared_projection_gives_equal_features_equal_colours():
    rng = np.random.default_rng(1)
    pixels = rng.standard_normal((300, 8))
    points = np.concatenate([pixels[:40], 3.0 * rng.standard_normal((200, 8)) + 2.0])
    pix_rgb, pts_rgb, maps = pixel_point_colors(pixels, points, shared=True, center="joint")
    assert maps[0].mean is maps[1].mean
    np.testing.assert_array_equal(pix_rgb[:40], pts_rgb[:40])
    pix_sep, pts_sep, maps = pixel_point_colors(pixels, points, shared=False)
    assert not np.array_equal(maps[0].components, maps[1].components)
    assert not np.allclose(pix_sep[:40], pts_sep[:40], atol=0.05)
    assert np.all(pts_rgb >= 0) and np.all(pts_rgb <= 1)
    np.testing.assert_array_equal(pixel_point_colors(pixels, points, shared=True, center="joint")[1], pts_rgb)
    with pytest.raises(ValueError, match="width"):
        pixel_point_colors(pixels, points[:, :5], shared=True)


def test_each_centring_removes_a_constant_offset_between_modalities():
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    g = rng.standard_normal((500, 3)) * [3.0, 2.0, 1.0]
    structure = g / np.linalg.norm(g, axis=1, keepdims=True) @ basis[:3]  # shared structure, unit norm rows
    # pixels and points: the same structure, ten times weaker in the points, plus a constant offset (row norms
    # are constant within each set, so the L2 normalisation only rescales each set as a whole)
    pixels, points = structure + 4.0 * basis[4], 0.1 * structure + 4.0 * basis[3]
    pix_rgb, pts_rgb, maps = pixel_point_colors(pixels, points, shared=True, center="each")
    np.testing.assert_allclose(pix_rgb, pts_rgb, atol=1e-6)  # the same structure gets the same colours
    assert not np.allclose(maps[0].mean, maps[1].mean) and maps[1].scale < 0.2 * maps[0].scale
    _, _, joint = pixel_point_colors(pixels, points, shared=True, center="joint")
    assert joint[0].explained[0] > 0.8 > 0.7 > maps[0].explained[0]  # jointly centred, the offset is component 1
    joint_pix, joint_pts, _ = pixel_point_colors(pixels, points, shared=True, center="joint")
    assert np.abs(joint_pix - joint_pts).max() > 0.5  # ... and paints the two panels apart


def test_figure_has_three_exact_panels_and_a_z_buffer(tmp_path):
    rng = np.random.default_rng(2)
    h = w = 40
    image = rng.uniform(0, 1, (3, h, w)).astype(np.float32)
    pixel_feats = rng.standard_normal((4, h, w))
    point_pixel = np.array([[3, 5], [3, 5], [20, 30]])
    point_feats = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    out = pixel_point_figure(image, pixel_feats, point_pixel, np.array([2.0, 1.0, 1.5]), point_feats,
                             tmp_path / "f.png", shared=True, min_panel=120)
    assert out["projection"] == "shared" and out["scale"] == 3 and len(out["boxes"]) == 3
    png = imread(out["png"])[..., :3]
    for (r0, r1, c0, c1), panel in zip(out["boxes"], out["panels"]):
        big = panel.repeat(3, axis=0).repeat(3, axis=1)
        assert (r1 - r0, c1 - c0) == big.shape[:2]
        np.testing.assert_allclose(png[r0:r1, c0:c1], big, atol=1.0 / 255 + 1e-6)
    np.testing.assert_allclose(out["panels"][0], image.transpose(1, 2, 0))
    pts = out["panels"][2]
    _, point_rgb, _ = pixel_point_colors(pixel_feats.reshape(4, -1).T, point_feats, shared=True)  # same fit
    np.testing.assert_allclose(pts[3, 5], point_rgb[1], atol=1e-6)  # the nearer of the two points wins
    np.testing.assert_allclose(pts[20, 30], point_rgb[2], atol=1e-6)
    assert np.all(pts[0, 0] == 1.0)  # no point: white
    with pytest.raises(ValueError, match="outside"):
        pixel_point_figure(image, pixel_feats, np.array([[h, 0]]), np.ones(1), point_feats[:1], tmp_path / "x.png",
                           shared=False)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Simulated RGB-D frames, a fresh tiny 2D network (16-d) and a fresh tiny SpUNet (32-d), both exported."""
    root = tmp_path_factory.mktemp("pp")
    frames = smoke_frames(root)
    torch.manual_seed(0)
    net2 = create_image_unet("tiny", out_channels=16)
    image_net = save_pretrained(net2, root / "nets" / "image_net.safetensors",
                                PretrainedRecord(kind="image_unet", preset="tiny", ndim=2, in_channels=3,
                                                 out_channels=16, extra={"image_size": 64}))
    net3 = create_spunet("spunet-tiny", 3)
    record = PretrainedRecord(**spunet_record(net3, "spunet-tiny", ["color"], 0.1))
    backbone = save_pretrained(net3, root / "nets" / "backbone.safetensors", record)
    return frames, image_net, backbone, net3, record


def _stage3d_checkpoint(path, net3, record, head):
    """What the trainer writes for an image2point stage-3d run (model state with ``net.`` and ``head.``)."""
    model = {f"net.{k}": v for k, v in net3.state_dict().items()}
    model.update({f"head.{k}": v for k, v in head.state_dict().items()})
    torch.save({"format": FORMAT, "version": VERSION, "step": 3, "epoch": 0, "batch_in_epoch": 3, "model": model,
                "optimizer": {}, "scheduler": {}, "rng": [], "world_size": 1,
                "config": {"method_name": "image2point", "method": {"stage": "3d"}},
                "exports": {"backbone": {"prefix": "net.", "record": record.to_dict()}}}, path)
    return path


def test_figure_from_tiny_networks_on_simulated_frames(networks, tmp_path):
    frames, image_net, backbone, net3, record = networks
    out = pixel_point_from_weights(image_net, backbone, frames, tmp_path / "fig2.png", index=1)
    assert out["projection"] == "separate" and not out["head"] and (out["pixel_dim"], out["point_dim"]) == (16, 32)
    assert "not exported" in out["reason"] and out["points"] > 100
    png = imread(out["png"])
    assert out["scale"] == 7 and len(out["boxes"]) == 3 and png.shape[1] > 3 * 64 * 7
    rgb, feat, pts = out["panels"]
    assert rgb.shape == feat.shape == pts.shape == (64, 64, 3)
    assert (pts < 1).any(axis=-1).mean() > 0.3  # the points cover much of the image
    assert feat.std() > 0.05  # the pixel features are not one flat colour
    # the stage-3d checkpoint brings the head: point features in the 16-d pixel space, one shared PCA
    head = torch.nn.Linear(32, 16)
    ckpt = _stage3d_checkpoint(tmp_path / "last.pt", net3, record, head)
    loaded = load_point_head(ckpt)
    assert loaded is not None and torch.equal(loaded.weight, head.weight) and torch.equal(loaded.bias, head.bias)
    assert load_point_head(backbone) is None
    shared = pixel_point_from_weights(image_net, ckpt, frames, tmp_path / "shared.png", index=1)
    assert shared["projection"] == "shared" and shared["head"] and shared["point_dim"] == 16
    assert not np.allclose(shared["panels"][2], pts)
    np.testing.assert_array_equal((shared["panels"][2] < 1).any(-1), (pts < 1).any(-1))  # same points drawn


def test_viz_pixel_point_command(networks, tmp_path, capsys):
    frames, image_net, backbone, _, _ = networks
    out = tmp_path / "cmd.png"
    args = ["viz", "pixel-point", "--image-net", str(image_net), "--backbone", str(backbone), "--frame", frames]
    assert main(args + ["--index", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "separate PCA" in capsys.readouterr().out
    assert main(args + ["--projection", "shared", "--out", str(tmp_path / "x.png")]) == 2  # 16-d vs 32-d
    assert "equal widths" in capsys.readouterr().err
    assert main(args + ["--index", "99", "--out", str(tmp_path / "y.png")]) == 2
    assert "out of range" in capsys.readouterr().err
    swapped = ["viz", "pixel-point", "--image-net", str(backbone), "--backbone", str(backbone), "--frame", frames]
    assert main(swapped + ["--out", str(tmp_path / "z.png")]) == 2
    assert "not a 2D image network" in capsys.readouterr().err
