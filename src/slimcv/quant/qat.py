"""Quantization-aware training: fine-tune the simulation so the weights adapt to the grid.

The calibrated simulation is trained through the shared training loop
(:func:`slimcv.training.loop.fit`): forward passes quantize weights and activations, gradients
pass the rounding straight through (STE), and every scale is a parameter learned alongside the
weights (LSQ). Scales are excluded from weight decay (decay would shrink ranges for no reason);
at the end they are frozen into buffers for export.
"""

from __future__ import annotations

import torch

from slimcv.data import DataBundle
from slimcv.errors import DataError, SlimcvError
from slimcv.quant.prepare import QuantizedModel
from slimcv.quant.quantizer import Quantizer
from slimcv.training.objective import Objective


def train_qat(
    qmodel: QuantizedModel,
    data: DataBundle | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    objective: Objective | None = None,
) -> list:
    """Trains ``qmodel`` in place with fake quantization and learnable scales.

    ``objective`` replaces the labels-only loss, e.g. the float model's soft targets
    (:func:`slimcv.distillation.teacher_objective`): the float model teaches its quantized self.

    Returns:
        The per-epoch metrics of the training loop.

    Raises:
        DataError: no labeled training data.
    """
    from slimcv.training.loop import TrainConfig, fit

    if data is None or not data.labeled:
        name = "a tensor of images" if data is None else data.name
        raise DataError(f"QAT trains on labels; {name} has none (use a labeled data source)")
    quantizers = [m for m in qmodel.module.modules() if isinstance(m, Quantizer)]
    for quantizer in quantizers:
        if quantizer.mode == "quantize":
            quantizer.make_learnable()
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, seed=seed)
    history = fit(
        qmodel.module,
        data,
        config,
        objective=objective,
        progress=progress,
        description="QAT (distilled)" if objective else "QAT",
    )
    if not all(torch.isfinite(p).all() for p in qmodel.module.parameters()):
        raise SlimcvError(f"QAT diverged (weights became NaN/Inf) at lr {lr}; lower --qat-lr")
    for quantizer in quantizers:
        quantizer.freeze()
    qmodel.module.eval()
    return history
