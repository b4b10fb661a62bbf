"""Energy per image: measured where the machine has a meter, otherwise a labelled estimate.

Meters are a small registry tried in order for the device a backend runs on: the RAPL package
counters of the Linux powercap interface (Intel, and AMD since Zen), NVML for NVIDIA GPUs,
and, for CPUs only, an estimate from busy cores and latency whose assumption is spelled out in
the method string. RAPL is often absent or root-only inside VMs, so its absence is expected and
explained rather than treated as an error.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from slimcv.registry import Registry

RAPL_ROOT = Path("/sys/class/powercap")
#: Zen 4/5 EPYC parts have 3-6 W of TDP per core at full load (e.g. 9654: 360 W / 96 cores).
ESTIMATE_WATTS_PER_CORE = 5.0
#: Backends that run on an NVIDIA GPU, whose energy NVML measures.
GPU_BACKENDS = frozenset({"cuda", "tensorrt"})


@dataclass(frozen=True)
class EnergyReading:
    """Energy per image and how it was obtained.

    Attributes:
        mj_per_image: millijoules per image, or ``None`` where nothing could measure it.
        method: how the figure was obtained (or why there is none); estimates start with
            ``estimate:``.
    """

    mj_per_image: float | None
    method: str

    @property
    def is_estimate(self) -> bool:
        return self.method.startswith("estimate")


class EnergyMeter(abc.ABC):
    """Reads energy around the timed loop of one (backend, batch) measurement."""

    name: ClassVar[str]
    #: ``cpu`` and/or ``gpu``: the devices whose energy this meter can account for.
    devices: ClassVar[frozenset[str]]

    def unavailable_reason(self) -> str | None:
        """Why this meter cannot be used here, or ``None``."""
        return None

    @abc.abstractmethod
    def start(self) -> Any:
        """Takes the reading before the timed loop; the result is passed to :meth:`stop`."""

    @abc.abstractmethod
    def stop(self, start: Any, *, images: int, busy_s: float, threads: int) -> EnergyReading:
        """Turns the readings around a loop of ``images`` images into millijoules per image.

        Args:
            start: what :meth:`start` returned.
            images: images processed by the timed calls (calls x batch).
            busy_s: seconds spent inside the timed calls.
            threads: cores the runtime was pinned to.
        """


ENERGY_METERS: Registry[type[EnergyMeter]] = Registry("energy meter")


@ENERGY_METERS.register("rapl")
class RaplMeter(EnergyMeter):
    """Sum of the RAPL package counters (``intel-rapl:N/energy_uj``), wrap-around handled.

    The counters cover the whole package, so other load on the machine is included.
    """

    name = "rapl"
    devices = frozenset({"cpu"})
    method = "RAPL package counter (whole package; includes other load on the machine)"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else RAPL_ROOT

    def zones(self) -> list[Path]:
        """Top-level package zones only: sub-zones (``intel-rapl:0:0``) are already inside."""
        if not self.root.is_dir():
            return []
        return sorted(
            p for p in self.root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name)
        )

    def unavailable_reason(self) -> str | None:
        zones = self.zones()
        if not zones:
            return f"no RAPL counters under {self.root} (usual inside VMs)"
        try:
            self._read()
        except (OSError, ValueError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"RAPL counters unreadable ({detail}; root-only since Linux 5.10)"
        return None

    def start(self) -> dict[str, tuple[int, int]]:
        return self._read()

    def stop(
        self, start: dict[str, tuple[int, int]], *, images: int, busy_s: float, threads: int
    ) -> EnergyReading:
        end = self._read()
        total_uj = sum(
            counter_delta(start[zone][0], end[zone][0], end[zone][1])
            for zone in start
            if zone in end
        )
        return EnergyReading(total_uj / 1000 / max(images, 1), self.method)

    def _read(self) -> dict[str, tuple[int, int]]:
        """Zone name -> (energy in microjoules, the counter's wrap-around range)."""
        readings = {}
        for zone in self.zones():
            energy = int((zone / "energy_uj").read_text())
            try:
                max_range = int((zone / "max_energy_range_uj").read_text())
            except OSError:
                max_range = 0
            readings[zone.name] = (energy, max_range)
        return readings


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Difference of a counter that wraps to zero after ``max_range`` (RAPL does, often)."""
    if after >= before:
        return after - before
    return after + max_range - before if max_range > 0 else 0


@ENERGY_METERS.register("nvml")
class NvmlMeter(EnergyMeter):
    """NVIDIA's total-energy counter of GPU 0 (Volta or newer), through ``pynvml``."""

    name = "nvml"
    devices = frozenset({"gpu"})
    method = "NVML total energy counter of GPU 0"

    def unavailable_reason(self) -> str | None:
        try:
            import pynvml
        except ImportError:
            return "pynvml is not installed; run: pip install nvidia-ml-py"
        try:
            pynvml.nvmlInit()
            pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception as exc:  # noqa: BLE001 - NVMLError has one subclass per cause
            return f"NVML energy counter unavailable ({exc})"
        return None

    def start(self) -> tuple[Any, int]:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return handle, pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def stop(
        self, start: tuple[Any, int], *, images: int, busy_s: float, threads: int
    ) -> EnergyReading:
        import pynvml

        handle, before_mj = start
        after_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return EnergyReading((after_mj - before_mj) / max(images, 1), self.method)


@ENERGY_METERS.register("estimate")
class EstimateMeter(EnergyMeter):
    """Watts per busy core x pinned cores x time per image; a model, not a measurement."""

    name = "estimate"
    devices = frozenset({"cpu"})

    def __init__(self, watts_per_core: float = ESTIMATE_WATTS_PER_CORE, why: str = "") -> None:
        self.watts_per_core = watts_per_core
        self.why = why

    @property
    def method(self) -> str:
        why = f"; {self.why}" if self.why else ""
        return (
            f"estimate: assumes {self.watts_per_core:g} W per busy core x threads x mean latency "
            f"(a loaded Zen 4/5 EPYC core draws about 3-6 W){why}"
        )

    def start(self) -> None:
        return None

    def stop(self, start: None, *, images: int, busy_s: float, threads: int) -> EnergyReading:
        joules = self.watts_per_core * threads * busy_s
        return EnergyReading(joules * 1000 / max(images, 1), self.method)


def select_meter(backend: str) -> tuple[EnergyMeter | None, str]:
    """The best meter for where ``backend`` runs.

    Returns:
        The meter, or ``None`` and why no meter fits (the estimate covers CPUs only: a GPU
        figure built on CPU-core watts would be meaningless).
    """
    device = "gpu" if backend in GPU_BACKENDS else "cpu"
    passed_over: list[str] = []
    for name in ENERGY_METERS:
        cls = ENERGY_METERS.get(name)
        if device not in cls.devices:
            continue
        if cls is EstimateMeter:
            return EstimateMeter(why="; ".join(passed_over)), ""
        meter = cls()
        reason = meter.unavailable_reason()
        if reason is None:
            return meter, ""
        passed_over.append(f"{name}: {reason}")
    return None, "; ".join(passed_over) or f"no energy meter for {device}"
