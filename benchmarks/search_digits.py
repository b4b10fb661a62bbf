"""Architecture search on digits: does the front beat MobileNetV2-0.5, and do 2 Ray workers
find a front as good as 1?

Runs ``slimcv.search`` twice with the same configuration (space ``mobilenetv2`` at 32 px,
NSGA-II, short training, latency on ONNX Runtime from the lookup table, front measured end to
end), once in-process (``--workers 1``) and once on a local Ray instance (``--workers 2``), each
trial on one torch thread so the two runs train candidates identically. Per run it reports the
wall time, the front, which front members dominate the baseline (higher top-1 *and* lower
measured latency), and the front's hypervolume over (top-1, measured latency) against a
reference point shared by both runs: 80 % top-1 and the baseline's measured latency, i.e. the
area of trade-offs at least 80 % accurate and faster than the baseline.

    python benchmarks/search_digits.py                       # ~20 minutes on 2 cores
    python benchmarks/search_digits.py --trials 8 --epochs 2 # a quick look

Writes benchmarks/results/search_digits.{md,json}; each run's full outputs (trials, front,
plot, front artifacts) go under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from slimcv.nas import SearchConfig, search
from slimcv.nas.pareto import hypervolume_2d

RESULTS = Path(__file__).parent / "results"
BASELINE = "arch:mobilenetv2:width=0.5,small_input=true"


def _run(workers: int, args: argparse.Namespace) -> dict:
    config = SearchConfig(
        objectives=("accuracy", "latency:onnxruntime"),
        trials=args.trials,
        strategy=args.strategy,
        estimator="short-train",
        epochs=args.epochs,
        workers=workers,
        threads=1,
        baseline=args.baseline,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = search(
        "mobilenetv2",
        "digits",
        config,
        out_dir=Path(args.work) / f"workers{workers}",
        force=True,
        progress=True,
    )
    wall = time.perf_counter() - started
    data = result.to_dict()
    data["wall_seconds"] = wall
    return data


def _hypervolume(run: dict, reference: tuple[float, float]) -> float:
    points = [
        (-m["metrics"]["accuracy"], m["latency_measured_ms"])
        for m in run["front"]
        if m.get("latency_measured_ms") is not None
    ]
    return hypervolume_2d(points, (-reference[0], reference[1]))


def _markdown(
    runs: dict[int, dict], reference: tuple[float, float], args: argparse.Namespace
) -> str:
    base = runs[1]["baseline"]
    lines = [
        "# Architecture search on digits",
        "",
        f"Space `mobilenetv2` at 32 px, {args.strategy}, {args.trials} trials of "
        f"{args.epochs}-epoch short training, one torch thread per trial; latency on ONNX Runtime "
        "(f32, batch 1, 1 thread) predicted from the lookup table during the search and measured "
        f"end to end for the front and the baseline. Baseline `{args.baseline}` trained the same "
        f"way. Machine: {platform.processor() or platform.machine()}, 2 cores. "
        "Command: `python benchmarks/search_digits.py "
        f"--trials {args.trials} --epochs {args.epochs} --strategy {args.strategy}`.",
        "",
        f"Baseline: top-1 {base['metrics']['accuracy']:.2f} %, measured "
        f"{base['latency_measured_ms']:.3f} ms, {base['metrics']['params']:,.0f} params.",
        "",
        "| workers | wall | trials | front | front members dominating the baseline | "
        "hypervolume (top-1 % x ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, run in runs.items():
        lines.append(
            f"| {workers} | {run['wall_seconds'] / 60:.1f} min | {len(run['trials'])} | "
            f"{len(run['front'])} | {len(run['dominating_baseline'])} | "
            f"{_hypervolume(run, reference):.3f} |"
        )
    lines += [
        "",
        f"Hypervolume reference: {reference[0]:.0f} % top-1 and the baseline's measured "
        f"latency ({reference[1]:.3f} ms); larger is better.",
    ]
    for workers, run in runs.items():
        lines += [
            "",
            f"## Front with --workers {workers}",
            "",
            "| top-1 % | predicted ms | measured ms | params | MACs | dominates baseline | spec |",
            "|---:|---:|---:|---:|---:|---|---|",
        ]
        for m in sorted(run["front"], key=lambda m: m["latency_measured_ms"] or 0):
            lines.append(
                f"| {m['metrics']['accuracy']:.2f} | {m['latency_predicted_ms']:.3f} | "
                f"{m['latency_measured_ms']:.3f} | {m['metrics']['params']:,.0f} | "
                f"{m['metrics']['macs']:,.0f} | {'yes' if m['dominates_baseline'] else 'no'} | "
                f"`{m['spec']}@{m['resolution']}` |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategy", default="nsga2")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/slimcv_search_digits")
    parser.add_argument("--name", default="search_digits")
    args = parser.parse_args()

    runs = {workers: _run(workers, args) for workers in (1, 2)}
    reference = (80.0, runs[1]["baseline"]["latency_measured_ms"])
    summary = {
        "config": vars(args),
        "reference": {"accuracy": reference[0], "latency_ms": reference[1]},
        "runs": {
            str(w): {
                "wall_seconds": r["wall_seconds"],
                "trials": len(r["trials"]),
                "front": r["front"],
                "baseline": r["baseline"],
                "dominating_baseline": r["dominating_baseline"],
                "hypervolume": _hypervolume(r, reference),
                "latency": r["latency"],
            }
            for w, r in runs.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    text = _markdown(runs, reference, args)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
