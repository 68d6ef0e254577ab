"""Datasets, augmentations, voxelisation and view generation (submodules are imported directly)."""
