"""Empirical bias correction: remove the mean shift that quantization adds to each layer's output.

Rounding errors of a layer's weights do not average out over its output channels: for a
channel whose weights mostly round up, ``E[W_q x] - E[W x] = (W_q - W) E[x]`` is a systematic
offset, and on depthwise layers (9 weights per channel) it is large relative to the signal
(Nagel et al. 2019, "Data-Free Quantization", section 4.2; Finkelstein et al. 2019). Being a
constant per channel, it can be cancelled exactly by the bias, which stays in 32-bit
integers on the runtime.

The correction here is empirical and sequential: layers are corrected in graph order, and each
one's offset is measured between the float model's output of that layer and the quantized
model's output with every earlier layer already corrected, so the offsets that activation
quantization and earlier layers pass on are removed too, and not counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimcv.quant.layerwise import (
    active_layers,
    capture_float_outputs,
    limit_images,
    walk_layers,
)
from slimcv.quant.prepare import QuantizedModel


def correct_bias_(
    qmodel: QuantizedModel,
    batches: Sequence[torch.Tensor],
    *,
    float_module: nn.Module | None = None,
    max_images: int = 128,
    progress: bool = False,
) -> int:
    """Adds to each quantized layer's bias the mean output difference float - quantized.

    Call after calibration (and after AdaRound, if used).

    Args:
        qmodel: the calibrated simulation; biases are changed in place (a layer without a
            bias gets one).
        batches: calibration images.
        float_module: the float model ``qmodel`` was prepared from. ``None`` uses ``qmodel``
            with its quantizers off, which is the float model only while the weights are the
            original ones: after AdaRound (which writes rounded weights) pass the float model.
        max_images: calibration images used at most (the first ones); all of them are held in
            memory as activations while the model is walked layer by layer.
        progress: show a progress bar on stderr.

    Returns:
        The number of layers whose bias was corrected.
    """
    batches = limit_images(batches, max_images)
    if not batches:
        raise ValueError("bias correction needs at least one calibration batch")
    names = active_layers(qmodel)
    float_sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()

    def record(name: str, index: int, output: torch.Tensor) -> None:
        if (name, index) in seen:  # a layer called twice: its first call is the one corrected
            return
        seen.add((name, index))
        total, count = _channel_sum(output)
        float_sums[name] = float_sums.get(name, 0) + total
        counts[name] = counts.get(name, 0) + count

    capture_float_outputs(qmodel, float_module, names, batches, record)
    corrected = 0

    def visit(name: str, layer: nn.Module, inputs: list[torch.Tensor]) -> None:
        nonlocal corrected
        quant_sum = sum(_channel_sum(layer(x))[0] for x in inputs)
        shift = (float_sums[name] - quant_sum) / counts[name]
        if layer.bias is None:
            layer.bias = nn.Parameter(layer.weight.new_zeros(layer.weight.shape[0]))
        layer.bias.data += shift.to(layer.bias.dtype)
        corrected += 1

    walk_layers(
        qmodel, batches, visit, names=names, description="bias correction", progress=progress
    )
    return corrected


def _channel_sum(output: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-channel sum of a layer output (channels at dim 1 of a conv map, last of a linear)
    and the number of values summed per channel."""
    if output.dim() == 4:
        return output.sum(dim=(0, 2, 3)).double(), output.numel() // output.shape[1]
    flat = output.reshape(-1, output.shape[-1])
    return flat.sum(0).double(), flat.shape[0]
