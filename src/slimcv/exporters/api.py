"""Export (``slimcv.export``): the deployable files of a model, verified against PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimcv.errors import ExportError, SlimcvError
from slimcv.exporters.onnx import DEFAULT_OPSET, export_onnx
from slimcv.exporters.openvino import export_openvino
from slimcv.exporters.verify import ExportCheck, check_file, reference_inputs, torch_outputs
from slimcv.sources.artifact import check_output_dir, save_artifact
from slimcv.sources.model import LoadedModel

FORMATS = ("onnx", "openvino")
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "openvino/model.xml"


@dataclass
class ExportConfig:
    """What to export and how strictly to check it.

    Attributes:
        formats: any of ``onnx`` and ``openvino`` (OpenVINO IR is converted from the ONNX file).
        opset: ONNX opset (17 or newer).
        simplify: simplify the ONNX graph with onnxslim.
        atol: maximum absolute logit difference against PyTorch (scaled for logits above 1).
        verify_batch: how many seeded inputs the check runs.
    """

    formats: tuple[str, ...] = FORMATS
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    atol: float = 1e-4
    verify_batch: int = 4

    def __post_init__(self) -> None:
        self.formats = tuple(self.formats)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise SlimcvError(f"unknown export format {unknown}; known: {', '.join(FORMATS)}")
        if self.opset < 17:
            raise SlimcvError(f"opset must be 17 or newer, got {self.opset}")
        if self.verify_batch < 1:
            raise SlimcvError("verify_batch must be at least 1")


@dataclass
class ExportResult:
    """Files written and how each compares with PyTorch."""

    out_dir: str
    files: dict[str, str]
    graph: dict[str, Any]
    checks: list[ExportCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "files": self.files,
            "graph": self.graph,
            "checks": [c.to_dict() for c in self.checks],
        }


def export_files(model: LoadedModel, directory: Path, config: ExportConfig) -> ExportResult:
    """Writes and verifies the exported files into ``directory`` (no manifest)."""
    module = model.require_module("export")
    onnx_path = directory / ONNX_FILE
    graph = export_onnx(
        module, onnx_path, model.input_shape(1), opset=config.opset, simplify=config.simplify
    )
    files = {"onnx": ONNX_FILE}
    inputs = reference_inputs(model, config.verify_batch)
    reference = torch_outputs(model, inputs)
    checks = []
    if "onnx" in config.formats:
        checks.append(
            check_file(model, onnx_path, "onnx", "onnxruntime", inputs, reference, config.atol)
        )
    if "openvino" in config.formats:
        xml = export_openvino(onnx_path, directory / OPENVINO_FILE)
        files["openvino"] = OPENVINO_FILE
        checks.append(
            check_file(model, xml, "openvino", "openvino", inputs, reference, config.atol)
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = failed[0]
        raise ExportError(
            f"{worst.format} export does not match PyTorch: max abs diff {worst.max_abs_diff:.2e} "
            f"> {worst.tolerance:.1e}, top-1 agreement {worst.top1_agreement:.0%}"
        )
    return ExportResult(out_dir=str(directory), files=files, graph=graph, checks=checks)


def export(
    model: LoadedModel, out_dir: str | Path, config: ExportConfig | None = None
) -> ExportResult:
    """Exports ``model`` to an artifact directory holding ONNX / OpenVINO files and weights.

    The directory is a complete artifact (it also holds the PyTorch weights), so it reloads
    in a fresh process and can be benchmarked or evaluated directly.

    Raises:
        ExportError: export failed, or an exported file disagrees with PyTorch.
    """
    config = config or ExportConfig()
    inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
    out = check_output_dir(out_dir, inputs)
    results: list[ExportResult] = []

    def write(directory: Path, _: LoadedModel) -> dict[str, Any]:
        result = export_files(model, directory, config)
        results.append(result)
        return {"exports": result.files, "graph": result.graph}

    metrics = {}
    save_artifact(
        out,
        model,
        command="export",
        args={"formats": list(config.formats), "opset": config.opset},
        metrics=metrics,
        write_extra=write,
    )
    result = results[0]
    result.out_dir = str(out)
    return result
