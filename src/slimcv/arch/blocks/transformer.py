"""The transformer pieces the attention blocks share: self-attention and a pre-norm layer.

Attention is written as one fused q/k/v linear, ``F.scaled_dot_product_attention`` and an output
linear rather than ``nn.MultiheadAttention``: it takes any leading batch shape (windows, patch
positions), runs the fused CPU/GPU kernels, exports to ONNX (opset 17 decomposes it into
MatMul/Softmax) and its MACs are counted by :mod:`slimcv.analysis` from the aten ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.arch.layers import LayerFactory, make_act
from slimcv.errors import SpecError


class SelfAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of ``(..., tokens, dim)``.

    MACs for T tokens in groups of L that attend to each other: ``T*dim*3*dim`` (q, k, v) +
    ``2*T*L*dim`` (scores and weighted sum, over all heads) + ``T*dim*dim`` (output).

    Raises:
        SpecError: ``dim`` is not a multiple of ``heads``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise SpecError(f"attention width {dim} is not divisible into {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(-1, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(*lead, tokens, dim)
        return self.proj(out)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    Pre-norm keeps the residual stream un-normalised, which trains without warm-up tricks at
    the small depths mobile blocks use.

    Args:
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        act_layer: the MLP's activation.
        norm_layer: token normalisation (``nn.LayerNorm``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 2.0,
        act_layer: LayerFactory = nn.GELU,
        norm_layer: LayerFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.hidden_features = hidden
        self.norm1 = norm_layer(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = norm_layer(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), make_act(act_layer), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
