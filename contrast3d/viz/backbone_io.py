"""Load a pre-trained backbone and compute per-point features of a scene (for the viz commands).

A backbone is either

* an exported ``backbone.safetensors`` (state dict) with a JSON sidecar ``backbone.json``, or
* a training checkpoint ``.pt`` (``{"model": method state dict, "config": {...}, ...}``); the
  backbone's keys are found by their ``conv_input.0.weight`` prefix (``backbone.``, ``student.`` ...).

The sidecar / checkpoint config should give ``model`` (SpUNet preset name), ``in_channels``,
``feat_keys`` and ``grid_size`` (metres), at the top level or in the ``model`` / ``data``
sections of ``config``. Missing values are inferred: ``in_channels`` and ``num_classes`` from
the weights, the preset by matching the state-dict shapes, ``feat_keys`` from ``in_channels``
(6 -> colour + normal, 3 -> colour) and ``grid_size`` defaults to 0.02 m (flagged in the info).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contrast3d.errors import DataError
from contrast3d.structures import PointCloud, TriangleMesh

STEM_KEY = "conv_input.0.weight"
DEFAULT_GRID_SIZE = 0.02


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict of the backbone and the metadata dict (sidecar or checkpoint)."""
    if not path.is_file():
        raise DataError(path, "backbone file not found")
    if path.suffix == ".safetensors":
        from contrast3d.engine.export import load_backbone_state

        state = load_backbone_state(path)
        sidecar = path.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        return state, meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad input file
        raise DataError(path, f"not a readable torch checkpoint ({err})") from None
    if not isinstance(obj, dict):
        raise DataError(path, "checkpoint is not a dict")
    meta = {k: v for k, v in obj.items() if not isinstance(v, (dict, torch.Tensor))}
    meta["config"] = obj.get("config") or {}
    state = obj.get("model") or obj.get("state_dict") or obj
    prefixes = sorted({k[: -len(STEM_KEY)] for k in state if isinstance(k, str) and k.endswith(STEM_KEY)},
                      key=lambda p: (p not in ("", "backbone.", "student.backbone.", "student."), len(p)))
    if not prefixes:
        raise DataError(path, f"no backbone weights found (no key ending in '{STEM_KEY}')")
    prefix = prefixes[0]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, meta


def _lookup(meta: dict[str, Any], key: str, sections: tuple[str, ...], *aliases: str) -> Any:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    for name in (key, *aliases):
        if meta.get(name) is not None and not isinstance(meta.get(name), dict):
            return meta[name]
        for section in sections:
            sec = config.get(section)
            if isinstance(sec, dict) and sec.get(name) is not None:
                return sec[name]
    return None


def _match_preset(state: dict[str, torch.Tensor], in_channels: int, num_classes: int) -> str | None:
    from contrast3d.models import SPUNET_PRESETS, create_spunet

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for name in sorted(SPUNET_PRESETS, key=lambda n: SPUNET_PRESETS[n].base_channels):
        model = create_spunet(name, in_channels, num_classes)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            return name
    return None


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a SpUNet from weights + metadata; returns ``(model in eval mode, info)``.

    ``info`` has ``model``, ``in_channels``, ``num_classes``, ``feat_keys`` (list), ``grid_size``
    (float, metres), ``grid_size_guessed`` (bool) and ``path``. Raises :class:`DataError` for a
    missing / unreadable file or weights that fit no preset.
    """
    from contrast3d.models import create_spunet

    path = Path(path)
    state, meta = _read_weights(path)
    if STEM_KEY not in state:
        raise DataError(path, f"not a SpUNet backbone (no '{STEM_KEY}')")
    in_channels = _lookup(meta, "in_channels", ("model",))
    in_channels = int(in_channels) if in_channels is not None else int(state[STEM_KEY].shape[-1])
    num_classes = int(state["final.bias"].shape[0]) if "final.bias" in state else 0
    name = _lookup(meta, "model", ("model",), "name", "preset", "backbone")
    if not isinstance(name, str):
        name = _match_preset(state, in_channels, num_classes)
        if name is None:
            raise DataError(path, "weights match no SpUNet preset and the metadata names no 'model'")
    feat_keys = _lookup(meta, "feat_keys", ("data", "model"))
    if feat_keys is None:
        feat_keys = {6: ["color", "normal"], 3: ["color"]}.get(in_channels)
        if feat_keys is None:
            raise DataError(path, f"metadata gives no 'feat_keys' for {in_channels} input channels")
    grid_size = _lookup(meta, "grid_size", ("data",), "voxel_size")
    try:
        model = create_spunet(name, in_channels, num_classes)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as err:
        raise DataError(path, f"weights do not fit preset '{name}': {str(err).splitlines()[0]}") from None
    info = {"model": name, "in_channels": in_channels, "num_classes": num_classes, "feat_keys": list(feat_keys),
            "grid_size": float(grid_size) if grid_size is not None else DEFAULT_GRID_SIZE,
            "grid_size_guessed": grid_size is None, "path": str(path)}
    return model.to(device).eval(), info


def read_scene(path: str | Path) -> PointCloud:
    """A scene as a :class:`PointCloud` (mesh files give their vertices)."""
    from contrast3d.io import read_any

    scene = read_any(path)
    return scene.to_point_cloud() if isinstance(scene, TriangleMesh) else scene


def scene_features(model: nn.Module, cloud: PointCloud, info: dict[str, Any], device: str | torch.device = "cpu",
                   seed: int = 0) -> torch.Tensor:
    """``(N, C)`` float32 CPU features of every point of ``cloud``.

    The cloud is voxelised with ``GridSample(info["grid_size"])`` (one seeded point per voxel),
    run through ``model`` and the voxel features are mapped back to all N points. Normals are
    estimated (PCA, facing the centroid) when ``feat_keys`` asks for them and the cloud has none.
    """
    from contrast3d.data.normals import estimate_normals
    from contrast3d.data.voxelize import GridSample
    from contrast3d.evaluation.probes import extract_features
    from contrast3d.structures import collate_points

    feat_keys = list(info["feat_keys"])
    if "normal" in feat_keys and cloud.normal is None:
        cloud = cloud.copy()
        cloud.normal = estimate_normals(cloud.coord, viewpoint=cloud.coord.mean(0))
    vox = GridSample(info["grid_size"], mode="train")(cloud, rng=np.random.default_rng(seed))
    batch = collate_points([vox], feat_keys)
    feats, _ = extract_features(model, [batch], device)[0]
    return feats
