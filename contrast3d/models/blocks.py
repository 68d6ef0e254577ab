"""Building blocks of the sparse U-Net: backend lookup, norm, residual block.

The blocks are written against the spconv 2.x module names (``SubMConv3d``, ``SparseConv3d``,
``SparseInverseConv3d``, ``SparseSequential``, ``SparseConvTensor``), so the same code runs on
this project's pure-torch backend (:mod:`contrast3d.sparse`, the default) or on
``spconv.pytorch`` when it is installed (used by the benchmark for a like-for-like comparison).
Both lay convolution weights out as ``[C_out, k, ..., k, C_in]``; state dicts move between them
unchanged.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

#: BatchNorm settings of Pointcept's SpUNet (``eps=1e-3, momentum=0.01``).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class SparseOps:
    """The sparse-conv classes of one backend for one dimensionality.

    Attributes:
        name: ``"torch"`` (:mod:`contrast3d.sparse`) or ``"spconv"`` (``spconv.pytorch``).
        ndim: number of spatial dimensions (3, or 4 for space-time).
        module_name: import path of the backend module (kept as a string so models holding a
            ``SparseOps`` stay deep-copyable and picklable).
    """

    name: str
    ndim: int
    module_name: str

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def _cls(self, stem: str) -> Any:
        cls_name = f"{stem}{self.ndim}d"
        cls = getattr(self.module, cls_name, None)
        if cls is None:
            raise NotImplementedError(f"sparse backend '{self.name}' has no {cls_name}")
        return cls

    @property
    def subm(self) -> Any:
        """Submanifold conv class (``SubMConv{ndim}d``)."""
        return self._cls("SubMConv")

    @property
    def conv(self) -> Any:
        """Strided sparse conv class (``SparseConv{ndim}d``)."""
        return self._cls("SparseConv")

    @property
    def inverse(self) -> Any:
        """Inverse conv class (``SparseInverseConv{ndim}d``)."""
        return self._cls("SparseInverseConv")

    @property
    def sequential(self) -> Any:
        return self.module.SparseSequential

    @property
    def tensor(self) -> Any:
        return self.module.SparseConvTensor


def get_sparse_ops(backend: str | ModuleType | None = None, ndim: int = 3) -> SparseOps:
    """Resolve a sparse-conv backend.

    Args:
        backend: ``None``/``"torch"`` for :mod:`contrast3d.sparse`, ``"spconv"`` for
            ``spconv.pytorch``, or an already imported module exposing the spconv names.
        ndim: 3 (x, y, z) or 4 (x, y, z, t).
    """
    if ndim not in (3, 4):
        raise ValueError(f"ndim must be 3 or 4, got {ndim}")
    if backend is None or backend == "torch":
        ops = SparseOps("torch", ndim, "contrast3d.sparse")
    elif backend == "spconv":
        ops = SparseOps("spconv", ndim, "spconv.pytorch")
    elif isinstance(backend, ModuleType):
        ops = SparseOps(backend.__name__, ndim, backend.__name__)
    else:
        raise ValueError(f"unknown sparse backend {backend!r} (use 'torch', 'spconv' or a module)")
    _ = ops.module  # import now so a missing backend fails at construction
    return ops


class PointwiseConv(nn.Module):
    """Kernel-volume-1 SubM conv with spconv 2.x's exact arithmetic (checkpoint compatibility).

    spconv 2.x computes every 1x1 convolution as ``features @ weight.view(C_in, C_out)`` on a
    weight stored as ``[C_out, 1, ..., 1, C_in]`` (a reshape, not a transpose: spconv issues
    #450/#772). Pointcept checkpoints (``proj.0``, ``final``) were trained under that rule, so
    this layer applies it too; loading such weights here then gives spconv's outputs.

    Shapes: features ``(N, C_in)`` -> ``(N, C_out)`` on the same indices; ``weight``
    ``[C_out, 1 (x ndim), C_in]``, ``bias`` ``(C_out,)`` or ``None``.
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.ndim = in_channels, out_channels, ndim
        self.weight = nn.Parameter(torch.empty(out_channels, *([1] * ndim), in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Any) -> Any:
        """A ``SparseConvTensor`` or a bare ``(N, C_in)`` feature matrix (what a backend's
        ``SparseSequential`` hands to modules it does not know), returned in kind."""
        feats = x if isinstance(x, torch.Tensor) else x.features
        out = torch.mm(feats, self.weight.reshape(self.in_channels, self.out_channels))
        if self.bias is not None:
            out = out + self.bias
        return out if isinstance(x, torch.Tensor) else x.replace_feature(out)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, ndim={self.ndim}, bias={self.bias is not None}"


def pointwise_conv(ops: SparseOps, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    """A 1^D SubM conv that computes what spconv computes: spconv's own, else :class:`PointwiseConv`."""
    if ops.name == "spconv":
        return ops.subm(in_channels, out_channels, kernel_size=1, padding=1 if bias else 0, bias=bias)
    return PointwiseConv(in_channels, out_channels, ops.ndim, bias=bias)


def make_norm(channels: int) -> nn.BatchNorm1d:
    """``BatchNorm1d(channels, eps=1e-3, momentum=0.01)`` acting on ``(N, channels)`` features."""
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_bn_momentum(module: nn.Module, momentum: float | None) -> None:
    """Set the running-statistics momentum of every BatchNorm in ``module`` (``None``: leave them)."""
    if momentum is not None:
        for m in batch_norms(module):
            m.momentum = momentum


def block_sequence(named: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """Residual blocks applied in turn to a ``SparseConvTensor``, named ``block0``, ``block1`` ...

    A plain ``nn.Sequential`` (not the backend's ``SparseSequential``, which would hand
    non-backend modules only the feature matrix); state-dict names are the same either way.
    """
    return nn.Sequential(OrderedDict(named))


class BasicBlock(nn.Module):
    """Residual block ``relu(bn2(conv2(relu(bn1(conv1(x))))) + proj(x))`` of two 3^D SubM convs.

    State-dict names follow Pointcept's ``BasicBlock``: ``conv1``, ``bn1``, ``conv2``, ``bn2``
    and, only when ``in_channels != out_channels``, ``proj.0`` (1^D SubM conv, no bias) and
    ``proj.1`` (BatchNorm). ``proj.0`` follows spconv's 1x1 arithmetic (:class:`PointwiseConv`).

    Args:
        in_channels: feature width of the input ``C_in``.
        out_channels: feature width of the output ``C_out``.
        ops: backend classes (see :func:`get_sparse_ops`).
        indice_key: kernel-map cache key shared by ``conv1`` and ``conv2``.

    Shapes: ``SparseConvTensor`` with ``(N, C_in)`` features -> same indices, ``(N, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, ops: SparseOps,
                 indice_key: str | None = None) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.proj = ops.sequential(nn.Identity())
        else:
            self.proj = ops.sequential(pointwise_conv(ops, in_channels, out_channels, bias=False),
                                       make_norm(out_channels))
        self.conv1 = ops.subm(in_channels, out_channels, kernel_size=3, padding=1, bias=False,
                              indice_key=indice_key)
        self.bn1 = make_norm(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = ops.subm(out_channels, out_channels, kernel_size=3, padding=1, bias=False,
                              indice_key=indice_key)
        self.bn2 = make_norm(out_channels)

    def forward(self, x: Any) -> Any:
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        feat = self.bn2(out.features) + self.proj(x).features
        return out.replace_feature(self.relu(feat))


def init_weights(module: nn.Module, ops: SparseOps) -> None:
    """Pointcept's initialisation: SubM convs ~ truncated N(0, 0.02) with zero bias, BatchNorm
    weight 1 / bias 0; strided and inverse convs keep their backend's default init."""
    if isinstance(module, (ops.subm, PointwiseConv)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        bias = getattr(module, "bias", None)
        if bias is not None:
            nn.init.zeros_(bias)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def sparse_input_is_valid(features: torch.Tensor, indices: torch.Tensor, ndim: int) -> None:
    """Raise ``ValueError`` unless ``indices`` is ``(N, 1 + ndim)`` and ``features`` is ``(N, C)``."""
    if indices.ndim != 2 or indices.shape[1] != 1 + ndim:
        raise ValueError(f"indices must have shape (N, {1 + ndim}), got {tuple(indices.shape)}")
    if features.ndim != 2 or features.shape[0] != indices.shape[0]:
        raise ValueError(f"features must have shape ({indices.shape[0]}, C), got {tuple(features.shape)}")
