"""Model profile: parameters, MACs per layer, weight size and activation memory at batch 1.

These are the figures every later step is judged against (a pruned model "has 40% fewer MACs"),
so they follow the published convention: MACs of convolutions, linear layers and attention
matmuls only, counted from the aten ops one real forward pass runs. Counting ops rather than
modules catches work done functionally inside a parent's ``forward`` (attention), and counting
one real pass means the figures describe the model as it runs, not as its ``__init__`` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from slimcv.analysis._tracer import ModuleStats, OpTracer, module_hooks
from slimcv.errors import InputShapeError

_MACS_NOTE = (
    "macs: multiply-accumulates of convolution, matmul/linear and attention aten ops at batch 1 "
    "(torch.utils.flop_counter formulas, FLOPs/2), charged to the innermost module that ran them"
)
_OTHER_OPS_NOTE = (
    "other_ops is an estimate: one op per element of the first output of every other aten op "
    "that computes (normalisation, activations, pooling, adds, softmax); views, copies and "
    "padding count 0"
)
_PEAK_NOTE = (
    "peak_activation_bytes is an estimate: the maximum, over the aten ops of one eager forward "
    "pass, of the bytes of live tensor storages those ops created (tracked with a "
    "TorchDispatchMode and freed when Python frees them), excluding parameters, buffers and the "
    "input; kernel workspaces and allocator caching are not included"
)
_SIZE_NOTE = (
    "size_bytes: parameters and floating-point buffers at 4 bytes per element (FP32), "
    "integer buffers at their real element size; non-persistent buffers excluded"
)


@dataclass
class LayerProfile:
    """One module's share of the work, accumulated over all its calls in one forward pass.

    Layers are the leaf modules that ran, plus any module that owns parameters directly or ran
    ops itself (a residual add in a block's ``forward``, attention in ``nn.MultiheadAttention``),
    so that per-layer params, MACs and other_ops each add up exactly to the model's totals.

    Attributes:
        name: Qualified name, resolvable with ``model.get_submodule(name)`` ("" is the root).
        type: Class name of the module.
        params: Parameters owned directly by this module (a shared one counts at its first owner).
        macs: Multiply-accumulates of conv / linear / matmul / attention ops run inside this
            module and not inside one of its submodules, at batch 1.
        other_ops: Estimated element-wise and other ops, kept apart from MACs.
        output_shape: Shape of the first tensor output of its first call; [] if it never ran.
        activation_bytes: Bytes of all tensor outputs of its first call, in the profiled dtype.
        calls: How many times its ``forward`` ran (0 for modules only used functionally).
    """

    name: str
    type: str
    params: int
    macs: int
    other_ops: int
    output_shape: list[int]
    activation_bytes: int
    calls: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict with the attribute names as keys."""
        return asdict(self)


@dataclass
class ProfileResult:
    """Complexity and memory figures of one model at one input size, batch 1.

    Attributes:
        params: Number of parameters (shared parameters counted once).
        macs: Total multiply-accumulates (published convention: conv, linear, attention).
        other_ops: Estimated element-wise and other ops, reported apart from MACs.
        size_bytes: FP32 size of parameters and persistent buffers, i.e. what the weights cost.
        peak_activation_bytes: Estimated peak of live activation memory during one forward pass;
            ``notes`` says how it is estimated.
        input_shape: The profiled input shape, e.g. [1, 3, 224, 224].
        layers: Per-module figures in the order modules first ran; modules that never ran but
            own parameters come last.
        notes: How each figure was obtained, including which are estimates.
    """

    params: int
    macs: int
    other_ops: int
    size_bytes: int
    peak_activation_bytes: int
    input_shape: list[int]
    layers: list[LayerProfile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict with stable keys: the attribute names, layers as dicts."""
        return {
            "params": self.params,
            "macs": self.macs,
            "other_ops": self.other_ops,
            "size_bytes": self.size_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
            "notes": list(self.notes),
        }


def profile_model(
    module: torch.nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)
) -> ProfileResult:
    """Profile a model with one batch-1 forward pass in eval mode under ``torch.no_grad()``.

    The input is random data in the dtype and on the device of the model's first floating-point
    parameter (FP32 on CPU if it has none). The module's train/eval flags are restored and all
    hooks removed afterwards, also when the forward pass fails.

    Args:
        module: The model to profile; it is not modified.
        input_shape: Shape of the single input tensor; the batch dimension must be 1 because all
            figures are per image.

    Returns:
        Totals and per-layer figures; see :class:`ProfileResult`.

    Raises:
        InputShapeError: The shape is malformed, or the model cannot take an input of that size.
    """
    shape = _check_input_shape(input_shape)
    dtype, device = _input_dtype_device(module)
    stats = {
        id(mod): ModuleStats(name=name, type=type(mod).__name__)
        for name, mod in module.named_modules()
    }
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    excluded = [*module.parameters(), *module.buffers(), example]
    tracer = OpTracer(root=stats[id(module)], excluded=excluded)
    training_flags = [(mod, mod.training) for mod in module.modules()]
    try:
        module.eval()
        with torch.no_grad(), module_hooks(module, tracer, stats), tracer:
            module(example)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise InputShapeError(_shape_error_message(shape, exc)) from exc
    finally:
        for mod, flag in training_flags:
            mod.training = flag
        tracer.forget()

    layers = _layers(module, stats)
    notes = [
        _MACS_NOTE,
        _OTHER_OPS_NOTE,
        _PEAK_NOTE,
        _SIZE_NOTE,
        f"profiled with a random input of dtype {str(dtype).removeprefix('torch.')} on {device}",
    ]
    unused = sum(layer.params for layer in layers if layer.calls == 0)
    if unused:
        notes.append(
            f"{unused} parameters belong to modules whose forward never ran (used functionally "
            "by a parent, or unused at inference); their MACs, if any, are in the parent"
        )
    if tracer.failed_formulas:
        notes.append(
            "MACs not counted for ops whose shapes the formula could not read: "
            + ", ".join(sorted(tracer.failed_formulas))
        )
    return ProfileResult(
        params=sum(p.numel() for p in module.parameters()),
        macs=sum(layer.macs for layer in layers),
        other_ops=sum(layer.other_ops for layer in layers),
        size_bytes=_fp32_size_bytes(module),
        peak_activation_bytes=tracer.peak_bytes,
        input_shape=list(shape),
        layers=layers,
        notes=notes,
    )


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(dim) for dim in input_shape)
    except (TypeError, ValueError):
        raise InputShapeError(
            f"input shape must be a sequence of integers, got {input_shape!r}"
        ) from None
    if not shape or any(dim <= 0 for dim in shape):
        raise InputShapeError(f"input shape must have positive sizes, got {list(shape)}")
    if shape[0] != 1:
        raise InputShapeError(
            f"profile figures are per image: use batch size 1, got input shape {list(shape)}"
        )
    return shape


def _input_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.float32, torch.device("cpu")


def _shape_error_message(shape: tuple[int, ...], exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return f"model cannot take input {'x'.join(map(str, shape))}: {reason}"


def _layers(module: torch.nn.Module, stats: dict[int, ModuleStats]) -> list[LayerProfile]:
    # Each parameter is charged to its first owner so that shared weights are not counted twice.
    seen: set[int] = set()
    direct_params: dict[int, int] = {}
    for mod in module.modules():
        count = 0
        for param in mod.parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                count += param.numel()
        direct_params[id(mod)] = count

    layers: list[tuple[int, LayerProfile]] = []
    for position, mod in enumerate(module.modules()):
        entry = stats[id(mod)]
        is_leaf = next(mod.children(), None) is None
        ran_as_leaf = is_leaf and entry.calls > 0
        if not (ran_as_leaf or entry.macs or entry.other_ops or direct_params[id(mod)]):
            continue
        # Modules that ran keep execution order; never-run owners of parameters go last.
        order = entry.first_call if entry.calls else len(stats) + position
        layers.append(
            (
                order,
                LayerProfile(
                    name=entry.name,
                    type=entry.type,
                    params=direct_params[id(mod)],
                    macs=entry.macs,
                    other_ops=entry.other_ops,
                    output_shape=list(entry.output_shape),
                    activation_bytes=entry.activation_bytes,
                    calls=entry.calls,
                ),
            )
        )
    return [layer for _, layer in sorted(layers, key=lambda item: item[0])]


def _fp32_size_bytes(module: torch.nn.Module) -> int:
    # state_dict(keep_vars=True) lists exactly what a weights file stores (persistent buffers
    # only); deduplicating by identity keeps tied weights from counting twice.
    unique = {id(t): t for t in module.state_dict(keep_vars=True).values()}
    return sum(
        t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in unique.values()
    )
