"""``slimcv.nas.search``: hardware-aware architecture search, from space to Pareto front.

The driver loop is deliberately plain: the strategy proposes a batch of genotypes (as many as
there are workers), the driver decodes them, skips candidates already evaluated (cache by
:attr:`Candidate.key`), predicts each new one's latency from the lookup table (timing missing
units on the target runtime *now*, while no trial runs, so timings are not disturbed), marks
those over the latency budget infeasible, and hands the rest to the
:class:`~slimcv.nas.runner.TrialRunner`. Every outcome goes back to the strategy. When the
trial budget is spent, the Pareto front of the feasible trials is measured end to end on the
runtime (``measure``), so the report gives predicted and measured latency side by side.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimcv.errors import ArtifactError, SearchError
from slimcv.nas.estimators.base import Estimate, EstimatorContext
from slimcv.nas.objectives import Objective, parse_objectives
from slimcv.nas.pareto import pareto_front
from slimcv.nas.space import Candidate, Genotype, SearchSpace, get_space

#: Data sources whose images are small (8x8 digits, 16x16 synthetic): searched at 32 pixels.
SMALL_DATA = ("digits", "synthetic")


@dataclass
class SearchConfig:
    """How to search.

    Attributes:
        objectives: comma-separated or listed, e.g. ``accuracy,latency:onnxruntime``; see
            :mod:`slimcv.nas.objectives`.
        trials: candidates to evaluate (duplicates and infeasible candidates do not count).
        strategy: ``random``, ``evolution`` or ``nsga2``.
        estimator: ``short-train``, ``zero-cost`` or ``supernet``.
        epochs: training epochs per candidate for ``short-train`` (and the baseline).
        batch_size: training batch size for ``short-train``.
        lr: peak learning rate for ``short-train``.
        workers: trials evaluated at once; more than 1 (or ``ray_address``) uses Ray.
        ray_address: an existing Ray cluster to run trials on.
        threads: torch threads per trial; default: this machine's CPUs / ``workers``.
        latency_budget_ms: candidates *predicted* slower than this are infeasible.
        latency_threads: runtime threads for latency predictions and measurements.
        latency_table: a saved latency table (JSON) to start from; missing units are timed.
        baseline: a model to beat, an ``arch:`` source (trained with the same estimator and
            budget, latency measured the same way).
        seed: seeds the strategy, the estimator, data splits and initialisation.
        image_size: the data's full resolution; the space searches at or below it
            (default 32 for digits/synthetic, else 224).
        strategy_options: keyword options of the strategy (e.g. ``population_size``).
        estimator_options: extra options of the estimator (e.g. ``proxies`` for zero-cost).
    """

    objectives: tuple[str, ...] | str = ("accuracy", "latency:onnxruntime")
    trials: int = 20
    strategy: str = "nsga2"
    estimator: str = "short-train"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-3
    workers: int = 1
    ray_address: str | None = None
    threads: int | None = None
    latency_budget_ms: float | None = None
    latency_threads: int = 1
    latency_table: str | None = None
    baseline: str | None = None
    seed: int = 0
    image_size: int | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    estimator_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from slimcv.nas.estimators import ESTIMATORS
        from slimcv.nas.strategies import STRATEGIES

        parsed = parse_objectives(self.objectives)
        self.objectives = tuple(o.key for o in parsed)
        if self.trials < 1:
            raise SearchError(f"trials must be at least 1, got {self.trials}")
        if self.workers < 1:
            raise SearchError(f"workers must be at least 1, got {self.workers}")
        if self.epochs < 1:
            raise SearchError(f"epochs must be at least 1, got {self.epochs}")
        if self.threads is not None and self.threads < 1:
            raise SearchError(f"threads must be at least 1, got {self.threads}")
        if self.image_size is not None and self.image_size < 8:
            raise SearchError(f"image size must be at least 8, got {self.image_size}")
        if self.latency_budget_ms is not None:
            if self.latency_budget_ms <= 0:
                raise SearchError(f"latency budget must be positive, got {self.latency_budget_ms}")
            if not any(o.name == "latency" for o in parsed):
                raise SearchError(
                    "a latency budget needs a latency objective (e.g. latency:onnxruntime)"
                )
        _known(STRATEGIES, self.strategy)
        _known(ESTIMATORS, self.estimator)

    @property
    def parsed_objectives(self) -> tuple[Objective, ...]:
        return parse_objectives(self.objectives)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objectives"] = list(self.objectives)
        return data


def _known(registry: Any, name: str) -> None:
    try:
        registry.get(name)
    except KeyError as exc:  # UnknownNameError: re-raised as the search's own error
        raise SearchError(str(exc)) from None


@dataclass
class TrialRecord:
    """One evaluated (or rejected) candidate.

    Attributes:
        index: order of evaluation, from 0.
        key: the candidate's identity (spec string ``@`` resolution).
        genotype: the point of the space.
        spec: the canonical spec string (``arch:<spec>`` rebuilds it).
        resolution: input side in pixels.
        status: ``ok``, ``infeasible`` (predicted over the latency budget, not trained) or
            ``failed`` (see ``error``).
        metrics: ``accuracy`` (the estimator's score), ``params``, ``macs``, ``size`` (FP32
            bytes) and, with a latency objective, ``latency:RUNTIME`` (predicted ms).
        seconds: wall time of the trial in its worker.
        worker: ``host:pid`` of the process that ran it (``driver`` for rejected ones).
        details: the estimator's extra figures (proxy values, train top-1...).
    """

    index: int
    key: str
    genotype: Genotype
    spec: str
    resolution: int
    status: str
    metrics: dict[str, float]
    seconds: float = 0.0
    worker: str = "driver"
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FrontMember:
    """A Pareto-optimal trial with its end-to-end measured latency.

    Attributes:
        trial: index into :attr:`SearchResult.trials`.
        latency_predicted_ms: from the lookup table (what the search optimised).
        latency_measured_ms: the whole network timed on the runtime after the search.
        dominates_baseline: better than the baseline in every objective (measured latency).
        artifact: the reloadable artifact directory, when outputs were written.
        trained: whether the artifact holds trained weights (``short-train``, ``supernet``).
    """

    trial: int
    key: str
    spec: str
    resolution: int
    metrics: dict[str, float]
    latency_predicted_ms: float | None = None
    latency_measured_ms: float | None = None
    dominates_baseline: bool | None = None
    artifact: str | None = None
    trained: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaselineResult:
    """The reference model, evaluated like a trial."""

    source: str
    spec: str
    resolution: int
    metrics: dict[str, float]
    latency_predicted_ms: float | None = None
    latency_measured_ms: float | None = None
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """What a search found; ``to_dict()`` is ``slimcv search --json``.

    Attributes:
        space: the space's name.
        data: the data source.
        image_size: the full resolution searched at or below.
        num_classes: classifier outputs.
        config: the :class:`SearchConfig` as a dict.
        objectives: ``[{"key", "direction"}]`` in order.
        score_is_accuracy: False when ``accuracy`` is a zero-cost proxy, not a top-1.
        trials: every trial, in evaluation order.
        front: the Pareto front of the feasible trials.
        baseline: the baseline's figures, when one was given.
        duplicates: proposals answered from the cache instead of re-evaluated.
        seconds: wall time of the whole search.
        message: a plain statement when the front is empty (nothing feasible).
        latency: how latency was obtained (runtime, threads, table facts), or ``None``.
        out_dir: where the outputs were written, or ``None``.
    """

    space: str
    data: str
    image_size: int
    num_classes: int
    config: dict[str, Any]
    objectives: list[dict[str, str]]
    estimator: str
    score_is_accuracy: bool
    trials: list[TrialRecord]
    front: list[FrontMember]
    baseline: BaselineResult | None = None
    duplicates: int = 0
    seconds: float = 0.0
    message: str | None = None
    latency: dict[str, Any] | None = None
    out_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dominating(self) -> list[FrontMember]:
        """Front members that beat the baseline in every objective."""
        return [m for m in self.front if m.dominates_baseline]

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "data": self.data,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "config": self.config,
            "objectives": self.objectives,
            "estimator": self.estimator,
            "score_is_accuracy": self.score_is_accuracy,
            "trials": [t.to_dict() for t in self.trials],
            "front": [m.to_dict() for m in self.front],
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "dominating_baseline": [m.trial for m in self.dominating],
            "duplicates": self.duplicates,
            "seconds": self.seconds,
            "message": self.message,
            "latency": self.latency,
            "out_dir": self.out_dir,
            "notes": self.notes,
        }


def default_image_size(data: str) -> int:
    """32 pixels for the small built-in data sources, 224 otherwise."""
    return 32 if data.split(":")[0] in SMALL_DATA else 224


def smallest_genotype(space: SearchSpace) -> Genotype:
    """The cheapest point: every dimension at its smallest choice (least depth, width,
    resolution, kernel, expansion; no SE) - the latency budget's feasibility check."""
    return {d.name: min(d.choices) for d in space.dimensions}


def search(
    space: SearchSpace | str,
    data: str,
    config: SearchConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
    latency_table: Any = None,
) -> SearchResult:
    """Searches ``space`` for the Pareto front of ``config.objectives`` on ``data``.

    Args:
        space: a :class:`SearchSpace` or a registered space name (``mobilenetv2``).
        data: a data source (``digits``, an image folder...); its train split trains or scores
            candidates and its val split gives ``short-train``'s top-1.
        config: how to search (defaults: 20 trials of NSGA-II, 2-epoch short training).
        out_dir: write ``trials.json``, ``front.json``, ``front.md``, ``front.png`` and one
            artifact per front member under ``front/<i>/``; ``None`` writes nothing.
        force: replace an existing non-empty ``out_dir``.
        progress: show a progress bar on stderr.
        latency_table: a :class:`~slimcv.nas.latency.LatencyTable` to use instead of building
            one (e.g. with an injected timer); its runtime must match the objective.

    Raises:
        SearchError: unknown objective, strategy or estimator; a latency budget that even the
            smallest architecture of the space misses; every trial failed.
        UnknownNameError: unknown space.
        DataError: bad or unlabeled data.
        ArtifactError: ``out_dir`` exists and is not empty, without ``force``.
    """
    from slimcv.data import load_data
    from slimcv.nas.estimators import ESTIMATORS
    from slimcv.nas.runner import TrialRunner
    from slimcv.nas.strategies import STRATEGIES
    from slimcv.sources.artifact import staging_dir

    config = config or SearchConfig()
    start = time.perf_counter()
    objectives = config.parsed_objectives
    given_size = None if isinstance(space, str) else getattr(space, "image_size", None)
    image_size = config.image_size or given_size or default_image_size(data)
    if isinstance(space, str):
        space = get_space(space, image_size)
    out = _check_out(out_dir, force)
    bundle = load_data(data, image_size=image_size, seed=config.seed)
    bundle.require_labels("search")
    num_classes = bundle.num_classes
    latency_objective = next((o for o in objectives if o.name == "latency"), None)
    table = _latency_table(config, latency_objective, latency_table)
    if table is not None and config.latency_budget_ms is not None:
        _check_budget(space, table, num_classes, config.latency_budget_ms, latency_objective)
    baseline_candidate = _baseline_candidate(config.baseline, image_size)
    workers = config.workers
    threads = config.threads or max(1, (os.cpu_count() or 1) // workers)
    estimator_options = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        **config.estimator_options,
    }
    with _maybe_staging(out, staging_dir) as stage:
        context = EstimatorContext(
            data=data,
            num_classes=num_classes,
            image_size=image_size,
            seed=config.seed,
            work_dir=(stage / "work") if stage else None,
            threads=threads,
            options=estimator_options,
        )
        estimator = ESTIMATORS.get(config.estimator)(context)
        estimator.prepare(space)
        try:
            strategy = STRATEGIES.get(config.strategy)(
                space, objectives, config.seed, **config.strategy_options
            )
        except (TypeError, ValueError) as exc:
            raise SearchError(f"strategy {config.strategy}: {exc}") from None
        loop = _SearchLoop(space, objectives, strategy, table, num_classes, config)
        with TrialRunner(
            estimator,
            num_classes,
            workers=workers,
            address=config.ray_address,
            threads=threads,
        ) as runner:
            loop.run(runner, progress)
            baseline = (
                _evaluate_baseline(runner, baseline_candidate, config.baseline, table, num_classes)
                if baseline_candidate is not None and config.baseline is not None
                else None
            )
        ok = [r for r in loop.records if r.status == "ok"]
        if loop.records and not ok and not any(r.status == "infeasible" for r in loop.records):
            first = next(r.error for r in loop.records if r.error)
            raise SearchError(f"every trial failed; the first: {first}")
        front = _front(ok, objectives, table, num_classes, baseline, latency_objective)
        message = None
        if not front:
            message = (
                f"no architecture met the latency budget of {config.latency_budget_ms} ms: all "
                f"{len(loop.records)} proposed candidates were predicted slower; the front is "
                "empty (raise --latency-budget-ms)"
                if config.latency_budget_ms is not None
                else "no trial succeeded; the front is empty"
            )
        result = SearchResult(
            space=space.name,
            data=data,
            image_size=image_size,
            num_classes=num_classes,
            config=config.to_dict(),
            objectives=[{"key": o.key, "direction": o.direction} for o in objectives],
            estimator=config.estimator,
            score_is_accuracy=bool(getattr(estimator, "is_accuracy", True)),
            trials=loop.records,
            front=front,
            baseline=baseline,
            duplicates=loop.duplicates,
            message=message,
            latency=_latency_facts(table),
            notes=_notes(estimator, table, config, loop),
        )
        if stage is not None:
            from slimcv.nas.output import write_outputs

            if table is not None:
                table.save(stage / "latency_table.json")
            result.out_dir = str(out)
            write_outputs(stage, out, result, loop.weights, bundle.classes)
        result.seconds = time.perf_counter() - start
        if stage is not None:
            from slimcv.nas.output import write_json

            write_json(stage / "search.json", result.to_dict())
    if table is not None and config.latency_table:
        table.save(config.latency_table)  # the next search starts from every unit timed here
    return result


def _check_out(out_dir: str | Path | None, force: bool) -> Path | None:
    if out_dir is None:
        return None
    out = Path(out_dir).resolve()
    if out.exists():
        if not out.is_dir():
            raise ArtifactError(f"--out {out_dir} exists and is a file")
        if any(out.iterdir()) and not force:
            raise ArtifactError(
                f"--out {out_dir} exists and is not empty; choose another or add --force"
            )
    return out


def _maybe_staging(out: Path | None, staging_dir: Any) -> Any:
    """Outputs are written to a temporary sibling renamed into place at the end."""
    return staging_dir(out) if out is not None else contextlib.nullcontext()


def _latency_table(config: SearchConfig, objective: Objective | None, given: Any) -> Any:
    if objective is None:
        return None
    if given is not None:
        if given.runtime != objective.runtime:
            raise SearchError(
                f"the latency table is for {given.runtime}, the objective is {objective.key}"
            )
        return given
    from slimcv.nas.latency import latency_table

    path = (
        config.latency_table
        if config.latency_table and Path(config.latency_table).is_file()
        else None
    )
    return latency_table(objective.key, threads=config.latency_threads, path=path)


def _check_budget(
    space: SearchSpace, table: Any, num_classes: int, budget: float, objective: Any
) -> None:
    smallest = space.decode(smallest_genotype(space))
    predicted = table.predict(smallest, num_classes)
    if predicted > budget:
        raise SearchError(
            f"no architecture of space {space.name} can meet the latency budget of {budget:g} ms: "
            f"even the smallest ({smallest.key}) is predicted at {predicted:.3f} ms on "
            f"{objective.runtime}"
        )


def _baseline_candidate(source: str | None, image_size: int) -> Candidate | None:
    if source is None:
        return None
    text = source.strip()
    if not text.startswith("arch:"):
        raise SearchError(
            f"--baseline must be an arch: source (a family or spec string) so the same "
            f"estimator can train it, got {source!r}"
        )
    from slimcv.arch.families import resolve_arch

    spec, _resolution = resolve_arch(text[len("arch:") :])
    return Candidate(spec, image_size, {})


def _evaluate_baseline(
    runner: Any, candidate: Candidate, source: str, table: Any, num_classes: int
) -> BaselineResult:
    (outcome,) = runner.run([candidate])
    metrics = _metrics(outcome.estimate, outcome)
    predicted = None
    if table is not None:
        predicted = table.predict(candidate, num_classes)
    return BaselineResult(
        source=source,
        spec=candidate.spec.to_string(),
        resolution=candidate.image_size,
        metrics=metrics,
        latency_predicted_ms=predicted,
        seconds=outcome.seconds,
        error=outcome.error,
    )


def _metrics(estimate: Estimate | None, outcome: Any) -> dict[str, float]:
    metrics: dict[str, float] = {
        "params": outcome.params,
        "macs": outcome.macs,
        "size": outcome.size_bytes,
    }
    if estimate is not None:
        metrics["accuracy"] = estimate.score
    return metrics


class _SearchLoop:
    """Propose, deduplicate, predict latency, filter by budget, evaluate, observe."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: tuple[Objective, ...],
        strategy: Any,
        table: Any,
        num_classes: int,
        config: SearchConfig,
    ) -> None:
        self.space = space
        self.objectives = objectives
        self.strategy = strategy
        self.table = table
        self.num_classes = num_classes
        self.config = config
        self.records: list[TrialRecord] = []
        self.by_key: dict[str, TrialRecord] = {}
        self.weights: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.latency_key = next((o.key for o in objectives if o.name == "latency"), None)

    def values(self, record: TrialRecord) -> list[float] | None:
        if record.status != "ok":
            return None
        return [float(record.metrics[o.key]) for o in self.objectives]

    def run(self, runner: Any, progress: bool) -> None:
        from slimcv.progress import progress_bar

        config = self.config
        evaluated = proposals = 0
        # Bounds the loop when the space is nearly exhausted or the budget rejects most of it.
        max_proposals = max(100, 50 * config.trials)
        with progress_bar(progress) as bar:
            task = bar.add_task("search", total=config.trials, status="")
            while evaluated < config.trials and proposals < max_proposals:
                genotypes = self.strategy.propose(min(config.workers, config.trials - evaluated))
                proposals += len(genotypes)
                keys, todo = self._triage(genotypes)
                candidates = [c for c, _ in todo]

                def done(index: int, outcome: Any) -> None:
                    bar.update(task, advance=1, status=self._status())

                outcomes = runner.run(candidates, done)
                for (candidate, predicted), outcome in zip(todo, outcomes, strict=True):
                    self._record(candidate, predicted, outcome)
                    evaluated += 1
                for genotype, key in zip(genotypes, keys, strict=True):
                    self.strategy.observe(genotype, self.values(self.by_key[key]))
                self._keep_front_weights()
                bar.update(task, status=self._status())

    def _triage(
        self, genotypes: list[Genotype]
    ) -> tuple[list[str], list[tuple[Candidate, float | None]]]:
        keys: list[str] = []
        todo: list[tuple[Candidate, float | None]] = []
        queued: set[str] = set()
        budget = self.config.latency_budget_ms
        for genotype in genotypes:
            candidate = self.space.decode(genotype)
            key = candidate.key
            keys.append(key)
            if key in self.by_key or key in queued:
                self.duplicates += 1
                continue
            # In the driver, between batches: on-demand unit timings run on an idle machine.
            predicted = (
                self.table.predict(candidate, self.num_classes) if self.table is not None else None
            )
            if budget is not None and predicted is not None and predicted > budget:
                self._add(candidate, "infeasible", {self.latency_key: predicted})  # type: ignore[dict-item]
                continue
            queued.add(key)
            todo.append((candidate, predicted))
        return keys, todo

    def _add(
        self, candidate: Candidate, status: str, metrics: dict[str, float], **extra: Any
    ) -> TrialRecord:
        record = TrialRecord(
            index=len(self.records),
            key=candidate.key,
            genotype=dict(candidate.genotype),
            spec=candidate.spec.to_string(),
            resolution=candidate.image_size,
            status=status,
            metrics=metrics,
            **extra,
        )
        self.records.append(record)
        self.by_key[record.key] = record
        return record

    def _record(self, candidate: Candidate, predicted: float | None, outcome: Any) -> None:
        estimate = outcome.estimate
        metrics = _metrics(estimate, outcome)
        if self.latency_key is not None and predicted is not None:
            metrics[self.latency_key] = predicted
        self._add(
            candidate,
            "ok" if estimate is not None else "failed",
            metrics,
            seconds=outcome.seconds,
            worker=outcome.worker,
            details=dict(estimate.details) if estimate is not None else {},
            error=outcome.error,
        )
        if estimate is not None and estimate.state_dict is not None:
            self.weights[candidate.key] = estimate.state_dict

    def _keep_front_weights(self) -> None:
        """Keeps trained weights of the current front only (memory stays small)."""
        if not self.weights:
            return
        ok = [r for r in self.records if r.status == "ok"]
        points = [[o.minimized(r.metrics[o.key]) for o in self.objectives] for r in ok]
        keep = {ok[i].key for i in pareto_front(points)}
        for key in [k for k in self.weights if k not in keep]:
            del self.weights[key]

    def _status(self) -> str:
        ok = [r for r in self.records if r.status == "ok"]
        if not ok:
            return ""
        best = max(r.metrics["accuracy"] for r in ok)
        return f"best accuracy {best:.2f}"


def _front(
    ok: list[TrialRecord],
    objectives: tuple[Objective, ...],
    table: Any,
    num_classes: int,
    baseline: BaselineResult | None,
    latency_objective: Objective | None,
) -> list[FrontMember]:
    points = [[o.minimized(r.metrics[o.key]) for o in objectives] for r in ok]
    members = [ok[i] for i in pareto_front(points)]
    first = next((o for o in objectives if o.name != "accuracy"), objectives[0])
    members.sort(key=lambda r: (first.minimized(r.metrics[first.key]), r.index))
    front = [
        FrontMember(
            trial=r.index,
            key=r.key,
            spec=r.spec,
            resolution=r.resolution,
            metrics=dict(r.metrics),
            latency_predicted_ms=(
                r.metrics.get(latency_objective.key) if latency_objective else None
            ),
        )
        for r in members
    ]
    if table is not None and front:
        from slimcv.arch import parse_network

        candidates = [Candidate(parse_network(m.spec), m.resolution) for m in front]
        if baseline is not None:
            candidates.append(Candidate(parse_network(baseline.spec), baseline.resolution))
        # Interleaved in one call: a shared machine's drift hits every network alike.
        measured = table.measure_many(candidates, num_classes)
        for member, ms in zip(front, measured, strict=False):
            member.latency_measured_ms = ms
        if baseline is not None:
            baseline.latency_measured_ms = measured[-1]
    if baseline is not None and "accuracy" in baseline.metrics:
        reference = _figures(baseline.metrics, baseline.latency_measured_ms, objectives)
        for member in front:
            mine = _figures(member.metrics, member.latency_measured_ms, objectives)
            member.dominates_baseline = all(a < b for a, b in zip(mine, reference, strict=True))
    return front


def _figures(
    metrics: dict[str, float], measured: float | None, objectives: tuple[Objective, ...]
) -> list[float]:
    """Minimised figures for the baseline comparison: latency is the *measured* one."""
    values = []
    for o in objectives:
        value = measured if o.name == "latency" and measured is not None else metrics[o.key]
        values.append(o.minimized(float(value)))
    return values


def _latency_facts(table: Any) -> dict[str, Any] | None:
    if table is None:
        return None
    return {
        "runtime": table.runtime,
        "threads": table.threads,
        "precision": table.precision,
        "batch": 1,
        "entries": len(table.entries),
        "correction": asdict(table.correction),
        "predicted": "sum of per-unit timings from the lookup table (an estimate)",
        "measured": "whole network timed end to end on the runtime after the search",
    }


def _notes(estimator: Any, table: Any, config: SearchConfig, loop: _SearchLoop) -> list[str]:
    notes = []
    evaluated = sum(r.status != "infeasible" for r in loop.records)
    if evaluated < config.trials:
        notes.append(
            f"only {evaluated} of {config.trials} trials were evaluated: the strategy kept "
            "proposing candidates already seen or over the latency budget"
        )
    if not getattr(estimator, "is_accuracy", True):
        notes.append(
            f"accuracy is the {config.estimator} estimator's proxy score (higher is better), "
            "not a top-1"
        )
    else:
        notes.append(
            f"accuracy is val top-1 (%) after the {config.estimator} estimator "
            f"({config.epochs} epoch(s) for short-train)"
        )
    if table is not None:
        notes.append(
            f"latency in ms at batch 1 on {table.runtime}, {table.threads} thread(s): predicted "
            "from the unit table during the search, measured end to end for the front"
        )
    return notes


__all__ = [
    "BaselineResult",
    "FrontMember",
    "SearchConfig",
    "SearchResult",
    "TrialRecord",
    "search",
]
