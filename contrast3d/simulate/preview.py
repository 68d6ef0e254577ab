"""PNG previews of a simulated scene (class colours or RGB) from an oblique view above,
rendered with the simulator's own rasteriser, with a matplotlib legend."""
from __future__ import annotations

import os

import numpy as np

from contrast3d.simulate import classes as C
from contrast3d.simulate.meshbuilder import vertex_field
from contrast3d.simulate.render import Renderer
from contrast3d.simulate.trajectory import look_at_pose
from contrast3d.structures import TriangleMesh


def class_colors(segment: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 preview colour per label (``-1`` -> grey)."""
    table = np.array(C.CLASS_COLORS + (C.IGNORE_COLOR,), np.float32) / 255.0
    return table[np.where(segment < 0, len(C.CLASS_COLORS), segment)]


def _without_ceiling(mesh: TriangleMesh, height: float) -> np.ndarray:
    z = mesh.vertices[mesh.faces][:, :, 2]
    return ~(z > height - 1e-3).all(1)


def render_preview(mesh: TriangleMesh, height: float, mode: str = "class", size: tuple[int, int] = (800, 600),
                   elevation_deg: float = 55.0, azimuth_deg: float = -60.0) -> np.ndarray:
    """``(H, W, 3)`` uint8 oblique view of ``mesh`` without its ceiling (faces at ``height``).

    ``mode``: ``class`` colours vertices by ScanNet-20 class, ``rgb`` keeps the vertex colours,
    ``instance`` uses a random colour per instance.
    """
    keep = _without_ceiling(mesh, height)
    col: np.ndarray | None
    if mode == "class":
        col = class_colors(vertex_field(mesh, "vertex_segment"))
    elif mode == "instance":
        rng = np.random.default_rng(0)
        instance = vertex_field(mesh, "vertex_instance")
        table = rng.uniform(0.2, 1.0, (int(instance.max()) + 2, 3)).astype(np.float32)
        col = table[instance + 1]
        col[instance < 0] = 0.3
    else:
        col = mesh.vertex_color
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    centre = (lo + hi) / 2
    centre[2] = 0.0
    radius = np.linalg.norm(hi[:2] - lo[:2]) / 2
    el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    dist = radius / np.tan(np.deg2rad(25)) + 1.0
    direction = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), -np.sin(el)])
    pos = centre - direction * dist
    pose = look_at_pose(pos, float(np.arctan2(direction[1], direction[0])), -el, 0.0)
    v = mesh.vertices.astype(np.float64)
    tri = v[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    keep &= ((tri.mean(1) - pos) * normal).sum(1) < 0  # back-face culling: a cut-away "doll's house"
    view = TriangleMesh(mesh.vertices, mesh.faces[keep], vertex_color=col, vertex_normal=mesh.vertex_normal)
    w, h = size
    f = w / 2 / np.tan(np.deg2rad(30))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    lights = np.array([pos + [0, 0, 5.0], centre + [radius, -radius, 8.0]])
    r = Renderer(view, lights, w, h, K=K, ambient=0.55)
    return r.render(pose, noise=False).color


def _legend_rgb(label: int) -> tuple[float, float, float]:
    """Matplotlib RGB in [0, 1] of class ``label`` (``-1`` -> the ignore grey)."""
    r, g, b = (np.array(C.CLASS_COLORS[label] if label >= 0 else C.IGNORE_COLOR) / 255).tolist()
    return r, g, b


def save_preview(mesh: TriangleMesh, height: float, path: str | os.PathLike, mode: str = "class",
                 title: str | None = None) -> None:
    """Write a PNG: the oblique view plus (``mode='class'``) a legend of the classes present."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img = render_preview(mesh, height, mode)
    fig, ax = plt.subplots(figsize=(11, 6), dpi=100)
    ax.imshow(img)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if mode == "class":
        present = sorted(set(np.unique(vertex_field(mesh, "vertex_segment")).tolist()))
        handles = [Patch(color=_legend_rgb(c), label=C.class_name(c)) for c in present]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
