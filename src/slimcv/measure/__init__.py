"""Honest measurements: latency and throughput per runtime and batch, peak memory, energy.

Every figure says how it was obtained (runtime, precision, threads, batch, warm-up, runs,
machine); estimates say they are estimates.
"""

from slimcv.measure.agreement import top1_agreement
from slimcv.measure.config import BenchConfig
from slimcv.measure.energy import ENERGY_METERS, EnergyReading, select_meter
from slimcv.measure.machine import machine_info
from slimcv.measure.memory import MemoryReading, ProbeRequest, probe_memory
from slimcv.measure.results import BenchRecord, BenchResult
from slimcv.measure.runner import bench
from slimcv.measure.stats import LatencyStats

__all__ = [
    "ENERGY_METERS",
    "BenchConfig",
    "BenchRecord",
    "BenchResult",
    "EnergyReading",
    "LatencyStats",
    "MemoryReading",
    "ProbeRequest",
    "bench",
    "machine_info",
    "probe_memory",
    "select_meter",
    "top1_agreement",
]
