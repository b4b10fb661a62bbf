"""How well slimcv's latency lookup table predicts whole-network latency on a runtime.

Samples ``--count`` random architectures (seeded) from a search space, predicts each one's
batch-1 latency from the table (:class:`slimcv.nas.latency.LatencyTable`) and measures the
whole network end to end the same way (same runtime, threads, export, warm-up, statistic),
then prints predicted, measured and error per architecture and the line
``N/COUNT within 10% (median abs error X%)``.

The linear correction is fitted on ``--calibration`` further random architectures drawn with a
different seed, never on the ones judged. The table is built for the units of all these
architectures (or for the whole space with ``--prefill-space``), or loaded from ``--table``
when that file exists, and saved there.

Usage: ``python benchmarks/latency_lut.py [--space mobilenetv2] [--image-size 32] [--count 50]
[--threads 1] [--seed 0] [--calibration 8] [--correction ratio|linear]
[--runtime onnxruntime] [--table PATH] [--prefill-space]``.
Writes ``benchmarks/results/latency_lut[_<size>].{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from slimcv.nas.latency import LatencyTable
from slimcv.nas.space import Candidate, SearchSpace, get_space

RESULTS = Path(__file__).parent / "results"
NUM_CLASSES = 10


def sample(space: SearchSpace, count: int, seed: int, exclude: set[str]) -> list[Candidate]:
    """``count`` distinct random candidates whose keys are not in ``exclude``."""
    rng = random.Random(seed)
    found: dict[str, Candidate] = {}
    for _ in range(count * 100):
        candidate = space.decode(space.sample(rng))
        if candidate.key not in exclude:
            found.setdefault(candidate.key, candidate)
        if len(found) == count:
            break
    return list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=8, help="0: no linear correction")
    parser.add_argument("--correction", choices=("linear", "ratio"), default="ratio")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--table", type=Path, default=None, help="load/save the table here")
    parser.add_argument("--prefill-space", action="store_true", help="time every unit first")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    space = get_space(args.space, args.image_size)
    tests = sample(space, args.count, args.seed, set())
    calibration = sample(space, args.calibration, args.seed + 1000, {c.key for c in tests})

    started = time.perf_counter()
    loaded = args.table is not None and args.table.exists()
    table = LatencyTable.load(args.table) if loaded else LatencyTable(args.runtime, args.threads)
    source = space if args.prefill_space else [*tests, *calibration]
    timed = table.prefill(source, NUM_CLASSES, progress=not args.no_progress)
    build_s = time.perf_counter() - started
    print(f"table: {len(table.entries)} entries, {timed} timed now in {build_s:.0f} s")

    if calibration:
        fit = table.calibrate(calibration, NUM_CLASSES, model=args.correction)
        print(
            f"correction on {fit.networks} calibration networks: "
            f"{fit.intercept_ms:+.4f} ms + {fit.slope:.4f} x raw "
            f"(fit error {fit.mean_abs_error_pct:.1f}%)"
        )
    raw = [table.predict_raw(c, NUM_CLASSES) for c in tests]
    predicted = [table.predict(c, NUM_CLASSES) for c in tests]
    measured = table.measure_many(tests, NUM_CLASSES)
    if args.table is not None:
        table.save(args.table)

    errors = [100 * (p - m) / m for p, m in zip(predicted, measured, strict=True)]
    raw_errors = [100 * (r - m) / m for r, m in zip(raw, measured, strict=True)]
    within = sum(abs(e) <= 10 for e in errors)
    median_abs = float(np.median(np.abs(errors)))
    summary = f"{within}/{len(tests)} within 10% (median abs error {median_abs:.1f}%)"
    raw_within = sum(abs(e) <= 10 for e in raw_errors)
    raw_summary = (
        f"without the fitted correction: {raw_within}/{len(tests)} within 10% "
        f"(median abs error {float(np.median(np.abs(raw_errors))):.1f}%)"
    )

    meta = table.describe()
    lines = [
        f"# Latency table vs measurement: {args.space} at {args.image_size} px",
        "",
        f"{args.runtime} {meta['runtime_version']}, {meta['precision']}, batch 1, "
        f"{meta['threads']} thread(s), CPU {meta['machine']['cpu']}; {meta['statistic']}. "
        f"{len(tests)} random architectures (seed {args.seed}); correction fitted on "
        f"{len(calibration)} others (seed {args.seed + 1000}, {table.correction.model} model). "
        f"Table: {len(table.entries)} entries, "
        + (f"loaded ({timed} timed now)." if loaded else f"built in {build_s:.0f} s."),
        "",
        f"**{summary}**; {raw_summary}.",
        "",
        "| # | architecture | predicted ms | measured ms | error % |",
        "|---|---|---|---|---|",
    ]
    for index, (c, p, m, e) in enumerate(
        zip(tests, predicted, measured, errors, strict=True), start=1
    ):
        lines.append(f"| {index} | `{c.key}` | {p:.4f} | {m:.4f} | {e:+.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(summary)

    suffix = "" if args.image_size == 32 else f"_{args.image_size}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"latency_lut{suffix}.md").write_text(text)
    record = {
        "space": args.space,
        "image_size": args.image_size,
        "num_classes": NUM_CLASSES,
        "seed": args.seed,
        "summary": summary,
        "summary_without_correction": raw_summary,
        "within_10pct": within,
        "count": len(tests),
        "median_abs_error_pct": median_abs,
        "correction": asdict(table.correction),
        "table": {**meta, "entries": len(table.entries), "build_s": round(build_s, 1)},
        "architectures": [
            {"key": c.key, "predicted_ms": p, "raw_ms": r, "measured_ms": m, "error_pct": e}
            for c, p, r, m, e in zip(tests, predicted, raw, measured, errors, strict=True)
        ],
    }
    (RESULTS / f"latency_lut{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
