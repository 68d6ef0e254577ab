"""Write a simulated scene in the ScanNet export layout (plus a Pointcept scene folder).

``<out>/<scene>/``: ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm, 0 = invalid),
``pose/<i>.txt`` (4x4 camera-to-world), ``intrinsic/intrinsic_{depth,color}.txt`` (4x4),
``render/<i>.npz`` (``tri`` int32 face index image, ``depth`` float32 exact depth),
``<scene>_mesh.ply`` (vertex colours, normals, ``label``, ``instance``, faces in mesh order)
and ``meta.json``. ``<out>/pointcept/<scene>/``: coord / color (uint8) / normal /
segment (ScanNet-20 ids, the label file name of every writer:
:data:`~contrast3d.io.pointcept.SEGMENT_FILE`) / instance ``.npy`` from points sampled on the
mesh surface. Folders are written under a temporary name and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from contrast3d.io._common import replace_dir
from contrast3d.io.ply_write import write_ply
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.simulate.meshbuilder import vertex_field
from contrast3d.simulate.render import Frame, Renderer
from contrast3d.simulate.scene import SimScene, generate_scene
from contrast3d.simulate.trajectory import camera_trajectory
from contrast3d.structures import PointCloud, TriangleMesh


def sample_surface(mesh: TriangleMesh, density: float, rng: np.random.Generator,
                   face_mask: np.ndarray | None = None) -> PointCloud:
    """Area-weighted random points on ``mesh`` (``density`` points per m², Poisson per face).

    Colour and normal are interpolated from the vertices; ``segment`` / ``instance`` come from
    the face's first vertex (faces never mix labels in simulated meshes); ``extra['face']`` is
    the source face index.
    """
    faces = mesh.faces if face_mask is None else mesh.faces[face_mask]
    face_ids = np.arange(mesh.num_faces) if face_mask is None else np.nonzero(face_mask)[0]
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    counts = rng.poisson(area * density)
    fi = np.repeat(np.arange(len(faces)), counts)
    r1, r2 = np.sqrt(rng.random(len(fi))), rng.random(len(fi))
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    f = faces[fi]
    coord = (v[f] * w[:, :, None]).sum(1)
    color = (vertex_field(mesh, "vertex_color")[f] * w[:, :, None]).sum(1)
    normal = (vertex_field(mesh, "vertex_normal")[f] * w[:, :, None]).sum(1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return PointCloud(coord=coord.astype(np.float32), color=np.clip(color, 0, 1).astype(np.float32),
                      normal=normal.astype(np.float32), segment=vertex_field(mesh, "vertex_segment")[f[:, 0]].copy(),
                      instance=vertex_field(mesh, "vertex_instance")[f[:, 0]].copy(),
                      extra={"face": face_ids[fi].astype(np.int32)},
                      meta={"name": mesh.meta.get("name", "")})


def _k4(K: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = K
    return out


def write_frame(folder: Path, index: int, frame: Frame) -> None:
    """One frame's colour jpg, uint16 depth png, pose txt and render npz into ``folder``."""
    Image.fromarray(frame.color).save(folder / "color" / f"{index}.jpg", quality=92)
    mm = np.clip(np.round(frame.depth * 1000.0), 0, 65535).astype(np.uint16)
    Image.fromarray(mm).save(folder / "depth" / f"{index}.png")
    np.savetxt(folder / "pose" / f"{index}.txt", frame.pose, fmt="%.9f")
    np.savez_compressed(folder / "render" / f"{index}.npz", tri=frame.tri.astype(np.int32),
                        depth=frame.depth_clean.astype(np.float32))


def export_scene(scene: SimScene, out: str | os.PathLike, frames: Iterable[Frame] = (), K: np.ndarray | None = None,
                 density: float = 1500.0, with_ceiling_points: bool = False) -> Path:
    """Write ``scene`` (and its ``frames``) under ``out``; returns ``<out>/<scene.name>``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{scene.name}.tmp-", dir=out))
    try:
        for sub in ("color", "depth", "pose", "render", "intrinsic"):
            (tmp / sub).mkdir()
        n = 0
        for i, frame in enumerate(frames):
            write_frame(tmp, i, frame)
            K = frame.K
            n += 1
        if K is not None:
            for name in ("intrinsic_depth.txt", "intrinsic_color.txt"):
                np.savetxt(tmp / "intrinsic" / name, _k4(K), fmt="%.6f")
        m = scene.mesh
        ply_mesh = TriangleMesh(m.vertices, m.faces, vertex_color=m.vertex_color, vertex_normal=m.vertex_normal,
                                vertex_instance=m.vertex_instance,
                                vertex_extra={"label": vertex_field(m, "vertex_segment").astype(np.int32)})
        write_ply(tmp / f"{scene.name}_mesh.ply", ply_mesh, binary=True)
        meta = {"scene": scene.name, "seed": scene.seed, "height": scene.plan.height, "frames": n,
                "rooms": [{"id": r.id, "kind": r.kind, "rects": r.rects} for r in scene.plan.rooms],
                "objects": [{"name": o.name, "label": o.label, "instance": o.instance, "room": o.room,
                             "center": o.center.tolist(), "half": o.half.tolist(), "yaw": o.yaw, "z": [o.z0, o.z1]}
                            for o in scene.objects if o.kind != "reserve"],
                "label_set": "scannet20"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        replace_dir(tmp, out / scene.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rng = np.random.default_rng([scene.seed, 7])
    mask = None
    if not with_ceiling_points:
        z = m.vertices[m.faces][:, :, 2]
        mask = ~((vertex_field(m, "vertex_segment")[m.faces[:, 0]] < 0) & (z > scene.plan.height - 1e-3).all(1))
    cloud = sample_surface(m, density, rng, mask)
    cloud.extra.pop("face")
    (out / "pointcept").mkdir(exist_ok=True)
    write_pointcept_scene(out / "pointcept" / scene.name, cloud)
    return out / scene.name


def simulate_scene(seed: int, out: str | os.PathLike, n_frames: int = 60, width: int = 320, height: int = 240,
                   name: str | None = None, density: float = 1500.0) -> Path:
    """Generate, render (``n_frames`` RGB-D frames, 0 = none) and export one scene."""
    scene = generate_scene(seed, name)
    frames: Iterable[Frame] = []
    K = None
    if n_frames > 0:
        rng = np.random.default_rng([seed, 1])
        poses = camera_trajectory(scene.plan, scene.objects, n_frames, rng)
        renderer = Renderer(scene.mesh, scene.lights, width, height)
        K = renderer.K
        frames = (renderer.render(p, np.random.default_rng([seed, 2, i])) for i, p in enumerate(poses))
    return export_scene(scene, out, frames, K=K, density=density)
