"""spconv-compatible sparse convolution modules (pure PyTorch; one implementation for any D).

Weights are ``nn.Parameter`` s named ``weight`` ``[C_out, k_1, ..., k_D, C_in]`` and ``bias``
``(C_out,)``, as in spconv 2.x, so state dicts are interchangeable. Semantics:

* ``SubMConv`` : cross-correlation evaluated at the input sites only (output sites == input
  sites, same order); the kernel is centred (odd sizes only).
* ``SparseConv``: output sites are all ``o`` with an input at ``o * s - p + d * k``; output
  spatial shape ``floor((S + 2p - d (k - 1) - 1) / s) + 1``; equals dense ``conv3d`` with the
  weight permuted to ``[C_out, C_in, k...]``, restricted to the active output sites.
* ``SparseInverseConv``: the transpose of the strided conv registered under the same
  ``indice_key``; output sites = that conv's input sites (equal to ``conv_transpose3d`` with
  weight ``[C_in, C_out, k...]`` restricted to those sites).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from contrast3d.sparse.functional import sparse_conv
from contrast3d.sparse.kernel_map import IndiceData, build_conv_map, build_subm_map
from contrast3d.sparse.tensor import SparseConvTensor


def _expand(ndim: int, value: int | Sequence[int], name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * ndim
    value = [int(v) for v in value]
    if len(value) != ndim:
        raise ValueError(f"{name} must be an int or {ndim} ints, got {value}")
    return value


class SparseModule(nn.Module):
    """Base class of modules that take and return a :class:`SparseConvTensor`."""


class SparseConvolution(SparseModule):
    """Generic D-dimensional sparse convolution (SubM, strided, or inverse).

    Args:
        ndim: number of spatial dimensions ``D``.
        in_channels, out_channels: feature widths.
        kernel_size, stride, padding, dilation: int or ``D`` ints (voxels).
        bias: add a learnable ``(C_out,)`` bias.
        subm: submanifold convolution.
        inverse: inverse of the conv registered under ``indice_key``.
        indice_key: name under which the kernel map is cached / looked up.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int,
                 kernel_size: int | Sequence[int] = 3, stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 bias: bool = True, subm: bool = False, inverse: bool = False,
                 indice_key: str | None = None) -> None:
        super().__init__()
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _expand(ndim, kernel_size, "kernel_size")
        self.stride = _expand(ndim, stride, "stride")
        self.padding = _expand(ndim, padding, "padding")
        self.dilation = _expand(ndim, dilation, "dilation")
        self.subm = subm
        self.inverse = inverse
        self.indice_key = indice_key
        if subm and any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"SubM convolution needs odd kernel sizes (as in spconv), got {self.kernel_size}")
        if inverse and indice_key is None:
            raise ValueError("an inverse convolution needs the indice_key of the conv it inverts")
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan_in = ``C_in * prod(k)`` (nn.Conv default)."""
        fan_in = self.in_channels * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if not self.subm and not self.inverse:
            s += f", stride={self.stride}, padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.indice_key is not None:
            s += f", indice_key={self.indice_key!r}"
        return s + ("" if self.bias is not None else ", bias=False")

    def _geometry_matches(self, data: IndiceData) -> bool:
        return (data.kernel_size == self.kernel_size and data.dilation == self.dilation
                and (data.subm or (data.stride == self.stride and data.padding == self.padding)))

    def _indice_data(self, x: SparseConvTensor) -> tuple[IndiceData, bool]:
        """The map for ``x`` (cached or new) and whether it is new."""
        cached = x.find_indice_pair(self.indice_key)
        if self.inverse:
            if cached is None or cached.subm:
                raise KeyError(f"inverse conv: no strided conv registered under indice_key "
                               f"{self.indice_key!r} (have {sorted(x.indice_dict)})")
            if cached.kernel_size != self.kernel_size:
                raise ValueError(f"inverse conv kernel {self.kernel_size} differs from the conv it inverts "
                                 f"({cached.kernel_size}, indice_key {self.indice_key!r})")
            if cached.out_indices.shape[0] != x.indices.shape[0]:
                raise ValueError(f"inverse conv input has {x.indices.shape[0]} sites, the conv under "
                                 f"indice_key {self.indice_key!r} produced {cached.out_indices.shape[0]}")
            return cached, False
        if cached is not None and cached.subm == self.subm and self._geometry_matches(cached) \
                and cached.in_indices.shape[0] == x.indices.shape[0]:
            return cached, False
        if cached is not None and cached.subm and self.subm:
            raise ValueError(f"indice_key {self.indice_key!r} holds a SubM map of another geometry or "
                             f"site count ({cached.kernel_size}, {cached.in_indices.shape[0]} sites)")
        if self.subm:
            kmap = build_subm_map(x.indices, x.spatial_shape, x.batch_size, self.kernel_size, self.dilation)
            data = IndiceData(x.indices, x.indices, x.spatial_shape, x.spatial_shape, self.kernel_size,
                              self.stride, self.padding, self.dilation, True, kmap)
        else:
            kmap, out_indices, out_shape = build_conv_map(x.indices, x.spatial_shape, x.batch_size,
                                                          self.kernel_size, self.stride, self.padding,
                                                          self.dilation)
            data = IndiceData(x.indices, out_indices, x.spatial_shape, out_shape, self.kernel_size,
                              self.stride, self.padding, self.dilation, False, kmap)
        return data, True

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        if not isinstance(x, SparseConvTensor):
            raise TypeError(f"{type(self).__name__} expects a SparseConvTensor, got {type(x).__name__}")
        if x.ndim != self.ndim:
            raise ValueError(f"{type(self).__name__} is {self.ndim}-D but the input is {x.ndim}-D")
        if x.features.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} channels, got {x.features.shape[1]}")
        data, new = self._indice_data(x)
        indice_dict = x.indice_dict
        if new and self.indice_key is not None:
            indice_dict = dict(indice_dict)
            indice_dict[self.indice_key] = data
        if self.inverse:
            kmap = data.kmap.transposed()
            out_indices, out_shape = data.in_indices, data.in_spatial_shape
        else:
            kmap = data.kmap
            out_indices, out_shape = data.out_indices, data.out_spatial_shape
        feats = sparse_conv(x.features, self.weight, kmap, self.bias)
        return SparseConvTensor(feats, out_indices, out_shape, x.batch_size, indice_dict)


def _make(ndim: int, subm: bool, inverse: bool, name: str, doc: str) -> type:
    __init__: Callable[..., None]  # the two variants below take different arguments
    if inverse:
        def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                     indice_key: str | None = None, bias: bool = True) -> None:
            SparseConvolution.__init__(self, ndim, in_channels, out_channels, kernel_size, bias=bias,
                                       inverse=True, indice_key=indice_key)
    else:
        def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     dilation: int | Sequence[int] = 1, bias: bool = True,
                     indice_key: str | None = None) -> None:
            SparseConvolution.__init__(self, ndim, in_channels, out_channels, kernel_size,
                                       stride=stride, padding=padding, dilation=dilation, bias=bias,
                                       subm=subm, indice_key=indice_key)
    return type(name, (SparseConvolution,), {"__init__": __init__, "__doc__": doc})


SubMConv3d = _make(3, True, False, "SubMConv3d", "3-D submanifold convolution (spconv ``SubMConv3d``).")
SparseConv3d = _make(3, False, False, "SparseConv3d", "3-D sparse (strided) convolution (spconv ``SparseConv3d``).")
SparseInverseConv3d = _make(3, False, True, "SparseInverseConv3d",
                            "Inverse of the 3-D strided conv with the same ``indice_key``.")
SubMConv4d = _make(4, True, False, "SubMConv4d", "4-D submanifold convolution.")
SparseConv4d = _make(4, False, False, "SparseConv4d", "4-D sparse (strided) convolution.")
SparseInverseConv4d = _make(4, False, True, "SparseInverseConv4d",
                            "Inverse of the 4-D strided conv with the same ``indice_key``.")


class SparseSequential(SparseModule):
    """``nn.Sequential`` for sparse tensors: sparse modules get the tensor, other modules
    (``BatchNorm1d``, ``ReLU``, ``Linear`` ...) act on ``.features`` (as in spconv).

    Normalisation layers are skipped on an empty tensor (0 sites) so their running
    statistics stay finite.
    """

    def __init__(self, *args: nn.Module, **kwargs: nn.Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)
        for name, module in kwargs.items():
            self.add_module(name, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, idx: int) -> nn.Module:
        mods = list(self._modules.values())
        mod = mods[idx]
        assert mod is not None  # only nn.Module instances are ever added
        return mod

    def add(self, module: nn.Module, name: str | None = None) -> None:
        self.add_module(str(len(self._modules)) if name is None else name, module)

    def forward(self, x):
        for module in self._modules.values():
            if isinstance(module, SparseModule):
                x = module(x)
            elif isinstance(x, SparseConvTensor):
                if x.features.shape[0] == 0 and isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
                    continue
                x = x.replace_feature(module(x.features))
            else:
                x = module(x)
        return x
