"""Data-parallel training through ``torch.distributed``, started by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` for every process; when they say
more than one process, the engine joins the process group itself (NCCL on CUDA, gloo on CPU),
so ``torchrun --nproc_per_node 2 -m slimcv.cli train ...`` needs nothing else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``world_size`` 1 means plain single-process training."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, artifacts and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_context() -> DistContext:
    """The context torchrun's environment variables describe (single process without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(
        world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    )


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistContext]:
    """Joins torchrun's process group for the duration (if not joined already), then leaves.

    Args:
        device: ``cuda`` selects NCCL (one GPU per local rank); otherwise gloo.
    """
    ctx = env_context()
    created = False
    if ctx.enabled and not dist.is_initialized():
        use_cuda = resolve_device(device, ctx).type == "cuda"
        if use_cuda:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        created = True
    # No barrier on an error: the other processes may never reach it; this one exits and
    # torchrun stops the rest.
    yield ctx
    if created:
        dist.barrier()
        dist.destroy_process_group()


def resolve_device(device: str, ctx: DistContext | None = None) -> torch.device:
    """``auto`` is CUDA when available (the local rank's GPU under torchrun), else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and ctx is not None and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Sums ``values`` over all processes (unchanged when single-process)."""
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``obj`` from every process, by rank (pickled between our own processes, never from disk)."""
    if not ctx.enabled:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def average_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Averages gradients of parameters DDP does not own (an objective's adapters)."""
    if not ctx.enabled:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= ctx.world_size


def broadcast_parameters(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copies rank 0's parameters and buffers to every process."""
    if not ctx.enabled:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)
