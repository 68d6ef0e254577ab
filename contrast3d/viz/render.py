"""A small headless point-splatting renderer (numpy z-buffer) shared by the visual checks.

The camera is orthographic and looks at the scene obliquely from above (a bird's-eye view of a
room). World coordinates are metres with ``+z`` up. :meth:`Camera.fit` frames a bounding box, so
one camera fitted to the union of two views renders both from the same viewpoint.

Every point becomes a disc of ``point_radius`` pixels; for each pixel the nearest point wins
(z-buffer resolved by one ``lexsort`` over all (pixel, depth) candidates, no Python loop over
points).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Orthographic camera.

    Attributes:
        rotation: ``(3, 3)`` rows = image-right, image-up and viewing direction (unit, world frame).
        origin: ``(2,)`` (right, up) world-projected coordinate of the image's top-left corner, metres.
        scale: pixels per metre.
        image_size: ``(H, W)`` pixels.
    """

    rotation: np.ndarray
    origin: np.ndarray
    scale: float
    image_size: tuple[int, int]

    @staticmethod
    def fit(coord: np.ndarray, azimuth: float = -55.0, elevation: float = 55.0,
            image_size: tuple[int, int] = (600, 800), margin: float = 0.04) -> Camera:
        """Frame the bounding box of ``coord`` ``(N, 3)`` (metres) from a fixed direction.

        Args:
            azimuth: degrees, direction of the camera around ``+z`` (0 = looking from ``+x``).
            elevation: degrees above the horizontal plane (90 = straight down).
            image_size: ``(H, W)`` pixels.
            margin: fraction of the image kept free on every side.
        """
        coord = np.asarray(coord, dtype=np.float64).reshape(-1, 3)
        if coord.shape[0] == 0:
            raise ValueError("cannot fit a camera to 0 points")
        az, el = np.radians(azimuth), np.radians(elevation)
        forward = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0.0, 0.0])
        up = np.cross(right, forward)
        rotation = np.stack([right, up, forward])
        lo, hi = coord.min(0), coord.max(0)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        proj = corners @ rotation[:2].T
        pmin, pmax = proj.min(0), proj.max(0)
        h, w = image_size
        usable = np.array([w, h], np.float64) * (1 - 2 * margin)
        span = np.maximum(pmax - pmin, 1e-6)
        scale = float(np.min(usable / span))
        centre = (pmin + pmax) / 2
        origin = np.array([centre[0] - w / (2 * scale), centre[1] + h / (2 * scale)])
        return Camera(rotation, origin, scale, (int(h), int(w)))

    def project(self, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel column ``u``, row ``v`` (float, ``(N,)`` each) and depth (metres, larger = farther)."""
        cam = np.asarray(coord, dtype=np.float64).reshape(-1, 3) @ self.rotation.T
        u = (cam[:, 0] - self.origin[0]) * self.scale
        v = (self.origin[1] - cam[:, 1]) * self.scale
        return u, v, cam[:, 2]


def framed_camera(coord: np.ndarray, height: int = 480, elevation: float = 65.0, max_aspect: float = 1.8,
                  margin: float = 0.03) -> Camera:
    """An oblique camera framed tightly on the points of a scene, the image width following its shape.

    The camera looks across the scene's shorter horizontal side (azimuth -70 degrees when the scene is
    longer in x, -20 when longer in y), so a long room lies across the image; the image is ``height``
    pixels high and as wide as the projected points need (aspect clipped to ``[1 / max_aspect, max_aspect]``).
    """
    coord = np.asarray(coord, dtype=np.float64).reshape(-1, 3)
    ext = coord.max(0) - coord.min(0)
    azimuth = -70.0 if ext[0] >= ext[1] else -20.0
    cam = Camera.fit(coord, azimuth=azimuth, elevation=elevation, image_size=(height, height), margin=margin)
    proj = coord @ cam.rotation[:2].T
    pmin, pmax = proj.min(0), proj.max(0)
    span = np.maximum(pmax - pmin, 1e-6)
    width = int(round(height * float(np.clip(span[0] / span[1], 1 / max_aspect, max_aspect))))
    scale = float(np.min(np.array([width, height], np.float64) * (1 - 2 * margin) / span))
    centre = (pmin + pmax) / 2
    origin = np.array([centre[0] - width / (2 * scale), centre[1] + height / (2 * scale)])
    return Camera(cam.rotation, origin, scale, (int(height), width))


def auto_radius(num_points: int, image_size: tuple[int, int]) -> int:
    """A splat radius (pixels) that roughly closes the gaps between ``num_points`` points."""
    h, w = image_size
    spacing = np.sqrt(0.35 * h * w / max(num_points, 1))
    return int(np.clip(np.ceil(spacing / 2), 1, 6))


def splat(u: np.ndarray, v: np.ndarray, depth: np.ndarray, colors: np.ndarray, image_size: tuple[int, int],
          radius: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
          ) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered discs.

    Args:
        u, v, depth: ``(N,)`` pixel column / row and depth (smaller = nearer).
        colors: ``(N, 3)`` float RGB in [0, 1].
        radius: disc radius in pixels (0 = single pixel).

    Returns:
        ``image`` ``(H, W, 3)`` float32 and ``index`` ``(H, W)`` int64 of the point seen at each
        pixel (``-1`` = background).
    """
    h, w = image_size
    r = int(max(radius, 0))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (dx ** 2 + dy ** 2) <= r * r + r  # slightly rounder than the exact disc for small r
    dx, dy = dx[disc], dy[disc]
    ui = np.floor(u).astype(np.int64)[:, None] + dx[None]
    vi = np.floor(v).astype(np.int64)[:, None] + dy[None]
    pid = np.broadcast_to(np.arange(len(u))[:, None], ui.shape)
    ok = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    pix = (vi * w + ui)[ok]
    pid = pid[ok]
    order = np.lexsort((depth[pid], pix))  # by pixel, then nearest first
    pix, pid = pix[order], pid[order]
    first = np.concatenate([[True], pix[1:] != pix[:-1]]) if len(pix) else np.zeros(0, bool)
    index = np.full(h * w, -1, np.int64)
    index[pix[first]] = pid[first]
    image = np.empty((h * w, 3), np.float32)
    image[:] = np.asarray(background, np.float32)
    seen = index >= 0
    image[seen] = np.asarray(colors, np.float32)[index[seen]]
    return image.reshape(h, w, 3), index.reshape(h, w)


def render_points(coord: np.ndarray, rgb: np.ndarray, out: str | Path | None = None, view: Camera | None = None,
                  image_size: tuple[int, int] = (600, 800), point_radius: int | None = None,
                  background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Render coloured points; optionally write the image as PNG.

    Args:
        coord: ``(N, 3)`` metres.
        rgb: ``(N, 3)`` float in [0, 1] (uint8 is rescaled).
        out: PNG path, or ``None`` to only return the image.
        view: a :class:`Camera`; default :meth:`Camera.fit` on ``coord`` with ``image_size``.
        point_radius: splat radius in pixels; default :func:`auto_radius`.

    Returns:
        ``(H, W, 3)`` float32 image in [0, 1].
    """
    coord = np.asarray(coord, dtype=np.float64)
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255.0
    if coord.ndim != 2 or coord.shape[1] != 3 or rgb.shape != coord.shape:
        raise ValueError(f"coord and rgb must both be (N, 3), got {coord.shape} and {rgb.shape}")
    cam = view if view is not None else Camera.fit(coord, image_size=image_size)
    radius = auto_radius(len(coord), cam.image_size) if point_radius is None else point_radius
    u, v, depth = cam.project(coord)
    image, _ = splat(u, v, depth, np.clip(rgb, 0, 1), cam.image_size, radius, background)
    if out is not None:
        save_png(image, out)
    return image


def save_png(image: np.ndarray, out: str | Path) -> Path:
    """Write an ``(H, W, 3)`` float [0, 1] image as PNG (creates the parent folder)."""
    from matplotlib.image import imsave  # no pyplot: never touches the GUI backend

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    imsave(out, np.clip(image, 0, 1), format="png")
    return out


def new_figure(width: float, height: float):
    """A headless ``matplotlib.figure.Figure`` (Agg canvas, no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out: str | Path) -> Path:
    """Write a figure from :func:`new_figure` as PNG (creates the parent folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    return out


#: RGB in [0, 1] of unlabelled / ignored points (label ``-1``).
UNLABELLED_GREY = (0.72, 0.72, 0.72)


def hashed_colors(ids: np.ndarray) -> np.ndarray:
    """``(N,)`` int ids -> ``(N, 3)`` float32 RGB, a well-spread pseudo-random colour per id (``< 0`` grey)."""
    from matplotlib.colors import hsv_to_rgb

    ids = np.asarray(ids, np.int64)
    k = np.abs(ids).astype(np.float64)
    hsv = np.stack([np.mod(k * 0.6180339887, 1.0), 0.55 + 0.4 * np.mod(k * 0.7548776662, 1.0),
                    0.65 + 0.3 * np.mod(k * 0.5698402910, 1.0)], axis=1)
    out = hsv_to_rgb(hsv).astype(np.float32)
    out[ids < 0] = UNLABELLED_GREY
    return out


def class_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` float32 RGB in [0, 1]: the fixed colour of every semantic class id.

    Ids 0..19 take the ScanNet benchmark palette (``contrast3d.simulate.classes.CLASS_COLORS``, the
    colours of the simulator's previews), the next ids matplotlib's ``tab20b`` (less the one colour it
    shares with the ScanNet palette), larger ids :func:`hashed_colors`. The same id always gets the same
    colour, in every picture.
    """
    import matplotlib

    from contrast3d.simulate.classes import CLASS_COLORS

    scannet = np.asarray(CLASS_COLORS, np.float32) / 255.0
    more = np.asarray(matplotlib.colormaps["tab20b"].colors, np.float32)  # type: ignore[attr-defined]
    more = more[np.abs(more[:, None] - scannet[None]).max(axis=2).min(axis=1) > 2 / 255]
    base = np.concatenate([scannet, more])
    if num_classes <= len(base):
        return base[:num_classes].copy()
    return np.concatenate([base, hashed_colors(np.arange(len(base), num_classes))]).astype(np.float32)


def class_colors(ids: np.ndarray) -> np.ndarray:
    """``(N,)`` int class ids -> ``(N, 3)`` float32 RGB from :func:`class_palette` (``< 0``: grey)."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    out = np.empty((len(ids), 3), np.float32)
    out[:] = UNLABELLED_GREY
    if len(ids) and ids.max() >= 0:
        palette = class_palette(int(ids.max()) + 1)
        ok = ids >= 0
        out[ok] = palette[ids[ok]]
    return out


def render_layers(coord: np.ndarray, layers: list[np.ndarray], view: Camera, point_radius: int | None = None,
                  background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[list[np.ndarray], np.ndarray]:
    """Render one cloud several times with different colours from one z-buffer pass.

    Args:
        coord: ``(N, 3)`` metres.
        layers: ``(N, 3)`` float RGB in [0, 1] per picture.
        view: the camera; point_radius: splat radius (default :func:`auto_radius`).

    Returns:
        ``([(H, W, 3) float32 image per layer], (H, W) int64 index of the point seen, -1 = background)``.
    """
    coord = np.asarray(coord, dtype=np.float64)
    radius = auto_radius(len(coord), view.image_size) if point_radius is None else point_radius
    u, v, depth = view.project(coord)
    _, index = splat(u, v, depth, np.zeros((len(coord), 3), np.float32), view.image_size, radius, background)
    seen = index >= 0
    images = []
    for colors in layers:
        image = np.empty(index.shape + (3,), np.float32)
        image[:] = np.asarray(background, np.float32)
        image[seen] = np.clip(np.asarray(colors, np.float32), 0, 1)[index[seen]]
        images.append(image)
    return images, index


def colorize(values: np.ndarray, cmap: str = "jet", vmin: float | None = None, vmax: float | None = None
             ) -> tuple[np.ndarray, float, float]:
    """``(N,)`` scalars -> ``(N, 3)`` RGB with a matplotlib colour map; returns the range used too."""
    import matplotlib

    values = np.asarray(values, dtype=np.float64)
    lo = float(np.nanmin(values)) if vmin is None else vmin
    hi = float(np.nanmax(values)) if vmax is None else vmax
    t = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return matplotlib.colormaps[cmap](np.clip(t, 0, 1))[:, :3].astype(np.float32), lo, hi
