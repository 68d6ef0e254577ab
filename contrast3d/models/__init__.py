"""Backbones: the sparse residual U-Net (Pointcept ``SpUNetBase`` compatible), 3D and 4D."""
from contrast3d.models.blocks import BasicBlock, SparseOps, get_sparse_ops
from contrast3d.models.presets import SPUNET_PRESETS, SpUNetPreset, create_spunet
from contrast3d.models.spunet import SpUNet

__all__ = ["SpUNet", "SpUNetPreset", "SPUNET_PRESETS", "create_spunet", "BasicBlock", "SparseOps",
           "get_sparse_ops"]
