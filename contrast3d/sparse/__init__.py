"""Sparse convolution with spconv-compatible names (pure PyTorch backend).

>>> from contrast3d.sparse import SparseConvTensor, SubMConv3d, SparseSequential
"""
from contrast3d.sparse.backend import backend_for, resolve_backend
from contrast3d.sparse.functional import ImplicitGemmFunction, SparseConvFunction, select_impl, sparse_conv
from contrast3d.sparse.kernel_map import (
                                       IndiceData,
                                       KernelMap,
                                       build_conv_map,
                                       build_subm_map,
)
from contrast3d.sparse.modules import (
                                       SparseConv3d,
                                       SparseConv4d,
                                       SparseConvolution,
                                       SparseInverseConv3d,
                                       SparseInverseConv4d,
                                       SparseModule,
                                       SparseSequential,
                                       SubMConv3d,
                                       SubMConv4d,
)
from contrast3d.sparse.tensor import SparseConvTensor

__all__ = [
                                       "ImplicitGemmFunction",
                                       "IndiceData",
                                       "KernelMap",
                                       "SparseConv3d",
                                       "SparseConv4d",
                                       "SparseConvFunction",
                                       "SparseConvTensor",
                                       "SparseConvolution",
                                       "SparseInverseConv3d",
                                       "SparseInverseConv4d",
                                       "SparseModule",
                                       "SparseSequential",
                                       "SubMConv3d",
                                       "SubMConv4d",
                                       "backend_for",
                                       "build_conv_map",
                                       "build_subm_map",
                                       "resolve_backend",
                                       "select_impl",
                                       "sparse_conv",
]
