"""Peak memory of one (backend, batch), measured in a fresh subprocess.

The benchmarking process has imported several runtimes and held several sessions, so its own
peak says nothing about one model on one runtime. A child process
(:mod:`slimcv.measure.memprobe`) imports the runtime, notes its resident memory, loads the model,
runs a few inferences and reports its peak resident memory; the difference is what the model
costs on that runtime. A probe that fails gives no figure and a reason, never an exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slimcv.errors import SlimcvError

MEMORY_METHOD = "peak RSS (VmHWM) of an isolated subprocess; baseline: its RSS after imports"
PROBE_RUNS = 3
PROBE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ProbeRequest:
    """What the child process loads and runs.

    Attributes:
        artifact: artifact directory, for backends that run the PyTorch module.
        onnx: ONNX file, for backends that run the ONNX export. Exactly one of the two is set.
        runs: inferences before the peak is read (the first allocates the most).
    """

    backend: str
    precision: str
    threads: int
    batch: int
    image_size: int
    num_classes: int
    artifact: Path | None = None
    onnx: Path | None = None
    runs: int = PROBE_RUNS
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.artifact is None) == (self.onnx is None):
            raise SlimcvError("a memory probe needs exactly one of an artifact or an ONNX file")
        if self.batch < 1 or self.threads < 1 or self.runs < 1:
            raise SlimcvError("a memory probe needs batch, threads and runs of at least 1")

    def argv(self) -> list[str]:
        source = ["--artifact", str(self.artifact)] if self.artifact else ["--onnx", str(self.onnx)]
        return [
            "--backend",
            self.backend,
            "--precision",
            self.precision,
            "--threads",
            str(self.threads),
            "--batch",
            str(self.batch),
            "--runs",
            str(self.runs),
            "--seed",
            str(self.seed),
            "--image-size",
            str(self.image_size),
            "--num-classes",
            str(self.num_classes),
            *source,
        ]


@dataclass(frozen=True)
class MemoryReading:
    """Peak resident memory of the probe, or why there is none.

    Attributes:
        peak_bytes: peak RSS of the child process.
        baseline_bytes: its RSS after imports, before the model was loaded.
        error: why the probe gave no figure.
    """

    peak_bytes: int | None
    baseline_bytes: int | None
    method: str = MEMORY_METHOD
    error: str | None = None

    @property
    def increase_bytes(self) -> int | None:
        """What loading and running the model added over the baseline."""
        if self.peak_bytes is None or self.baseline_bytes is None:
            return None
        return self.peak_bytes - self.baseline_bytes


def probe_memory(request: ProbeRequest, timeout_s: float = PROBE_TIMEOUT_S) -> MemoryReading:
    """Runs the probe in a fresh Python process and reads its result."""
    with tempfile.TemporaryDirectory(prefix="slimcv-memprobe-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "slimcv.measure.memprobe", *request.argv(), "--out", str(out)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=_child_env()
            )
        except subprocess.TimeoutExpired:
            return _failed(f"memory probe timed out after {timeout_s:g} s")
        except OSError as exc:
            return _failed(f"memory probe could not start: {exc}")
        try:
            data = json.loads(out.read_text())
        except (OSError, json.JSONDecodeError):
            tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return _failed(
                f"memory probe exited with code {proc.returncode}"
                + (f": {tail[-1][:300]}" if tail else "")
            )
    if "error" in data:
        return _failed(f"memory probe failed: {data['error'][:300]}")
    return MemoryReading(
        peak_bytes=int(data["peak_rss_bytes"]), baseline_bytes=int(data["baseline_rss_bytes"])
    )


def _failed(reason: str) -> MemoryReading:
    return MemoryReading(peak_bytes=None, baseline_bytes=None, error=reason)


def _child_env() -> dict[str, str]:
    # The child must import exactly what this process imports (slimcv from a source tree, a
    # user's `pkg.mod:fn` model), so it gets this process's import path.
    env = dict(os.environ)
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
