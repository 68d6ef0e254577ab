"""Headless visual checks (PNG): feature-similarity maps, t-SNE, training curves, a point renderer.

Nothing here imports ``matplotlib.pyplot``: figures are drawn on Agg canvases directly, so the
module works on servers without a display and never changes the global backend.
"""
from contrast3d.viz.curves import metric_series, plot_curves, read_metrics, smooth
from contrast3d.viz.render import Camera, colorize, render_points, save_png, splat
from contrast3d.viz.similarity import (
           cosine_similarity_to,
           similarity_map,
           similarity_map_pair,
)
from contrast3d.viz.tsne import stratified_subsample, tsne_plot

__all__ = [
           "Camera",
           "colorize",
           "cosine_similarity_to",
           "metric_series",
           "plot_curves",
           "read_metrics",
           "render_points",
           "save_png",
           "similarity_map",
           "similarity_map_pair",
           "smooth",
           "splat",
           "stratified_subsample",
           "tsne_plot",
]
