"""Empirical bias correction: remove the mean shift that quantization adds to each layer's output.

Rounding errors of a layer's weights do not average out over its output channels: for a
channel whose weights mostly round up, ``E[W_q x] - E[W x] = (W_q - W) E[x]`` is a systematic
offset, and on depthwise layers (9 or 25 weights per channel) it is large relative to the
signal (Nagel et al. 2019, "Data-Free Quantization", section 4.2). Being a constant per
channel, it can be cancelled by the bias, which stays in 32-bit integers on the runtime.

The correction here is empirical and sequential: layers are corrected in graph order, and each
one's offset is measured between the float model and the quantized model with every earlier
layer already corrected, so offsets that activation quantization and earlier layers pass on
are removed too, and none is counted twice.

What is matched is the mean of what the *next* layer sees: for a layer followed by a ReLU or
ReLU6, the mean after that activation. Matching the pre-activation mean instead would let
errors in the region the activation clips away (about half of all values) move the bias of
the region it passes, and it undoes AdaRound, which fits only the passed region. With an
activation the bias shift has no closed form, but the post-activation mean grows
monotonically with it, so a per-channel bisection finds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimcv.quant.layerwise import (
    active_layers,
    capture_float_outputs,
    following_activations,
    limit_images,
    walk_layers,
)
from slimcv.quant.prepare import QuantizedModel

#: Output positions per layer kept to solve for the shift behind an activation.
_SOLVE_POSITIONS = 32768
_BISECTION_STEPS = 30


def correct_bias_(
    qmodel: QuantizedModel,
    batches: Sequence[torch.Tensor],
    *,
    float_module: nn.Module | None = None,
    max_images: int = 128,
    progress: bool = False,
) -> int:
    """Shifts each quantized layer's bias so that its output (after a following ReLU / ReLU6)
    has the float model's mean per channel on ``batches``.

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
    activations = following_activations(qmodel.module, names)
    float_sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()

    def record(name: str, index: int, output: torch.Tensor) -> None:
        if (name, index) in seen:  # a layer called twice: its first call is the one corrected
            return
        seen.add((name, index))
        rows = _rows(_activate(activations.get(name), output))
        float_sums[name] = float_sums.get(name, 0) + rows.sum(0, dtype=torch.float64)
        counts[name] = counts.get(name, 0) + len(rows)

    capture_float_outputs(qmodel, float_module, names, batches, record)
    generator = torch.Generator().manual_seed(0)
    corrected = 0

    def visit(name: str, layer: nn.Module, inputs: list[torch.Tensor]) -> None:
        nonlocal corrected
        target = (float_sums[name] / counts[name]).float()
        outputs = [_rows(layer(x)) for x in inputs]
        activation = activations.get(name)
        if activation is None:
            total = sum(rows.sum(0, dtype=torch.float64) for rows in outputs)
            shift = target - (total / sum(len(rows) for rows in outputs)).float()
        else:
            shift = _solve_shift(activation, _subsample(outputs, generator), target)
        if layer.bias is None:
            layer.bias = nn.Parameter(layer.weight.new_zeros(layer.weight.shape[0]))
        layer.bias.data += shift.to(layer.bias.dtype)
        corrected += 1

    walk_layers(
        qmodel, batches, visit, names=names, description="bias correction", progress=progress
    )
    return corrected


def _rows(output: torch.Tensor) -> torch.Tensor:
    """A layer output as ``[positions, channels]`` (channels at dim 1 of a conv map)."""
    if output.dim() == 4:
        return output.permute(0, 2, 3, 1).reshape(-1, output.shape[1])
    return output.reshape(-1, output.shape[-1])


def _activate(activation: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if activation is None else activation(x)


def _subsample(outputs: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """At most ``_SOLVE_POSITIONS`` rows, drawn evenly from every batch."""
    total = sum(len(rows) for rows in outputs)
    if total <= _SOLVE_POSITIONS:
        return torch.cat(outputs)
    kept = []
    for rows in outputs:
        share = max(1, len(rows) * _SOLVE_POSITIONS // total)
        kept.append(rows[torch.randperm(len(rows), generator=generator)[:share]])
    return torch.cat(kept)


def _solve_shift(activation: nn.Module, rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per channel, the shift ``d`` nearest to 0 with ``mean(f(rows + d)) == target``.

    ``mean(f(rows + d))`` is non-decreasing in ``d`` for ReLU and ReLU6, so bisection finds
    the end of the solution interval nearest 0. A channel whose target is out of reach (dead
    in the quantized model but not in the float one, or the reverse) is left as it is.
    """

    def excess(shift: torch.Tensor) -> torch.Tensor:
        return activation(rows + shift).mean(0) - target

    reach = rows.abs().amax(0) + target.abs() + 1.0
    start = excess(torch.zeros_like(target))
    up = start < 0  # the quantized mean is too low: search upwards
    low = torch.where(up, torch.zeros_like(reach), -reach)
    high = torch.where(up, reach, torch.zeros_like(reach))
    reachable = torch.where(up, excess(high) >= 0, excess(low) <= 0) & (start != 0)
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        value = excess(middle)
        # Upwards: keep the smallest shift that reaches the target; downwards: the largest.
        go_left = torch.where(up, value >= 0, value > 0)
        high = torch.where(go_left, middle, high)
        low = torch.where(go_left, low, middle)
    shift = torch.where(up, high, low)
    return torch.where(reachable, shift, torch.zeros_like(shift))
