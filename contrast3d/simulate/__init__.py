"""Synthetic ScanNet-like indoor scenes: labelled meshes, walking RGB-D trajectories and exports.

>>> from contrast3d.simulate import generate_scene, simulate_scene
>>> scene = generate_scene(0)                      # SimScene: mesh, floor plan, objects, lights
>>> simulate_scene(0, "data/sim", n_frames=60)     # ScanNet export layout + pointcept/ folder
"""
from contrast3d.simulate.classes import CLASS_IDS, IGNORE, SCANNET20_NAMES
from contrast3d.simulate.export import export_scene, sample_surface, simulate_scene
from contrast3d.simulate.raster import Raster, rasterize
from contrast3d.simulate.render import Frame, Renderer, intrinsics
from contrast3d.simulate.scene import SimScene, generate_scene
from contrast3d.simulate.sensor import DepthNoise, noisy_depth
from contrast3d.simulate.trajectory import camera_trajectory

__all__ = ["CLASS_IDS", "IGNORE", "SCANNET20_NAMES", "DepthNoise", "Frame", "Raster", "Renderer", "SimScene",
           "camera_trajectory", "export_scene", "generate_scene", "intrinsics", "noisy_depth", "rasterize",
           "sample_surface", "simulate_scene"]
