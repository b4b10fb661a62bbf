"""One forward pass, watched op by op: which module ran each aten op, and how much memory lived.

Module hooks keep a stack of the modules currently inside ``forward``; a
:class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every aten op and charges its MACs
and element-wise work to the top of that stack, i.e. the innermost module that ran it. That is
what makes per-module MACs add up exactly to the total even when a parent calls functional ops
(``nn.MultiheadAttention`` uses its ``out_proj`` weights without calling ``out_proj``).

The same mode tracks activation memory: every tensor storage an op creates is counted while it
is alive (a weak reference tells when Python frees it), so the peak reflects what eager PyTorch
really keeps around, including tensors a module holds on to for a skip connection.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from slimcv.analysis._ops import MAC_FORMULAS, iter_tensors, op_macs, op_other_ops


@dataclass
class ModuleStats:
    """What one module did during the traced forward, accumulated over all of its calls."""

    name: str
    type: str
    first_call: int = -1
    calls: int = 0
    macs: int = 0
    other_ops: int = 0
    output_shape: list[int] = field(default_factory=list)
    activation_bytes: int = 0


class OpTracer(TorchDispatchMode):
    """Charges each aten op to the innermost running module and tracks live activation bytes.

    Args:
        root: Stats that receive ops run while no hooked module is inside ``forward``.
        excluded: Tensors whose storages are not activations (parameters, buffers, the input);
            ops that return views of them or write into them allocate nothing new.
    """

    def __init__(self, root: ModuleStats, excluded: Iterable[torch.Tensor]) -> None:
        super().__init__()
        self.root = root
        self.stack: list[ModuleStats] = []
        self.live_bytes = 0
        self.peak_bytes = 0
        self.failed_formulas: set[str] = set()
        # Strong references keep the excluded storages' ids from being reused while we trace.
        self._excluded = {id(st): st for st in map(_storage_of, excluded) if st is not None}
        self._live: dict[int, weakref.ref[torch.UntypedStorage]] = {}

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func._overloadpacket not in MAC_FORMULAS:
            # Composite ops (aten.linear under inference_mode) reach us undecomposed; count the
            # mm/addmm they decompose into instead of calling them element-wise work.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        owner = self.stack[-1] if self.stack else self.root
        out = func(*args, **kwargs)
        try:
            macs = op_macs(func, args, kwargs, out)
        except Exception:  # a formula that cannot read these shapes must not abort profiling
            self.failed_formulas.add(str(func))
            macs = 0
        if macs is None:
            owner.other_ops += op_other_ops(func, out)
        else:
            owner.macs += macs
        for tensor in iter_tensors(out):
            self._track(tensor)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = _storage_of(tensor)
        if storage is None:
            return
        key = id(storage)
        if key in self._excluded:
            return
        known = self._live.get(key)
        if known is not None and known() is storage:
            return  # a view or an in-place result: no new memory
        nbytes = storage.nbytes()
        self._live[key] = weakref.ref(storage, partial(self._on_free, key, nbytes))
        self.live_bytes += nbytes

    def _on_free(self, key: int, nbytes: int, ref: weakref.ref[torch.UntypedStorage]) -> None:
        if self._live.get(key) is ref:
            del self._live[key]
            self.live_bytes -= nbytes

    def forget(self) -> None:
        """Drop the weak references so tensors freed after profiling no longer call back."""
        self._live.clear()
        self._excluded.clear()


def _storage_of(tensor: torch.Tensor) -> torch.UntypedStorage | None:
    if tensor.layout is not torch.strided:
        return None  # sparse and other layouts have no single storage to follow
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError, ValueError):  # no real storage (lazy, subclass)
        return None


@contextmanager
def module_hooks(
    module: torch.nn.Module, tracer: OpTracer, stats: dict[int, ModuleStats]
) -> Iterator[None]:
    """Keep ``tracer.stack`` in step with the modules inside ``forward`` while the block runs.

    Args:
        module: Root module; every submodule gets a pre- and a post-forward hook.
        tracer: The tracer whose stack the hooks push and pop.
        stats: ``id(submodule) -> ModuleStats`` for every submodule, filled in by the hooks.

    The hooks are removed on exit, also when the forward pass raised.
    """
    call_counter = 0

    def pre_hook(mod: torch.nn.Module, args: Any) -> None:
        nonlocal call_counter
        entry = stats[id(mod)]
        if entry.first_call < 0:
            entry.first_call = call_counter
            call_counter += 1
        entry.calls += 1
        tracer.stack.append(entry)

    def post_hook(mod: torch.nn.Module, args: Any, output: Any) -> None:
        entry = stats[id(mod)]
        tensors = list(iter_tensors(output))
        if entry.calls == 1 and tensors:
            entry.output_shape = list(tensors[0].shape)
            entry.activation_bytes = sum(t.numel() * t.element_size() for t in tensors)
        # Pop down to this module: robust to a child whose post-hook did not run.
        while tracer.stack:
            if tracer.stack.pop() is entry:
                break

    handles = []
    try:
        for mod in module.modules():
            handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(post_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
