"""OpenVINO IR conversion from the ONNX export (weights kept in FP32)."""

from __future__ import annotations

from pathlib import Path

from slimcv.errors import BackendUnavailable, ExportError


def export_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Converts an ONNX file to OpenVINO IR (``.xml`` + ``.bin``), without FP16 compression.

    ``ov.save_model`` compresses weights to FP16 by default; slimcv keeps FP32 so the IR
    computes what the ONNX model does, and the runtime precision is chosen at compile time.
    """
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable(
            "package openvino is not installed; run: pip install openvino"
        ) from None
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(
            f"OpenVINO conversion failed: {str(exc).strip().splitlines()[0]}"
        ) from None
    return xml_path
