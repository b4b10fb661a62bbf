"""The backends: torch eager, torch.compile, ONNX Runtime, OpenVINO, and GPU ones when present."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from slimcv.errors import BackendUnavailable
from slimcv.runtimes.base import (
    BACKENDS,
    Backend,
    RuntimeOptions,
    Session,
    package_missing,
)
from slimcv.sources.model import LoadedModel

_TORCH_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


class TorchSession(Session):
    def __init__(self, module: Any, device: str, dtype: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.module = module
        self.device = device
        self.dtype = dtype

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, self.dtype)
            out = self.module(x)
            return out.float().cpu().numpy()


def _torch_module(model: LoadedModel, options: RuntimeOptions, device: str) -> tuple[Any, Any]:
    import torch

    from slimcv.exporters.fold import fold_batchnorm

    torch.set_num_threads(options.resolved_threads())
    dtype = getattr(torch, _TORCH_DTYPES[options.precision])
    module = fold_batchnorm(copy.deepcopy(model.require_module("the torch backend")))
    module = module.to(device=device, dtype=dtype).eval()
    return module, dtype


@BACKENDS.register("torch")
class TorchEager(Backend):
    """PyTorch eager mode on the CPU, on the deployable form (BatchNorm folded into convs)."""

    name = "torch"
    precisions = ("f32", "bf16", "f16")

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        module, dtype = _torch_module(model, options, "cpu")
        return TorchSession(
            module,
            "cpu",
            dtype,
            backend=self.name,
            precision=options.precision,
            threads=options.resolved_threads(),
            details={"device": "cpu", "mode": "eager"},
        )


@BACKENDS.register("torch-compile")
class TorchCompile(Backend):
    """``torch.compile`` (Inductor) on the CPU: fuses element-wise ops into generated kernels."""

    name = "torch-compile"
    precisions = ("f32", "bf16")

    def unavailable_reason(self) -> str | None:
        import shutil

        if not (shutil.which("cc") or shutil.which("gcc")):
            return "torch.compile needs a C compiler (apt-get install gcc)"
        return None

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        import torch

        module, dtype = _torch_module(model, options, "cpu")
        compiled = torch.compile(module, mode="max-autotune-no-cudagraphs", dynamic=False)
        return TorchSession(
            compiled,
            "cpu",
            dtype,
            backend=self.name,
            precision=options.precision,
            threads=options.resolved_threads(),
            details={"device": "cpu", "mode": "inductor"},
        )


class OnnxRuntimeSession(Session):
    def __init__(self, session: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], dtype=np.float32)


@BACKENDS.register("onnxruntime")
class OnnxRuntime(Backend):
    """ONNX Runtime, CPU execution provider, all graph optimizations on."""

    name = "onnxruntime"
    needs_onnx = True
    precisions = ("f32",)
    install_hint = "pip install onnxruntime"

    def unavailable_reason(self) -> str | None:
        if package_missing("onnxruntime"):
            return f"package onnxruntime is not installed; run: {self.install_hint}"
        return None

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        import onnxruntime as ort

        threads = options.resolved_threads()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        session = ort.InferenceSession(
            str(_require(onnx_path, self.name)), so, providers=["CPUExecutionProvider"]
        )
        return OnnxRuntimeSession(
            session,
            backend=self.name,
            precision=options.precision,
            threads=threads,
            details={"provider": "CPUExecutionProvider", "version": ort.__version__},
        )


class OpenVinoSession(Session):
    def __init__(self, compiled: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(self.request.get_output_tensor(0).data, dtype=np.float32).copy()


@BACKENDS.register("openvino")
class OpenVino(Backend):
    """OpenVINO on the CPU with the inference precision set explicitly.

    OpenVINO's default on CPUs with AVX512-BF16 or AMX is bf16, silently; slimcv always sets
    ``INFERENCE_PRECISION_HINT`` and reads back what the compiled model really uses.
    """

    name = "openvino"
    needs_onnx = True
    precisions = ("f32", "bf16", "f16")
    install_hint = "pip install openvino"

    def unavailable_reason(self) -> str | None:
        if package_missing("openvino"):
            return f"package openvino is not installed; run: {self.install_hint}"
        return None

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        import openvino as ov

        threads = options.resolved_threads()
        core = ov.Core()
        source = _require(onnx_path, self.name)
        ov_model = core.read_model(str(source))
        config = {
            "INFERENCE_PRECISION_HINT": options.precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": True,
        }
        try:
            compiled = core.compile_model(ov_model, "CPU", config)
        except RuntimeError as exc:
            raise BackendUnavailable(f"openvino cannot compile with {config}: {exc}") from None
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", not repr
        return OpenVinoSession(
            compiled,
            backend=self.name,
            precision=options.precision,
            threads=threads,
            details={"device": "CPU", "inference_precision": actual, "version": ov.__version__},
        )


def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine; skipped"
    return None


@BACKENDS.register("cuda")
class TorchCuda(Backend):
    """PyTorch eager on a CUDA GPU (skipped with a clear line where there is none)."""

    name = "cuda"
    precisions = ("f32", "bf16", "f16")

    def unavailable_reason(self) -> str | None:
        return _cuda_reason()

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        import torch

        module, dtype = _torch_module(model, options, "cuda")
        session = _SyncedTorchSession(
            module,
            "cuda",
            dtype,
            backend=self.name,
            precision=options.precision,
            threads=options.resolved_threads(),
            details={"device": torch.cuda.get_device_name()},
        )
        return session


class _SyncedTorchSession(TorchSession):
    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        out = super().run(batch)
        torch.cuda.synchronize()
        return out


@BACKENDS.register("tensorrt")
class TensorRt(Backend):
    """TensorRT through ONNX Runtime's TensorRT execution provider (GPU only)."""

    name = "tensorrt"
    needs_onnx = True
    precisions = ("f32", "f16")
    install_hint = "pip install onnxruntime-gpu tensorrt"

    def unavailable_reason(self) -> str | None:
        reason = _cuda_reason()
        if reason:
            return reason
        import onnxruntime as ort

        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            return f"ONNX Runtime has no TensorRT provider; run: {self.install_hint}"
        return None

    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        import onnxruntime as ort

        trt_options = {"trt_fp16_enable": options.precision == "f16"}
        session = ort.InferenceSession(
            str(_require(onnx_path, self.name)),
            providers=[("TensorrtExecutionProvider", trt_options), "CUDAExecutionProvider"],
        )
        return OnnxRuntimeSession(
            session,
            backend=self.name,
            precision=options.precision,
            threads=options.resolved_threads(),
            details={"provider": "TensorrtExecutionProvider"},
        )


def _require(onnx_path: Path | None, backend: str) -> Path:
    if onnx_path is None:
        raise BackendUnavailable(f"{backend} runs an ONNX export; none was given")
    return onnx_path
