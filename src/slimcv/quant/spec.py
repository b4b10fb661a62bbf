"""What a quantizer does: bit width, signedness, granularity, and the scale/zero-point maths.

Every observer, fake-quant module and the ONNX writer agree on these conventions, which are the
ones the INT8 runtimes execute fastest on x86 with VNNI:

- weights: signed, symmetric (zero point 0), per output channel, narrow range
  (``[-127, 127]`` at 8 bits) so that ``-w`` quantizes to ``-q``;
- activations: per tensor, asymmetric unsigned (``[0, 255]``, zero point chosen so that 0.0 is
  exact, which lets a runtime fuse a preceding ReLU away), or symmetric signed ``[-128, 127]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: The smallest scale a quantizer may have (an all-zero tensor would otherwise give 0).
MIN_SCALE = 1e-8


@dataclass(frozen=True)
class QuantSpec:
    """One quantizer's number format.

    Attributes:
        bits: integer width, 2 to 8 (values below 8 are stored in int8/uint8 containers).
        symmetric: zero point fixed at 0 and a signed range; else asymmetric unsigned.
        per_channel: one scale per slice along ``ch_axis`` (weights); else one per tensor.
        ch_axis: the channel axis for per-channel scales (0 = output channels of a conv).
        narrow: drop the most negative code (``[-127, 127]`` instead of ``[-128, 127]``).
    """

    bits: int = 8
    symmetric: bool = False
    per_channel: bool = False
    ch_axis: int = 0
    narrow: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bit width must be 2..8, got {self.bits}")

    @property
    def qmin(self) -> int:
        if not self.symmetric:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    @property
    def onnx_dtype(self) -> str:
        """The ONNX container type: ``int8`` for signed formats, ``uint8`` for unsigned."""
        return "int8" if self.symmetric else "uint8"

    def short(self) -> str:
        kind = "s" if self.symmetric else "u"
        gran = "per-channel" if self.per_channel else "per-tensor"
        return f"{kind}{self.bits} {gran}"


#: Weight format: s8 symmetric narrow range, per output channel.
WEIGHT_INT8 = QuantSpec(bits=8, symmetric=True, per_channel=True, narrow=True)
#: Activation format for ONNX Runtime and OpenVINO on x86: u8 asymmetric per tensor.
ACT_UINT8 = QuantSpec(bits=8, symmetric=False)
#: Activation format some runtimes prefer: s8 symmetric per tensor.
ACT_INT8 = QuantSpec(bits=8, symmetric=True)


def qparams_from_range(
    min_val: torch.Tensor, max_val: torch.Tensor, spec: QuantSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that represent ``[min_val, max_val]`` (scalars or per channel).

    The range is first widened to include 0, so that zero (padding, ReLU output) is exact.

    Returns:
        ``(scale, zero_point)``: float32 and int32 tensors of the shape of ``min_val``.
    """
    min_val = torch.clamp(min_val.detach().float(), max=0.0)
    max_val = torch.clamp(max_val.detach().float(), min=0.0)
    if spec.symmetric:
        amax = torch.maximum(-min_val, max_val)
        scale = torch.clamp(amax / spec.qmax, min=MIN_SCALE)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((max_val - min_val) / (spec.qmax - spec.qmin), min=MIN_SCALE)
        zero_point = spec.qmin - torch.round(min_val / scale)
        zero_point = torch.clamp(zero_point, spec.qmin, spec.qmax).to(torch.int32)
    return scale, zero_point


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, spec: QuantSpec
) -> torch.Tensor:
    """Quantize-dequantize ``x`` (round half to even, clamp), as the runtimes do.

    Gradients pass straight through inside the range and are zero outside (STE); the
    gradient with respect to ``scale`` is not computed here (see :class:`LsqQuantizer`).
    """
    if spec.per_channel:
        return torch.fake_quantize_per_channel_affine(
            x, scale.float(), zero_point.to(torch.int32), spec.ch_axis, spec.qmin, spec.qmax
        )
    return torch.fake_quantize_per_tensor_affine(
        x, scale.float().reshape(()), zero_point.to(torch.int32).reshape(()), spec.qmin, spec.qmax
    )


def quantize_to_int(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, spec: QuantSpec
) -> torch.Tensor:
    """The integer codes of ``x`` (int32), rounding half to even like ``fake_quantize``."""
    if spec.per_channel:
        shape = [1] * x.dim()
        shape[spec.ch_axis] = -1
        scale = scale.reshape(shape)
        zero_point = zero_point.reshape(shape)
    q = torch.round(x / scale) + zero_point
    return torch.clamp(q, spec.qmin, spec.qmax).to(torch.int32)
