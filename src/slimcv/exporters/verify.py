"""Checks that an exported model computes what the PyTorch model computes.

A mismatch is an error, not a warning: a deployed model that silently disagrees with the one
that was validated is the worst outcome an export can have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimcv.runtimes.base import RuntimeOptions, get_backend
from slimcv.sources.model import LoadedModel


@dataclass
class ExportCheck:
    """How one exported file compares with PyTorch on the same inputs.

    Attributes:
        format: ``onnx`` or ``openvino``.
        runtime: the backend that ran the file.
        precision: the precision it ran at (always ``f32`` for this check).
        max_abs_diff: largest absolute difference of the logits.
        tolerance: the bound ``max_abs_diff`` must stay within.
        top1_agreement: fraction of inputs whose arg-max class agrees.
        passed: both within tolerance and full top-1 agreement.
    """

    format: str
    runtime: str
    precision: str
    max_abs_diff: float
    tolerance: float
    top1_agreement: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_inputs(model: LoadedModel, batch: int = 4, seed: int = 0) -> np.ndarray:
    """Seeded normal inputs, the distribution normalised images have."""
    generator = np.random.default_rng(seed)
    return generator.standard_normal(model.input_shape(batch)).astype(np.float32)


def torch_outputs(model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
    module = model.require_module("verification").eval()
    with torch.no_grad():
        return module(torch.from_numpy(inputs)).float().numpy()


def check_file(
    model: LoadedModel,
    graph_path: Path,
    fmt: str,
    backend: str,
    inputs: np.ndarray,
    reference: np.ndarray,
    atol: float,
) -> ExportCheck:
    """Runs ``graph_path`` on ``backend`` in f32 and compares with ``reference``.

    The tolerance is ``atol`` scaled by the logits' magnitude when it exceeds 1, so large
    logits do not fail on float rounding alone.
    """
    session = get_backend(backend).open(model, RuntimeOptions(precision="f32"), graph_path)
    try:
        got = session.run(inputs)
    finally:
        session.close()
    diff = float(np.abs(got - reference).max())
    tolerance = atol * max(1.0, float(np.abs(reference).max()))
    agreement = float((got.argmax(1) == reference.argmax(1)).mean())
    return ExportCheck(
        format=fmt,
        runtime=backend,
        precision="f32",
        max_abs_diff=diff,
        tolerance=tolerance,
        top1_agreement=agreement,
        passed=diff <= tolerance and agreement == 1.0,
    )
