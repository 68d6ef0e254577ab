"""Load a pre-trained backbone and compute per-point features of a scene (for the viz commands).

Weights are read only through :func:`contrast3d.models.pretrained.load_pretrained` (an exported
``.safetensors`` + ``.json`` record, a training checkpoint or a Pointcept ``.pth``); the record says
how to feed the network (``feat_keys``, ``grid_size``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contrast3d.errors import DataError
from contrast3d.structures import PointCloud, TriangleMesh


def load_backbone(path: str | Path, device: str | torch.device = "cpu",
                  lenient: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Weights through :func:`~contrast3d.models.pretrained.load_pretrained`; ``(model in eval mode, info)``.

    ``info`` has ``model`` (preset), ``in_channels``, ``num_classes``, ``feat_keys`` (list),
    ``grid_size`` (metres), ``grid_size_guessed`` (the record only assumes it: a Pointcept ``.pth``),
    ``path``, ``method``, ``step`` (training steps; ``None`` for a Pointcept ``.pth``, which does not
    say) and ``class_names`` (a fine-tuned network's record, else ``None``).
    """
    from contrast3d.models.pretrained import load_pretrained

    pre = load_pretrained(path, device=device, lenient=lenient)
    rec = pre.record
    if rec.kind != "spunet":
        raise DataError(path, f"a {rec.kind} network, not a 3D backbone")
    if not rec.grid_size:
        raise DataError(path, "the record gives no grid_size (metres)")
    info = {"model": rec.preset, "in_channels": rec.in_channels, "num_classes": rec.num_classes,
            "feat_keys": list(rec.feat_keys), "grid_size": float(rec.grid_size),
            "grid_size_guessed": "grid_size" in rec.assumed, "path": str(path), "method": rec.method,
            "step": None if rec.assumed else int(rec.step),
            "class_names": list(rec.extra.get("class_names") or []) or None}
    return pre.model, info


#: ``--class-names`` tables: name -> the class names of that label set (``contrast3d.io.labels``).
CLASS_TABLES = ("scannet20", "s3dis", "semantickitti")


def resolve_class_names(spec: str, labels: np.ndarray | None = None, meta_names: Any = None,
                        record_names: Any = None) -> tuple[list[str] | None, str]:
    """Class names for legends, and where they came from.

    Args:
        spec: ``auto``; ``ids`` (no names); a table of :data:`CLASS_TABLES`; or a comma-separated list
            (``"wall,floor,chair"``, id order).
        labels: the ``(N,)`` int labels to be named (``auto`` uses their largest id).
        meta_names, record_names: names from the scene's ``meta["class_names"]`` and from the network's
            record (a fine-tuned model); ``auto`` takes the first given, else ScanNet-20 when every
            label is below 20 (the project's label set), else none.

    Returns:
        ``(names or None, source)`` with source e.g. ``"scene"``, ``"weights record"``, ``"scannet20"``.
    """
    from contrast3d.io.labels import S3DIS_CLASSES, SCANNET20_CLASSES, SEMANTICKITTI_CLASSES

    tables = {"scannet20": SCANNET20_CLASSES, "s3dis": S3DIS_CLASSES, "semantickitti": SEMANTICKITTI_CLASSES}
    key = spec.strip().lower()
    if key == "ids":
        return None, "ids"
    if key in tables:
        return list(tables[key]), key
    if key != "auto":
        names = [n.strip() for n in spec.split(",")]
        if not all(names):
            raise DataError("--class-names", f"empty name in {spec!r} (expected auto, ids, "
                                              f"{', '.join(CLASS_TABLES)} or a comma-separated list)")
        return names, "--class-names"
    if meta_names:
        return [str(n) for n in meta_names], "scene"
    if record_names:
        return [str(n) for n in record_names], "weights record"
    top = int(np.max(labels)) if labels is not None and np.size(labels) else -1
    if 0 <= top < len(SCANNET20_CLASSES):
        return list(SCANNET20_CLASSES), "scannet20"
    return None, "ids"


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
    vox = GridSample(info["grid_size"], mode="train").sample(cloud, np.random.default_rng(seed))
    batch = collate_points([vox], feat_keys)
    feats, _ = extract_features(model, [batch], device)[0]
    return feats
