"""Does the supernet rank architectures the way training them does?

Trains the mobilenetv2-space supernet on digits at 32 px by progressive shrinking (the
``supernet`` estimator's defaults), then, for the same sub-networks (random samples plus the
space's smallest and largest), compares

- the supernet's estimate: extracted weights, BatchNorm statistics re-estimated on 512
  training images, val top-1 at the candidate's resolution;
- stand-alone short training: the same architecture from a seeded initialisation trained with
  slimcv's training engine for a few epochs, val top-1 on the same split.

It reports Kendall's tau and Spearman's rho between the two, and the seconds one candidate
costs each way. Everything runs on one CPU thread (the machine is shared; see the docstring of
``slimcv.nas.estimators.supernet``); both models train in channels-last layout, in which the
CPU backward of 7x7 depthwise convolutions is several times faster.

    python benchmarks/supernet_ranking.py [--candidates 10] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

from slimcv.analysis.profile import profile_model
from slimcv.data import load_data
from slimcv.nas.estimators import ESTIMATORS, EstimatorContext
from slimcv.nas.space import get_space
from slimcv.nas.supernet.elastic import extract, max_genotype, min_genotype
from slimcv.training.loop import TrainConfig, fit

RESULTS = Path(__file__).parent / "results"


def _standalone(estimator, candidate, epochs: int, seed: int) -> tuple[float, float]:
    """Val top-1 after ``epochs`` epochs of stand-alone training, and the seconds it took."""
    start = time.perf_counter()
    model = estimator.build(candidate).to(memory_format=torch.channels_last)
    data = load_data("digits", image_size=candidate.image_size, seed=seed)
    config = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, device="cpu")
    history = fit(model, data, config, progress=False)
    return history[-1].val_top1, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10, help="random sub-networks")
    parser.add_argument("--epochs", type=int, default=3, help="stand-alone training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="/tmp/slimcv-supernet-ranking")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space("mobilenetv2", 32)
    context = EstimatorContext("digits", 10, 32, seed=args.seed, work_dir=Path(args.work_dir))
    context.work_dir.mkdir(parents=True, exist_ok=True)
    estimator = ESTIMATORS.get("supernet")(context)
    start = time.perf_counter()
    estimator.prepare(space)
    prepare_seconds = time.perf_counter() - start
    info = estimator.info
    print(f"supernet ready in {prepare_seconds:.0f} s (trained in {info['seconds']:.0f} s)")

    rng = random.Random(args.seed + 1)
    genotypes = [min_genotype(space), max_genotype(space)]
    keys = {space.decode(g).key for g in genotypes}
    while len(genotypes) < args.candidates + 2:
        genotype = space.sample(rng)
        if space.decode(genotype).key not in keys:
            keys.add(space.decode(genotype).key)
            genotypes.append(genotype)

    supernet = estimator._supernet()
    rows = []
    for index, genotype in enumerate(genotypes):
        candidate = space.decode(genotype)
        estimate = estimator.evaluate(candidate)
        shape = (1, 3, candidate.image_size, candidate.image_size)
        macs = profile_model(extract(supernet, candidate), shape).macs
        top1, seconds = _standalone(estimator, candidate, args.epochs, args.seed)
        label = ("smallest", "largest")[index] if index < 2 else f"random {index - 1}"
        rows.append(
            {
                "label": label,
                "genotype": genotype,
                "spec": candidate.key,
                "mmacs": macs / 1e6,
                "supernet_top1": estimate.score,
                "supernet_seconds": estimate.seconds,
                "standalone_top1": top1,
                "standalone_seconds": seconds,
            }
        )
        print(
            f"{label:>10}: {macs / 1e6:6.2f} MMACs  supernet {estimate.score:5.1f}% "
            f"({estimate.seconds:.1f} s)  stand-alone {top1:5.1f}% ({seconds:.0f} s)"
        )

    def correlations(subset: list[dict]) -> dict[str, float]:
        a = [r["supernet_top1"] for r in subset]
        b = [r["standalone_top1"] for r in subset]
        return {
            "kendall_tau": float(kendalltau(a, b).statistic),
            "spearman_rho": float(spearmanr(a, b).statistic),
            "n": len(subset),
        }

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    result = {
        "what": "supernet estimate vs stand-alone short training, digits 32 px, mobilenetv2 space",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": 1,
        "note": "shared 2-core machine, other jobs running: seconds are upper bounds",
        "supernet": {
            "config": info["config"],
            "train_seconds": info["seconds"],
            "phases": [
                {
                    k: p[k]
                    for k in ("phase", "epochs", "steps", "seconds", "losses")
                    + ("val_top1_max", "val_top1_min")
                }
                for p in info["phases"]
            ],
        },
        "standalone": {"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "optimizer": "adamw"},
        "all": correlations(rows),
        "random_only": correlations(rows[2:]),
        "mean_seconds_per_candidate": {
            "supernet": mean("supernet_seconds"),
            "standalone": mean("standalone_seconds"),
        },
        "candidates": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "supernet_ranking.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "supernet_ranking.md").write_text(_markdown(result))
    print(json.dumps({k: result[k] for k in ("all", "random_only", "mean_seconds_per_candidate")}))


def _markdown(result: dict) -> str:
    sn = result["supernet"]
    lines = [
        "# Supernet ranking on digits (32 px, mobilenetv2 space)",
        "",
        "`python benchmarks/supernet_ranking.py` - one CPU thread on a shared 2-core machine "
        "(other jobs running, so seconds are upper bounds; the ratio is what matters).",
        "",
        f"Supernet: progressive shrinking, epochs per phase {sn['config']['epochs']} "
        f"(full, kernel, depth, expand), sub-networks per step {sn['config']['subnets_per_step']}"
        f", trained once in {sn['train_seconds']:.0f} s.",
        "",
        "| phase | epochs | seconds | last epoch loss | val top-1 largest | val top-1 smallest |",
        "|---|---|---|---|---|---|",
    ]
    for p in sn["phases"]:
        lines.append(
            f"| {p['phase']} | {p['epochs']} | {p['seconds']:.0f} | {p['losses'][-1]:.3f} | "
            f"{p['val_top1_max']:.1f} | {p['val_top1_min']:.1f} |"
        )
    sa = result["standalone"]
    lines += [
        "",
        f"Stand-alone: each architecture trained from a seeded initialisation for {sa['epochs']} "
        f"epochs (AdamW, lr {sa['lr']}, batch {sa['batch_size']}, cosine), val top-1 at its "
        "resolution. Supernet estimate: extracted weights, BN statistics re-estimated on 512 "
        "training images, val top-1 (same split).",
        "",
        "| candidate | MMACs | supernet top-1 | stand-alone top-1 | supernet s | stand-alone s |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["candidates"]:
        lines.append(
            f"| {r['label']} | {r['mmacs']:.2f} | {r['supernet_top1']:.1f} | "
            f"{r['standalone_top1']:.1f} | {r['supernet_seconds']:.1f} | "
            f"{r['standalone_seconds']:.0f} |"
        )
    a, b = result["all"], result["random_only"]
    s = result["mean_seconds_per_candidate"]
    lines += [
        "",
        "| sub-networks | n | Kendall tau | Spearman rho |",
        "|---|---|---|---|",
        f"| all (random + smallest + largest) | {a['n']} | {a['kendall_tau']:.2f} | "
        f"{a['spearman_rho']:.2f} |",
        f"| random only | {b['n']} | {b['kendall_tau']:.2f} | {b['spearman_rho']:.2f} |",
        "",
        f"One candidate costs {s['supernet']:.1f} s with the supernet and "
        f"{s['standalone']:.0f} s with stand-alone short training "
        f"({s['standalone'] / max(s['supernet'], 1e-9):.0f}x), after the supernet's one-time "
        f"{sn['train_seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
