"""Convolution and linear layers whose weights go through a :class:`Quantizer`.

They keep the float weight as the parameter (QAT updates it; AdaRound replaces it by values on
the quantization grid) and quantize it on every forward, so the simulation computes what the
INT8 runtime computes: ``conv(q(x), q(w)) + b`` with a 32-bit bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.quant.quantizer import Quantizer
from slimcv.quant.spec import QuantSpec, qparams_from_range


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with fake-quantized weights (per output channel)."""

    weight_quantizer: Quantizer

    @classmethod
    def from_float(cls, conv: nn.Conv2d, spec: QuantSpec) -> QuantConv2d:
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
        )
        layer.weight, layer.bias = conv.weight, conv.bias
        layer.weight_quantizer = Quantizer(spec)
        init_weight_qparams(layer)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


class QuantLinear(nn.Linear):
    """``nn.Linear`` with fake-quantized weights (per output feature)."""

    weight_quantizer: Quantizer

    @classmethod
    def from_float(cls, linear: nn.Linear, spec: QuantSpec) -> QuantLinear:
        layer = cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta"
        )
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.weight_quantizer = Quantizer(spec)
        init_weight_qparams(layer)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_quantizer(self.weight), self.bias)


QUANT_LAYERS = (QuantConv2d, QuantLinear)


def init_weight_qparams(layer: QuantConv2d | QuantLinear, method: str = "minmax") -> None:
    """Sets the weight quantizer's per-channel scales from the weight itself.

    ``minmax`` covers every weight; ``mse`` searches the clipping range per channel that
    minimises the squared rounding + clipping error (better for 4-bit weights).
    """
    quantizer = layer.weight_quantizer
    spec = quantizer.spec
    weight = layer.weight.detach()
    if method == "minmax":
        dims = [d for d in range(weight.dim()) if d != spec.ch_axis] if spec.per_channel else None
        lo = weight.amin(dim=dims) if dims else weight.min()
        hi = weight.amax(dim=dims) if dims else weight.max()
        scale, zero_point = qparams_from_range(lo, hi, spec)
    else:
        from slimcv.quant.observers import make_observer

        observer = make_observer(method, spec)
        observer.observe(weight)
        scale, zero_point = observer.compute()
    quantizer.set_qparams(scale, zero_point)
    quantizer.mode = "quantize"
