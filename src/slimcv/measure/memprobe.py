"""Child process of the peak-memory probe: ``python -m slimcv.measure.memprobe ...``.

It imports what the backend needs, notes the resident memory (the baseline), loads the model
(an artifact directory for PyTorch backends, the ONNX file otherwise), runs a few inferences and
writes the peak resident memory as JSON to ``--out``. Running in a fresh process is what makes
the peak belong to this model on this backend alone: the benchmarking process has held other
runtimes and models before.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
from pathlib import Path
from typing import Any

#: Runtime packages imported before the baseline, so the baseline holds the runtime's code
#: and the increase is what this model costs on it.
_RUNTIME_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "tensorrt": "onnxruntime",
    "openvino": "openvino",
}
#: Model-zoo libraries an artifact's source string rebuilds the architecture from; their code
#: (torchvision.models alone is about 170 MB resident) belongs in the baseline too.
_ZOO_PACKAGES = {"torchvision": "torchvision.models", "timm": "timm"}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    Read from ``VmHWM``, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``fork`` +
    ``exec``, so a probe started by a large benchmarking process would report the parent's peak.
    ``ru_maxrss`` remains the fallback where procfs is missing.
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # KiB on Linux


def current_rss_bytes() -> int:
    """Resident set size now (``VmRSS``); falls back to the peak where procfs is missing."""
    rss = _proc_status_bytes("VmRSS")
    return rss if rss is not None else peak_rss_bytes()


def _proc_status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024  # always kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Loads, runs and measures; see the module docstring."""
    import numpy as np

    from slimcv.runtimes import RuntimeOptions, get_backend
    from slimcv.sources.model import LoadedModel, Preprocess

    backend = get_backend(args.backend)
    if args.backend in _RUNTIME_PACKAGES:
        importlib.import_module(_RUNTIME_PACKAGES[args.backend])
    if args.artifact:
        from slimcv.sources.artifact import read_manifest
        from slimcv.sources.grammar import parse_source
        from slimcv.sources.loader import load_model

        kind = parse_source(str(read_manifest(args.artifact)["source"])).kind
        if kind in _ZOO_PACKAGES:
            importlib.import_module(_ZOO_PACKAGES[kind])
    baseline = current_rss_bytes()

    if args.artifact:
        model = load_model(args.artifact)
        onnx_path = None
    else:
        # Built directly: load_model would parse and check the whole ONNX proto in this process,
        # which no deployment does and which would inflate the peak.
        onnx_path = Path(args.onnx)
        model = LoadedModel(
            source=str(onnx_path),
            num_classes=args.num_classes,
            preprocess=Preprocess(image_size=args.image_size),
            onnx_path=onnx_path,
        )
    session = backend.open(model, RuntimeOptions(args.precision, args.threads), onnx_path)
    batch = np.random.default_rng(args.seed).standard_normal(
        model.input_shape(args.batch), dtype=np.float32
    )
    for _ in range(args.runs):
        session.run(batch)
    return {
        "peak_rss_bytes": peak_rss_bytes(),
        "baseline_rss_bytes": baseline,
        "runs": args.runs,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slimcv.measure.memprobe")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--num-classes", type=int, default=1000)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", help="artifact directory (PyTorch backends)")
    source.add_argument("--onnx", help="ONNX file (ONNX backends)")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = probe(args)
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent, not raised
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        result = {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")}
    Path(args.out).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
