"""Export: BatchNorm folding, ONNX, OpenVINO IR, each verified against PyTorch."""

from slimcv.exporters.api import ExportConfig, ExportResult, export, export_files
from slimcv.exporters.fold import count_batchnorm, fold_batchnorm
from slimcv.exporters.onnx import export_onnx, graph_facts
from slimcv.exporters.verify import ExportCheck

__all__ = [
    "ExportCheck",
    "ExportConfig",
    "ExportResult",
    "count_batchnorm",
    "export",
    "export_files",
    "export_onnx",
    "fold_batchnorm",
    "graph_facts",
]
