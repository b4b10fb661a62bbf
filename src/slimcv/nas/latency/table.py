"""The per-unit latency lookup table a hardware-aware search asks instead of the runtime.

Model. A network's latency on a graph runtime at batch 1 is taken to be the sum of its units'
latencies (:mod:`slimcv.nas.latency.units`), each timed alone as a tiny ONNX graph, minus what
timing a graph alone adds that the network pays only once:

    raw = sum_u (t(u) - o(u.input)) + o(network input)

where ``o(shape)`` is the cost of one ``Run()`` of an empty graph (a single Identity) on an input
of that shape: the Python call, input binding and output copy that every separately timed unit
pays. What remains unmodelled (layout reorders at the cut points, caches warmed by the previous
unit, operators fused across a cut) is absorbed by an optional linear correction
``predicted = intercept + slope * raw`` fitted on a few calibration networks by least squares
(or a slope alone, the median ratio, which resists a noisy network; see
:meth:`LatencyTable.calibrate`); they must not be the networks the table is judged on.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from slimcv.errors import SearchError, SlimcvError
from slimcv.nas.latency.timers import TIMERS, ModuleTimer, RuntimeTimer, TimingPlan
from slimcv.nas.latency.units import Shape, Unit, decompose
from slimcv.nas.space import Candidate, Genotype, SearchSpace
from slimcv.training.checkpoint import atomic_write

FORMAT = 1
_PRECISION_ALIASES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


@dataclass(frozen=True)
class Correction:
    """``predicted = intercept_ms + slope * raw``; the identity when nothing was fitted.

    Attributes:
        model: ``linear`` (intercept and slope), ``ratio`` (slope only) or ``none``.
        networks: calibration networks the fit used (0: not calibrated).
        mean_abs_error_pct: the fit's mean absolute error on those networks, in percent.
    """

    intercept_ms: float = 0.0
    slope: float = 1.0
    networks: int = 0
    mean_abs_error_pct: float | None = None
    model: str = "none"

    def apply(self, raw_ms: float) -> float:
        return self.intercept_ms + self.slope * raw_ms


def overhead_key(shape: Sequence[int]) -> str:
    """Table key of an empty graph's ``Run()`` on an input of ``shape`` (batch dropped)."""
    return "overhead@" + "x".join(str(s) for s in shape[1:])


class LatencyTable:
    """Predicts a candidate's latency on one runtime from separately timed units.

    Missing units are timed on demand and kept, so a table fills up as a search explores;
    :meth:`prefill` times a whole space up front instead. Batch 1 throughout.

    Args:
        runtime: a registered timing strategy, ``onnxruntime`` or ``openvino``.
        threads: runtime threads (and CPUs the process is pinned to) for every measurement.
        precision: ``f32`` (``fp32`` accepted); set explicitly on the runtime.
        timer: replaces the runtime strategy (tests inject a fake one); it receives
            ``(module, input_shape)`` jobs and returns milliseconds per job.
        plan: how long each module is timed (see :class:`TimingPlan`).
    """

    def __init__(
        self,
        runtime: str = "onnxruntime",
        threads: int = 1,
        precision: str = "f32",
        *,
        timer: ModuleTimer | None = None,
        plan: TimingPlan | None = None,
    ) -> None:
        TIMERS.get(runtime)  # unknown runtime: one line listing the known ones
        from slimcv.runtimes import PRECISIONS

        precision = _PRECISION_ALIASES.get(precision, precision)
        if precision not in PRECISIONS:
            raise SlimcvError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        if threads < 1:
            raise SlimcvError(f"threads must be at least 1, got {threads}")
        self.runtime = runtime
        self.threads = threads
        self.precision = precision
        self.plan = plan or TimingPlan()
        self.entries: dict[str, float] = {}
        self.correction = Correction()
        self.metadata: dict[str, Any] = {}
        #: Modules timed so far by this object (units, overheads and whole networks).
        self.timed_modules = 0
        self._timer = timer

    # -- measuring -------------------------------------------------------------------------

    @property
    def timer(self) -> ModuleTimer:
        if self._timer is None:
            self._timer = TIMERS.get(self.runtime)(self.threads, self.precision, self.plan)
        return self._timer

    def _time(self, jobs: Sequence[tuple[nn.Module, tuple[int, ...]]]) -> list[float]:
        values = list(self.timer(jobs))
        if len(values) != len(jobs):
            raise RuntimeError(f"timer returned {len(values)} values for {len(jobs)} modules")
        self.timed_modules += len(jobs)
        return values

    def _fill(self, needed: dict[str, Unit | Shape], progress: bool = False) -> int:
        """Times the entries of ``needed`` (key -> unit, or shape for an overhead) not yet
        in the table; returns how many were timed."""
        from slimcv.progress import progress_bar

        missing = [(key, what) for key, what in needed.items() if key not in self.entries]
        if not missing:
            return 0
        step = max(1, self.plan.chunk)
        with progress_bar(progress) as bar:
            task = bar.add_task("latency table", total=len(missing), status=self.runtime)
            for start in range(0, len(missing), step):
                part = missing[start : start + step]
                jobs = [
                    (what.build(), what.input_shape)
                    if isinstance(what, Unit)
                    else (nn.Identity(), what)
                    for _, what in part
                ]
                for (key, _), value in zip(part, self._time(jobs), strict=True):
                    self.entries[key] = value
                bar.update(task, advance=len(part), status=part[-1][0][:48])
        return len(missing)

    @staticmethod
    def _needed(units: Iterable[Unit], input_shape: Shape) -> dict[str, Unit | Shape]:
        needed: dict[str, Unit | Shape] = {overhead_key(input_shape): input_shape}
        for unit in units:
            needed[unit.key] = unit
            needed[overhead_key(unit.input_shape)] = unit.input_shape
        return needed

    # -- predicting ------------------------------------------------------------------------

    def units(self, candidate: Candidate, num_classes: int) -> list[Unit]:
        """The candidate's units (see :func:`~slimcv.nas.latency.units.decompose`)."""
        return decompose(candidate.spec, candidate.image_size, num_classes)

    def predict_raw(self, candidate: Candidate, num_classes: int) -> float:
        """Milliseconds: units minus their per-call overhead, plus one overhead; no fitted
        correction. Missing units are timed first."""
        units = self.units(candidate, num_classes)
        shape = (1, 3, candidate.image_size, candidate.image_size)
        self._fill(self._needed(units, shape))
        entries = self.entries
        return entries[overhead_key(shape)] + sum(
            entries[u.key] - entries[overhead_key(u.input_shape)] for u in units
        )

    def predict(self, candidate: Candidate, num_classes: int) -> float:
        """Predicted milliseconds per image at batch 1 (an estimate; see the module notes)."""
        return self.correction.apply(self.predict_raw(candidate, num_classes))

    def measure(self, candidate: Candidate, num_classes: int) -> float:
        """Milliseconds per image of the whole network, timed exactly as units are."""
        return self.measure_many([candidate], num_classes)[0]

    def measure_many(self, candidates: Sequence[Candidate], num_classes: int) -> list[float]:
        """Whole networks timed interleaved with each other (fairer on a shared machine)."""
        import torch

        from slimcv.arch import build_network

        jobs = []
        for candidate in candidates:
            torch.manual_seed(0)
            net = build_network(candidate.spec, num_classes).eval()
            jobs.append((net, (1, 3, candidate.image_size, candidate.image_size)))
        return self._time(jobs)

    # -- filling and calibrating -------------------------------------------------------------

    def prefill(
        self,
        source: SearchSpace | Iterable[Candidate],
        num_classes: int,
        *,
        progress: bool = True,
    ) -> int:
        """Times every unit ``source`` can produce before any prediction asks for it.

        Args:
            source: a space (its units are enumerated with :func:`covering_genotypes`) or
                candidates (their units only).
            num_classes: classifier outputs (only the classifier unit depends on it).
            progress: show a progress bar on stderr.

        Returns:
            How many entries were timed (entries already in the table are kept).
        """
        if isinstance(source, SearchSpace):
            candidates: Iterable[Candidate] = (source.decode(g) for g in covering_genotypes(source))
        else:
            candidates = source
        needed: dict[str, Unit | Shape] = {}
        for candidate in candidates:
            shape = (1, 3, candidate.image_size, candidate.image_size)
            needed.update(self._needed(self.units(candidate, num_classes), shape))
        return self._fill(needed, progress)

    def calibrate(
        self, candidates: Sequence[Candidate], num_classes: int, model: str = "linear"
    ) -> Correction:
        """Fits the correction on whole-network measurements of ``candidates``.

        Use networks other than those the table will be judged on.

        Args:
            model: ``linear`` fits intercept and slope by least squares; ``ratio`` fits a slope
                alone, the median of measured over raw, which one noisy network cannot pull
                (better with few calibration networks on a busy machine).

        Raises:
            SearchError: fewer than two calibration networks, or an unknown model.
        """
        if model not in ("linear", "ratio"):
            raise SearchError(f"unknown correction model {model!r}; known: linear, ratio")
        if len(candidates) < 2:
            raise SearchError(f"calibration needs at least 2 networks, got {len(candidates)}")
        raw = np.array([self.predict_raw(c, num_classes) for c in candidates])
        measured = np.array(self.measure_many(candidates, num_classes))
        if model == "linear" and np.ptp(raw) > 0:
            slope, intercept = np.polyfit(raw, measured, 1)
        else:
            slope, intercept = float(np.median(measured / raw)), 0.0
        fitted = intercept + slope * raw
        error = float(np.mean(np.abs(fitted - measured) / measured) * 100)
        self.correction = Correction(
            float(intercept), float(slope), len(candidates), error, model=model
        )
        return self.correction

    # -- persistence -----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Metadata saved with the table: how every entry was obtained."""
        from slimcv.measure.machine import machine_info

        machine = machine_info()
        injected = self._timer is not None and not isinstance(self._timer, RuntimeTimer)
        version = "injected timer" if injected else TIMERS.get(self.runtime).version()
        return {
            "runtime": self.runtime,
            "runtime_version": version,
            "threads": self.threads,
            "precision": self.precision,
            "batch": 1,
            "statistic": (
                f"smallest of {self.plan.rounds} interleaved round medians per module; "
                "units exported alone (BatchNorm folded) and timed as tiny graphs"
            ),
            "timing": self.plan.to_dict(),
            "machine": {
                key: machine.get(key) for key in ("cpu", "cpu_flags", "logical_cpus", "affinity")
            },
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def save(self, path: str | Path) -> Path:
        """Writes the table as JSON, atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.metadata = {**self.metadata, **self.describe()}
        data = {
            "format": FORMAT,
            "metadata": self.metadata,
            "correction": asdict(self.correction),
            "entries": dict(sorted(self.entries.items())),
        }
        text = json.dumps(data, indent=1) + "\n"
        atomic_write(path, lambda fh: fh.write(text.encode()))
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, timer: ModuleTimer | None = None, plan: TimingPlan | None = None
    ) -> LatencyTable:
        """Reads a table written by :meth:`save`; runtime, threads and precision come from it.

        Raises:
            SearchError: the file is missing or not a latency table.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            meta = data["metadata"]
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            table = cls(
                meta["runtime"],
                int(meta["threads"]),
                meta["precision"],
                timer=timer,
                plan=plan or TimingPlan(**meta.get("timing", {})),
            )
            table.entries = {str(k): float(v) for k, v in data["entries"].items()}
            table.correction = Correction(**data.get("correction", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SearchError(f"{path} is not a readable latency table: {exc}") from None
        table.metadata = meta
        return table


_STAGE_DIM = re.compile(r"^(.*?)(\d+)$")


def covering_genotypes(space: SearchSpace) -> list[Genotype]:
    """Genotypes whose units together are all the units ``space`` can produce.

    Dimensions whose name ends in a number (``k2``, ``e2``) are taken to belong to that stage
    and to change only that stage's blocks; the others (``resolution``, ``width``) are global.
    For every combination of the global choices, the stages walk through their own
    combinations side by side, so the count is the product of the global choices times the
    largest stage's combinations, not the size of the space. A space that breaks the
    convention only leaves units out; the table then times them when first asked.
    """
    stages: dict[str, list[Any]] = {}
    global_dims = []
    for dim in space.dimensions:
        match = _STAGE_DIM.match(dim.name)
        if match:
            stages.setdefault(match.group(2), []).append(dim)
        else:
            global_dims.append(dim)
    stage_combos = {
        stage: list(itertools.product(*(d.choices for d in dims))) for stage, dims in stages.items()
    }
    longest = max((len(c) for c in stage_combos.values()), default=1)
    genotypes: list[Genotype] = []
    for values in itertools.product(*(d.choices for d in global_dims)):
        base = {d.name: v for d, v in zip(global_dims, values, strict=True)}
        for index in range(longest):
            genotype = dict(base)
            for stage, dims in stages.items():
                combo = stage_combos[stage][index % len(stage_combos[stage])]
                genotype.update({d.name: v for d, v in zip(dims, combo, strict=True)})
            genotypes.append(genotype)
    return genotypes
