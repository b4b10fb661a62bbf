"""Quantization: INT8 simulation, calibration, PTQ/QAT, mixed precision, QDQ export.

=====================  ===================================================================
:mod:`.spec`           number formats and the scale / zero-point maths
:mod:`.observers`      range estimators: min-max, moving average, percentile, MSE, entropy
:mod:`.quantizer`      the fake-quant module (straight-through estimator, LSQ scales)
:mod:`.layers`         Conv2d / Linear with quantized weights
:mod:`.prepare`        where quantizers go in a traced graph, so runtimes fuse them
:mod:`.calibrate`      activation ranges from calibration images
:mod:`.adaround`       learned weight rounding; :mod:`.equalize` (CLE),
                       :mod:`.bias_correction`
:mod:`.qat`            quantization-aware training through the shared training loop
:mod:`.mixed`          per-layer sensitivity and float fallback under ``max_drop``
:mod:`.onnx_qdq`       QDQ ONNX with int8 weights and int32 biases
:mod:`.int8_check`     proof that ONNX Runtime / OpenVINO run integer kernels
:mod:`.api`            ``slimcv.quantize``; :mod:`.pipeline` its steps in order
=====================  ===================================================================
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "QuantizeConfig": "slimcv.quant.api",
    "QuantizeResult": "slimcv.quant.api",
    "quantize": "slimcv.quant.api",
    "QuantSpec": "slimcv.quant.spec",
    "prepare": "slimcv.quant.prepare",
    "PrepareConfig": "slimcv.quant.prepare",
    "calibrate": "slimcv.quant.calibrate",
    "export_qdq_onnx": "slimcv.quant.onnx_qdq",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slimcv.quant' has no attribute {name!r}")
