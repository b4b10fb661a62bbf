"""Building blocks for the model fixes: opaque units, barriers and head bookkeeping.

Torch-Pruning builds its dependency graph from the autograd graph of one forward pass. Where a
module computes something the graph cannot express (a channel shuffle, window attention with
relative position biases, a ghost module that pairs channels), slimcv hides the module's inside
during that one pass and describes the module to Torch-Pruning with a pruner of its own:

* :func:`opaque_forward` makes a module one node of the graph (input -> output, nothing in
  between), so Torch-Pruning only sees what the module's pruner declares.
* :class:`Barrier` is a parameter-free node that no channel group may cross; any group that
  reaches it stays whole.
* :func:`split_heads` reads a set of removed channels as whole heads or as the same head
  dimensions in every head, the two removals that keep multi-head attention well defined.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from slimcv.errors import SlimcvError


class _Opaque(torch.autograd.Function):
    """Runs ``fn`` as one autograd node: the output's grad_fn points straight at the input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        ctx.fn = fn
        ctx.save_for_backward(x)
        # A view of the input (a slice, an identity) would make later in-place ops illegal.
        return fn(x).clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad_x,) = torch.autograd.grad(ctx.fn(leaf), leaf, grad)
        return grad_x, None


@contextlib.contextmanager
def opaque_forward(modules: Sequence[nn.Module]) -> Iterator[None]:
    """While active, each module's forward is a single autograd node.

    The module still computes its real output (later layers see real values), but the ops
    inside leave no trace for Torch-Pruning to misread. The override is an instance attribute,
    removed on exit, so other instances of the class are unaffected.
    """
    with instance_forwards(
        [(module, functools.partial(_opaque_call, module.forward)) for module in modules]
    ):
        yield


def _opaque_call(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Any:
    return _Opaque.apply(x, forward)


@contextlib.contextmanager
def instance_forwards(
    overrides: Sequence[tuple[nn.Module, Callable[..., torch.Tensor]]],
) -> Iterator[None]:
    """Sets ``module.forward`` per instance while active; whatever was there comes back."""
    previous = [(module, vars(module).get("forward")) for module, _ in overrides]
    for module, forward in overrides:
        module.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module, forward in reversed(previous):
            if forward is None:
                vars(module).pop("forward", None)
            else:
                module.forward = forward  # type: ignore[method-assign]


class Barrier(nn.Module):
    """A parameter-free graph node that channel groups must not cross.

    Inserted while tracing where channels are permuted in a way no index mapping can follow
    (ShuffleNet's channel shuffle). Its forward applies ``fn`` so that values stay real.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn
        self.channels: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Torch-Pruning infers split and concat sizes around the barrier from its width.
        self.channels = int(x.shape[1])
        return _Opaque.apply(x, self.fn)


#: (inner layer, Torch-Pruning pruning function, indices in that layer, positions in the unit's
#: indices): how one channel of an opaque unit maps to weights importance criteria can read.
InnerItem = tuple[nn.Module, Callable[..., Any], list[int], list[int]]


class UnitPruner(tp.pruner.BasePruningFunc):
    """Pruner of an opaque unit; it also shows importance criteria the weights inside.

    Torch-Pruning's criteria score only layers they know (conv, linear, norms). An opaque unit
    is none of these, so without :meth:`inner_items` its weights would not count, and a group
    made only of units (a ghost module feeding another) could not be ranked at all.
    """

    def inner_items(self, layer: nn.Module, out: bool, idxs: list[int]) -> list[InnerItem]:
        """The inner layers and indices that removing ``idxs`` (outputs if ``out``) touches.

        Each item should span all of ``idxs`` (repeat an index where two channels share a
        weight): Torch-Pruning sizes a group's scores by the first layer it scores.
        """
        return []


class BarrierPruner(tp.pruner.BasePruningFunc):
    """Declares a :class:`Barrier` to Torch-Pruning; pruning through it is a bug."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise SlimcvError(f"internal error: a channel group crossed a barrier ({len(idxs)} idxs)")

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int | None:
        return layer.channels

    def get_in_channels(self, layer: nn.Module) -> int | None:
        return layer.channels


def keep_index(size: int, removed: Sequence[int]) -> torch.Tensor:
    """Sorted indices of ``range(size)`` that are not in ``removed``."""
    drop = set(int(i) for i in removed)
    return torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long)


def select_(owner: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    """Replaces parameter (or buffer) ``owner.name`` by its slice ``keep`` along ``dim``."""
    tensor = getattr(owner, name)
    if tensor is None:
        return
    data = torch.index_select(tensor.data, dim, keep.to(tensor.device))
    if isinstance(tensor, nn.Parameter):
        new = nn.Parameter(data, requires_grad=tensor.requires_grad)
        if tensor.grad is not None:
            new.grad = torch.index_select(tensor.grad, dim, keep.to(tensor.device))
        setattr(owner, name, new)
    else:
        setattr(owner, name, data)


def split_heads(removed: Sequence[int], num_heads: int, head_dim: int) -> tuple[list[int], int]:
    """Reads removed channels of an attention width ``num_heads * head_dim``.

    Returns:
        The heads removed whole, and the number of dimensions removed from every remaining
        head. Exactly one of the two is non-trivial.

    Raises:
        SlimcvError: the removal is neither whole heads nor the same count in every head;
            that would leave heads of different sizes, which multi-head attention cannot run.
    """
    counts = [0] * num_heads
    for idx in removed:
        counts[int(idx) // head_dim] += 1
    if all(c == counts[0] for c in counts) and counts[0] < head_dim:
        return [], counts[0]
    if all(c in (0, head_dim) for c in counts):
        return [h for h, c in enumerate(counts) if c == head_dim], 0
    raise SlimcvError(
        f"internal error: attention channels removed unevenly across heads ({counts})"
    )
