"""Parametric mesh primitives (subdivided patches, boxes, cylinders, sheets) and an accumulator.

All primitives are built in a local frame in metres; faces are counter-clockwise seen from the
side their normal points to. Large faces are subdivided so that no edge is longer than
``edge`` metres, which lets baked vertex-colour textures and per-vertex labels resolve.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from contrast3d.structures import TriangleMesh

ColorFn = Callable[[np.ndarray], np.ndarray]


def vertex_field(mesh: TriangleMesh, name: str) -> np.ndarray:
    """The per-vertex array ``name`` (e.g. ``"vertex_segment"``) of ``mesh``; :class:`ValueError`
    when it is ``None`` (meshes from :class:`MeshBuilder` always carry colour, normal, segment and
    instance)."""
    value = getattr(mesh, name)
    if value is None:
        raise ValueError(f"mesh has no {name} (simulated meshes always have one)")
    return value


def grid_patch(origin: ArrayLike, u: ArrayLike, v: ArrayLike, edge: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A planar parallelogram ``origin + a*u + b*v`` (a, b in [0, 1]) as a triangle grid.

    Returns ``(verts (V,3) float64, faces (F,3) int64, normals (V,3) float64)``; the normal is
    ``u x v`` normalised.
    """
    origin, u, v = (np.asarray(x, np.float64) for x in (origin, u, v))
    nu = max(1, int(np.ceil(np.linalg.norm(u) / edge - 1e-9)))
    nv = max(1, int(np.ceil(np.linalg.norm(v) / edge - 1e-9)))
    a, b = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    verts = origin + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    p00, p10, p01, p11 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([p00, p10, p11], 1), np.stack([p00, p11, p01], 1)])
    n = np.cross(u, v)
    n = n / max(float(np.linalg.norm(n)), 1e-12)
    return verts, faces, np.broadcast_to(n, verts.shape).copy()


def box(size: np.ndarray, edge: float, skip: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis-aligned box centred at the origin with ``size`` ``(3,)``; faces named
    ``-x +x -y +y -z +z`` may be skipped (e.g. hidden bottoms)."""
    sx, sy, sz = np.asarray(size, np.float64) / 2
    specs = {
        "-x": ([-sx, -sy, -sz], [0, 0, 2 * sz], [0, 2 * sy, 0]),
        "+x": ([sx, -sy, -sz], [0, 2 * sy, 0], [0, 0, 2 * sz]),
        "-y": ([-sx, -sy, -sz], [2 * sx, 0, 0], [0, 0, 2 * sz]),
        "+y": ([-sx, sy, -sz], [0, 0, 2 * sz], [2 * sx, 0, 0]),
        "-z": ([-sx, -sy, -sz], [0, 2 * sy, 0], [2 * sx, 0, 0]),
        "+z": ([-sx, -sy, sz], [2 * sx, 0, 0], [0, 2 * sy, 0]),
    }
    return merge([grid_patch(o, u, v, edge) for k, (o, u, v) in specs.items() if k not in skip])


def cylinder(r0: float, r1: float, height: float, edge: float, segments: int | None = None,
             caps: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (truncated) cone along +z from ``z=0`` (radius ``r0``) to ``z=height`` (radius ``r1``)."""
    seg = segments or int(np.clip(np.ceil(2 * np.pi * max(r0, r1) / edge), 8, 48))
    rings = max(1, int(np.ceil(height / edge)))
    th = np.linspace(0, 2 * np.pi, seg + 1)[:-1]
    t = np.linspace(0, 1, rings + 1)
    r = (r0 + (r1 - r0) * t)[:, None]
    verts = np.stack([r * np.cos(th), r * np.sin(th), np.repeat((t * height)[:, None], seg, 1)], -1).reshape(-1, 3)
    slope = (r0 - r1) / max(height, 1e-9)
    nrm = np.stack([np.cos(th), np.sin(th), np.full(seg, slope)], -1)
    nrm = np.tile(nrm / np.linalg.norm(nrm, axis=1, keepdims=True), (rings + 1, 1))
    idx = np.arange((rings + 1) * seg).reshape(rings + 1, seg)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1].ravel(), nxt[:-1].ravel(), idx[1:].ravel(), nxt[1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    parts = [(verts, faces, nrm)]
    if caps:
        for z, rad, sign in ((0.0, r0, -1.0), (height, r1, 1.0)):
            if rad <= 0:
                continue
            cv = np.concatenate([[[0, 0, z]], np.stack([rad * np.cos(th), rad * np.sin(th), np.full(seg, z)], -1)])
            k = np.arange(seg)
            cf = np.stack([np.zeros(seg, np.int64), 1 + k, 1 + (k + 1) % seg], 1)
            if sign < 0:
                cf = cf[:, ::-1]
            parts.append((cv, cf, np.broadcast_to([0, 0, sign], cv.shape).copy()))
    return merge(parts)


def pleated_sheet(width: float, height: float, depth: float, period: float, edge: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vertical curtain-like sheet in the x-z plane (x in [-w/2, w/2], z in [0, h]) whose y
    follows ``depth/2 * sin(2 pi x / period)``; two-sided (both windings)."""
    nx = max(4, int(np.ceil(width / min(edge, period / 6))))
    nz = max(1, int(np.ceil(height / edge)))
    x, z = np.meshgrid(np.linspace(-width / 2, width / 2, nx + 1), np.linspace(0, height, nz + 1), indexing="ij")
    y = depth / 2 * np.sin(2 * np.pi * x / period)
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    dy = depth / 2 * 2 * np.pi / period * np.cos(2 * np.pi * x / period)
    nrm = np.stack([-dy, np.ones_like(dy), np.zeros_like(dy)], -1).reshape(-1, 3)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    idx = np.arange(verts.shape[0]).reshape(nx + 1, nz + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    front = np.concatenate([np.stack([a, d, b], 1), np.stack([a, c, d], 1)])
    n = len(verts)
    return (np.concatenate([verts, verts]), np.concatenate([front, front[:, ::-1] + n]),
            np.concatenate([nrm, -nrm]))


def merge(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate ``(verts, faces, normals)`` triples, re-indexing faces."""
    offs = np.cumsum([0] + [len(p[0]) for p in parts])
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] + o for p, o in zip(parts, offs)]),
            np.concatenate([p[2] for p in parts]))


def rot_z(yaw: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``yaw`` radians about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_x(angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about +x."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


class MeshBuilder:
    """Accumulates primitives with colour, semantic label and instance (or part) id per vertex."""

    def __init__(self, edge: float = 0.06):
        self.edge = edge
        self._chunks: list[tuple[np.ndarray, ...]] = []

    def add(self, geom: tuple[np.ndarray, np.ndarray, np.ndarray], color: ColorFn | np.ndarray, label: int,
            inst: int, rot: np.ndarray | None = None, offset=(0.0, 0.0, 0.0), scale=None) -> None:
        """Append a primitive transformed by ``rot @ (scale * p) + offset``; ``color`` is a
        material called on the transformed positions, or a fixed RGB."""
        v, f, n = geom
        if scale is not None:
            scale = np.asarray(scale, np.float64)
            v, n = v * scale, n / scale
            n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        if rot is not None:
            v, n = v @ rot.T, n @ rot.T
        v = v + np.asarray(offset, np.float64)
        c = color(v) if callable(color) else np.broadcast_to(np.asarray(color, np.float32), v.shape)
        k = len(v)
        self._chunks.append((v, f, n, np.asarray(c, np.float32), np.full(k, label, np.int64),
                             np.full(k, inst, np.int64)))

    def box(self, center, size, color, label: int, inst: int = 0, rot=None, skip=()) -> None:
        """An axis-aligned (then ``rot``-rotated about its centre) box."""
        v, f, n = box(size, self.edge, skip)
        if rot is not None:
            v, n = v @ rot.T, n @ rot.T
        self.add((v, f, n), color, label, inst, offset=center)

    def cylinder(self, base, r0, r1, height, color, label: int, inst: int = 0, rot=None, caps=True) -> None:
        """A cone/cylinder whose axis starts at ``base`` along ``rot @ +z``."""
        v, f, n = cylinder(r0, r1, height, self.edge, caps=caps)
        if rot is not None:
            v, n = v @ rot.T, n @ rot.T
        self.add((v, f, n), color, label, inst, offset=base)

    def extend(self, other: MeshBuilder, rot: np.ndarray | None = None, offset=(0.0, 0.0, 0.0),
               inst_map: dict[int, int] | None = None) -> None:
        """Append all chunks of ``other`` moved by ``rot @ p + offset``; instance (part) ids are
        renamed through ``inst_map`` (missing keys, and chunks labelled ``-1``, get ``-1``)."""
        off = np.asarray(offset, np.float64)
        for v, f, n, c, lab, inst in other._chunks:
            if rot is not None:
                v, n = v @ rot.T, n @ rot.T
            if inst_map is not None and len(inst):
                new = inst_map.get(int(inst[0]), -1) if lab[0] >= 0 else -1
                inst = np.full_like(inst, new)
            self._chunks.append((v + off, f, n, c, lab, inst))

    def translate(self, d) -> None:
        """Move every chunk by ``d`` ``(3,)`` in place (colours stay as baked)."""
        self._chunks = [(c[0] + np.asarray(d, np.float64),) + tuple(c[1:]) for c in self._chunks]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo (3,), hi (3,))`` of all vertices."""
        v = np.concatenate([c[0] for c in self._chunks])
        return v.min(0), v.max(0)

    @property
    def num_faces(self) -> int:
        return int(sum(len(c[1]) for c in self._chunks))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(verts, faces, normals, colors, labels, insts)`` concatenated."""
        if not self._chunks:
            z = np.zeros((0, 3))
            return z, np.zeros((0, 3), np.int64), z, z.astype(np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        offs = np.cumsum([0] + [len(c[0]) for c in self._chunks])
        return (np.concatenate([c[0] for c in self._chunks]),
                np.concatenate([c[1] + o for c, o in zip(self._chunks, offs)]),
                np.concatenate([c[2] for c in self._chunks]),
                np.concatenate([c[3] for c in self._chunks]),
                np.concatenate([c[4] for c in self._chunks]),
                np.concatenate([c[5] for c in self._chunks]))

    def to_mesh(self, name: str = "") -> TriangleMesh:
        v, f, n, c, lab, inst = self.arrays()
        nrm = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return TriangleMesh(vertices=v.astype(np.float32), faces=f.astype(np.int64), vertex_color=c,
                            vertex_normal=nrm.astype(np.float32), vertex_segment=lab, vertex_instance=inst,
                            meta={"name": name})
