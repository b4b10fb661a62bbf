"""Calibration: run representative images through the simulation to set activation ranges."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from slimcv.errors import DataError
from slimcv.progress import progress_bar
from slimcv.quant.prepare import QuantizedModel


def calibrate(
    qmodel: QuantizedModel,
    batches: Iterable[torch.Tensor],
    *,
    total: int | None = None,
    progress: bool = False,
) -> int:
    """Observes activations on ``batches`` (float model, weights quantized off), then sets
    every activation quantizer's scale and switches the whole simulation to ``quantize``.

    Returns:
        The number of images seen.

    Raises:
        DataError: no images, or an image with NaN / Inf values.
    """
    qmodel.set_mode("off", weights=True, activations=False)
    for name in qmodel.activation_quantizers:
        quantizer = qmodel.module.get_submodule(name)
        quantizer.observer.reset()
        quantizer.mode = "observe"
    seen = 0
    module = qmodel.module.eval()
    with torch.no_grad(), progress_bar(progress) as bar:
        task = bar.add_task("calibrating", total=total, status="")
        for batch in batches:
            if not torch.isfinite(batch).all():
                raise DataError("calibration data contains NaN or Inf values")
            module(batch)
            seen += len(batch)
            bar.advance(task, len(batch))
    if seen == 0:
        raise DataError("the calibration set is empty: give it at least one image")
    finish_calibration(qmodel)
    return seen


def finish_calibration(qmodel: QuantizedModel) -> None:
    """Turns observed statistics into scales; everything quantizes afterwards."""
    for name in qmodel.activation_quantizers:
        qmodel.module.get_submodule(name).compute_qparams()
    for name in qmodel.layers:
        qmodel.module.get_submodule(name).weight_quantizer.calibrated = True
    qmodel.set_mode("quantize")
