"""Process-group set-up for ``torchrun`` and the few collectives the trainer needs.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``; :func:`init_distributed` reads them and joins the group (``gloo`` on CPU,
``nccl`` on CUDA). Without them it is a single process and every helper is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from contrast3d.errors import DataError


@dataclass
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available; ``cuda`` -> this process's local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DataError("--device cuda", "CUDA is not available on this machine (use --device cpu or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group described by the ``torchrun`` environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
            ctx.initialized_here = True
    return ctx


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def wrap_ddp(model: nn.Module, ctx: DistContext, *, find_unused_parameters: bool = False,
             sync_bn: bool = False, exclude: list[nn.Module] | None = None) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several processes.

    SyncBatchNorm only on CUDA (``sync_bn``) and never inside the ``exclude`` modules (frozen
    networks keep their own, fixed statistics); on CPU each process keeps its own batch statistics.
    """
    if not ctx.distributed:
        return model
    if sync_bn and ctx.device.type == "cuda":
        model = _convert_sync_bn(model, {id(m) for m in exclude or []})
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


def _convert_sync_bn(module: nn.Module, skip: set[int]) -> nn.Module:
    """``SyncBatchNorm.convert_sync_batchnorm`` that leaves the sub-trees in ``skip`` alone."""
    if id(module) in skip:
        return module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        new = _convert_sync_bn(child, skip)
        if new is not child:
            setattr(module, name, new)
    return module


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Mean of each scalar over all processes (same keys on every rank)."""
    if not ctx.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t)
    t /= ctx.world_size
    return dict(zip(keys, t.tolist()))


def all_true(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` holds on every process."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=_comm_device(ctx))
    dist.all_reduce(t)
    return bool(t.item() == 0)


def gather_objects(obj: object, ctx: DistContext) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not ctx.distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum_(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all processes in place (through the backend's device) and return it."""
    if not ctx.distributed:
        return t
    comm = _comm_device(ctx)
    if t.device == comm:
        dist.all_reduce(t)
        return t
    buf = t.to(comm)
    dist.all_reduce(buf)
    t.copy_(buf)
    return t


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
