"""Headless visual checks (PNG): feature-similarity maps, t-SNE, training curves, segmentation results
(confusion matrix, per-class IoU, prediction vs ground truth), a point renderer.

Nothing here imports ``matplotlib.pyplot``: figures are drawn on Agg canvases directly, so the
module works on servers without a display and never changes the global backend.
"""
from contrast3d.viz.curves import metric_series, plot_curves, plot_runs, read_metrics, smooth
from contrast3d.viz.predictions import save_class_iou_png, save_confusion_png, save_prediction_png
from contrast3d.viz.render import Camera, class_colors, class_palette, colorize, render_points, save_png, splat
from contrast3d.viz.similarity import (
           cosine_similarity_to,
           similarity_map,
           similarity_map_pair,
)
from contrast3d.viz.tsne import stratified_subsample, tsne_plot

__all__ = [
           "Camera",
           "class_colors",
           "class_palette",
           "colorize",
           "cosine_similarity_to",
           "metric_series",
           "plot_curves",
           "plot_runs",
           "read_metrics",
           "render_points",
           "save_class_iou_png",
           "save_confusion_png",
           "save_png",
           "save_prediction_png",
           "similarity_map",
           "similarity_map_pair",
           "smooth",
           "splat",
           "stratified_subsample",
           "tsne_plot",
]
