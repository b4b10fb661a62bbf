"""The fake-quantization module placed on every quantized tensor (activations and weights).

A :class:`Quantizer` has three states, switched for the whole model at once:

- ``observe``: pass the float tensor through and let its observer collect statistics
  (calibration);
- ``quantize``: quantize-dequantize with the current scale and zero point (simulation, QAT,
  evaluation of the INT8 model in PyTorch);
- ``off``: identity (to measure one layer's effect alone, or to keep a layer float).

With ``learnable=True`` the scale is a parameter trained by gradient descent (LSQ, Esser et
al. 2020) during quantization-aware training; the gradient is scaled by
``1 / sqrt(numel * qmax)`` as the paper recommends so that scales move at the pace of weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimcv.quant.spec import MIN_SCALE, QuantSpec, fake_quantize

MODES = ("observe", "quantize", "off")


class Quantizer(nn.Module):
    """Fake-quantizes one tensor with a :class:`QuantSpec` and an observer.

    Args:
        spec: number format.
        observer: what calibration uses to choose the range (see :mod:`slimcv.quant.observers`).
    """

    def __init__(self, spec: QuantSpec, observer: nn.Module | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.observer = observer
        self.mode = "observe"
        self.learnable = False
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int32))
        self.calibrated = False
        #: Export mode: use an 8-bit container range so torch.onnx can write Q/DQ nodes.
        self.exporting = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return x
        if self.mode == "observe":
            if self.observer is None:
                raise RuntimeError("this quantizer has no observer to calibrate with")
            self.observer(x)
            return x
        if self.exporting:
            return self._export_forward(x)
        if self.learnable and self.training:
            return self._lsq(x)
        return fake_quantize(x, self.scale, self.zero_point, self.spec)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown quantizer mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "quantize" and not self.calibrated:
            raise RuntimeError("quantizer has no scale yet: calibrate before quantizing")
        self.mode = mode

    def compute_qparams(self) -> None:
        """Turns the observer's statistics into the scale and zero point."""
        if self.observer is None:
            raise RuntimeError("this quantizer has no observer")
        scale, zero_point = self.observer.compute()
        self.set_qparams(scale, zero_point)

    def set_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        scale = torch.as_tensor(scale, dtype=torch.float32).detach().clone()
        zero_point = torch.as_tensor(zero_point).to(torch.int32).detach().clone()
        if self.learnable:
            self._parameters.pop("scale", None)
            self.learnable = False
        self._buffers["scale"] = scale.to(self._device())
        self._buffers["zero_point"] = zero_point.to(self._device())
        self.calibrated = True

    def make_learnable(self) -> None:
        """Turns the scale into a trainable parameter (LSQ) for quantization-aware training."""
        if not self.calibrated:
            raise RuntimeError("calibrate before making the scale learnable")
        scale = self._buffers.pop("scale")
        self.scale = nn.Parameter(scale.clone())
        self.learnable = True

    def freeze(self) -> None:
        """Ends QAT: the learned scale becomes a plain buffer again."""
        if self.learnable:
            scale = self.scale.detach().clamp(min=MIN_SCALE)
            del self._parameters["scale"]
            self.learnable = False
            self.register_buffer("scale", scale)

    def _lsq(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        numel = x.numel() / (x.shape[spec.ch_axis] if spec.per_channel else 1)
        grad_factor = 1.0 / math.sqrt(max(numel, 1) * spec.qmax)
        scale = self.scale.abs().clamp(min=MIN_SCALE)
        zero_point = self.zero_point.float()
        if spec.per_channel:
            return torch._fake_quantize_learnable_per_channel_affine(
                x, scale, zero_point, spec.ch_axis, spec.qmin, spec.qmax, grad_factor
            )
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, scale.reshape(1), zero_point.reshape(1), spec.qmin, spec.qmax, grad_factor
        )

    def _export_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant in a form torch.onnx writes as QuantizeLinear/DequantizeLinear.

        ONNX has 8-bit containers only; narrower weight formats are exported as int8 codes that
        stay inside the narrower range (weights are pre-rounded before export, see
        :mod:`slimcv.quant.onnx_qdq`).
        """
        spec = self.spec
        lo, hi = (-128, 127) if spec.symmetric else (0, 255)
        if (spec.qmin, spec.qmax) != (lo, hi) and not spec.per_channel and spec.bits < 8:
            raise RuntimeError(f"{spec.bits}-bit activations cannot be exported to ONNX")
        scale = self.scale.detach().float()
        zero_point = self.zero_point.to(torch.int32)
        if spec.per_channel:
            return torch.fake_quantize_per_channel_affine(
                x, scale, zero_point, spec.ch_axis, lo, hi
            )
        return torch.fake_quantize_per_tensor_affine(
            x, scale.reshape(()), zero_point.reshape(()), lo, hi
        )

    def _device(self) -> torch.device:
        for tensor in list(self._buffers.values()) + list(self._parameters.values()):
            if tensor is not None:
                return tensor.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        text = f"{self.spec.short()}, mode={self.mode}"
        if self.calibrated and self.scale.numel() == 1:
            text += f", scale={float(self.scale):.4g}, zero_point={int(self.zero_point)}"
        return text
