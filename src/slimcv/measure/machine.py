"""What machine a benchmark ran on: enough to tell whether two results are comparable."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: CPU features that decide which kernels the runtimes pick (f32, bf16 and int8 paths).
_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
_PACKAGES = ("torch", "onnxruntime", "openvino", "numpy")


def machine_info() -> dict[str, Any]:
    """CPU model and features, cores, affinity, OS and runtime versions (no runtime imported)."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        affinity = []
    return {
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": _cpu_id(cpu),
        "cpu_flags": [flag for flag in _FLAGS if flag in flags],
        "logical_cpus": os.cpu_count(),
        "affinity": affinity,
        "memory_bytes": _mem_total(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("slimcv", *_PACKAGES)},
    }


def _cpuinfo() -> dict[str, str]:
    """The first processor block of ``/proc/cpuinfo`` (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_id(cpu: dict[str, str]) -> str | None:
    # VMs often hide the marketing name ("AMD EPYC"); family/model still tell the generation.
    if "cpu family" not in cpu:
        return None
    return (
        f"{cpu.get('vendor_id', '?')} family {cpu['cpu family']} model {cpu.get('model', '?')} "
        f"stepping {cpu.get('stepping', '?')}"
    )


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide and own CPU time at one instant, to see what else ran during a loop."""

    wall_s: float
    busy_s: float | None
    steal_s: float | None
    own_s: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        busy = steal = None
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()
            ticks = [int(v) for v in fields[1:]]
            hz = os.sysconf("SC_CLK_TCK")
            # user nice system idle iowait irq softirq steal ...; guest time is inside user.
            busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / hz
            steal = ticks[7] / hz if len(ticks) > 7 else 0.0
        except (OSError, ValueError, IndexError):
            pass
        times = os.times()
        return cls(time.perf_counter(), busy, steal, times.user + times.system)


def interference(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Cores used by other processes, and stolen by the hypervisor, between two snapshots.

    Figures taken while something else ran are slower and noisier; reporting how much else ran
    lets a reader discount them instead of guessing. Resolution is the kernel tick (10 ms), so
    loops shorter than a second give rough values.
    """
    wall = after.wall_s - before.wall_s
    if wall <= 0 or before.busy_s is None or after.busy_s is None:
        return {}
    own = after.own_s - before.own_s
    other = max(0.0, (after.busy_s - before.busy_s) - own)
    steal = max(0.0, (after.steal_s or 0.0) - (before.steal_s or 0.0))
    return {"other_load_cores": round(other / wall, 2), "steal_cores": round(steal / wall, 2)}
