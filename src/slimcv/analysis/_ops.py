"""How much arithmetic one aten op does: MACs for the heavy ops, an element count for the rest.

Published model complexity ("1.8 GFLOPs" for ResNet-18) counts multiply-accumulates of
convolutions, matrix products and attention only; normalisation, activations, pooling and adds are
left out because they are cheap per element and their cost depends on how a runtime fuses them.
This module keeps that split: :func:`op_macs` answers for the heavy ops (reusing the shape
formulas of :mod:`torch.utils.flop_counter`, which count 2 FLOPs per MAC) and :func:`op_other_ops`
gives a one-op-per-output-element estimate for everything else that computes something.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

# (args, kwargs, out) -> MACs at the shapes of this call.
MacFormula = Callable[[tuple[Any, ...], dict[str, Any], Any], int]


def _from_flop_formula(formula: Callable[..., int]) -> MacFormula:
    # torch's formulas are wrapped to take the real args plus ``out_val`` and count 2 FLOPs/MAC.
    def macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return int(formula(*args, out_val=out, **kwargs)) // 2

    return macs


def _attention_macs(batch: int, len_q: int, len_kv: int, embed: int) -> int:
    # Input projections of q, k, v, the two attention matmuls (q @ k^T and attn @ v, summed over
    # heads that is len_q * len_kv * embed each) and the output projection.
    projections = batch * (len_q + 2 * len_kv) * embed * embed + batch * len_q * embed * embed
    return projections + 2 * batch * len_q * len_kv * embed


def _native_mha_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    # nn.MultiheadAttention's inference fast path runs as this one fused op, so the matmul
    # formulas never see its projections or attention; shapes are (batch, length, embed).
    query, key = args[0], args[1]
    batch, len_q, embed = query.shape[-3], query.shape[-2], query.shape[-1]
    return _attention_macs(batch, len_q, key.shape[-2], embed)


def _encoder_layer_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    # nn.TransformerEncoderLayer's fast path: self-attention plus the two feed-forward linears.
    src, ffn_weight_1 = args[0], args[14]
    batch, length, embed = src.shape[-3], src.shape[-2], src.shape[-1]
    hidden = ffn_weight_1.shape[0]
    return _attention_macs(batch, length, length, embed) + 2 * batch * length * embed * hidden


def _mv_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    matrix = args[1] if len(args) > 2 else args[0]  # addmv(self, mat, vec) / mv(mat, vec)
    return int(matrix.shape[0]) * int(matrix.shape[1])


def _dot_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    return int(args[0].numel())


def _sdpa_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    # Fused attention kernels: q @ k^T and attn @ v over (batch, heads, length, head dim).
    query, key, value = args[0], args[1], args[2]
    *lead, len_q, dim = query.shape
    batch_heads = 1
    for size in lead:
        batch_heads *= int(size)
    return batch_heads * int(len_q) * int(key.shape[-2]) * (int(dim) + int(value.shape[-1]))


def _build_mac_formulas() -> dict[Any, MacFormula]:
    formulas: dict[Any, MacFormula] = {
        packet: _from_flop_formula(formula) for packet, formula in flop_registry.items()
    }
    formulas[aten._addmm_activation] = formulas[aten.addmm]
    formulas[aten._native_multi_head_attention] = _native_mha_macs
    formulas[aten._transformer_encoder_layer_fwd] = _encoder_layer_macs
    formulas[aten.mv] = _mv_macs
    formulas[aten.addmv] = _mv_macs
    formulas[aten.dot] = _dot_macs
    formulas[aten.vdot] = _dot_macs
    # The CPU flash-attention kernel that scaled_dot_product_attention runs since torch 2.x;
    # some torch releases' flop counter has no formula for it and would count it as 0 MACs.
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and cpu_flash not in formulas:
        formulas[cpu_flash] = _sdpa_macs
    return formulas


# Read-only: formulas are data, and a shared mutable table would leak between callers.
MAC_FORMULAS: Mapping[Any, MacFormula] = MappingProxyType(_build_mac_formulas())

# Ops that move, copy, create or reinterpret data without arithmetic; they cost memory traffic,
# not operations, so other_ops leaves them out (views are recognised from their schema).
_DATA_MOVEMENT: frozenset[str] = frozenset(
    {
        "_to_copy",
        "_unsafe_view",
        "alias",
        "arange",
        "cat",
        "channel_shuffle",
        "clone",
        "constant_pad_nd",
        "contiguous",
        "copy",
        "copy_",
        "detach",
        "embedding",
        "empty",
        "empty_like",
        "empty_strided",
        "expand_copy",
        "fill",
        "fill_",
        "flip",
        "full",
        "full_like",
        "gather",
        "index",
        "index_select",
        "lift_fresh",
        "lift_fresh_copy",
        "native_channel_shuffle",
        "new_empty",
        "new_empty_strided",
        "new_full",
        "new_ones",
        "new_zeros",
        "ones",
        "ones_like",
        "permute_copy",
        "pixel_shuffle",
        "pixel_unshuffle",
        "reflection_pad1d",
        "reflection_pad2d",
        "reflection_pad3d",
        "repeat",
        "replication_pad1d",
        "replication_pad2d",
        "replication_pad3d",
        "roll",
        "scalar_tensor",
        "select_scatter",
        "slice_scatter",
        "split_with_sizes_copy",
        "stack",
        "t_copy",
        "transpose_copy",
        "unsqueeze_copy",
        "view_copy",
        "zero_",
        "zeros",
        "zeros_like",
    }
)


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors in an op's or module's output, depth first.

    Args:
        obj: A tensor, or a list/tuple/dict nesting them; anything else holds no tensors.
    """
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def op_macs(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> int | None:
    """MACs of one call, or None when the op is not a convolution, matmul or attention op.

    Args:
        func: The aten overload that ran.
        args: Its positional arguments (tensors, not shapes).
        kwargs: Its keyword arguments.
        out: What it returned; some formulas read the output shape.
    """
    formula = MAC_FORMULAS.get(func._overloadpacket)
    if formula is None:
        return None
    return formula(args, kwargs, out)


def op_other_ops(func: torch._ops.OpOverload, out: Any) -> int:
    """Estimated element-wise work of one call: the element count of its first tensor output.

    Only the first output counts because multi-output ops return bookkeeping next to the result
    (batch norm's saved statistics, max pooling's indices). Views, copies and factories are 0.

    Args:
        func: The aten overload that ran; it must have no MAC formula.
        out: What it returned.
    """
    if func.is_view or func._overloadpacket.__name__ in _DATA_MOVEMENT:
        return 0
    first = next(iter_tensors(out), None)
    return 0 if first is None else int(first.numel())
