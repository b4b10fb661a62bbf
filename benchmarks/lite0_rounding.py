"""Which post-training fixes keep EfficientNet-Lite0's INT8 decisions those of FP32, at what cost.

``timm:efficientnet_lite0:imagenet`` (real ImageNet weights) is quantized by slimcv's PyTorch
simulation (per-channel s8 weights, per-tensor u8 activations, BatchNorm folded) in several
ways, each calibrated on the same crops of scikit-image's bundled photos, and each compared
with FP32 by top-1 agreement on other, held-out crops of the same photos (no labels exist).
The agreement is that of the simulation (``qmodel.module`` in PyTorch), not of a runtime; the
ONNX Runtime figure is measured by ``benchmarks/quantize_vs_runtimes.py``.

Variants (rows): weights only and activations only (where the loss comes from), full INT8
with each activation calibration method, then the weight fixes on top of the best of those:
cross-layer equalization (CLE), bias correction (BC), AdaRound, and combinations. The time
column is the wall time to build the quantized model (prepare + calibrate + fixes), not the
evaluation.

Usage: ``nice -n 5 python benchmarks/lite0_rounding.py [--held 300] [--calib 100]
[--adaround-images 64] [--iterations 500] [--seed 0] [--only "NAME;NAME"] [--out STEM]``. Prints
a Markdown table and writes ``STEM.md`` and ``STEM.json`` (default
``benchmarks/results/lite0_rounding``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from slimcv.data.photos import photo_splits
from slimcv.exporters.fold import fold_batchnorm
from slimcv.quant.adaround import AdaRoundConfig, adaround_
from slimcv.quant.bias_correction import correct_bias_
from slimcv.quant.calibrate import calibrate
from slimcv.quant.equalize import equalize_
from slimcv.quant.prepare import PrepareConfig, QuantizedModel, prepare
from slimcv.sources.loader import load_model

MODEL = "timm:efficientnet_lite0:imagenet"
#: Crops where FP32's top class has at least this probability count as "confident".
CONFIDENT = 0.5
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Variant:
    """One way of quantizing: which quantizers are on and which fixes run, in this order:
    CLE (before prepare), calibration, AdaRound, bias correction."""

    name: str
    weights: bool = True
    activations: bool = True
    calibration: str = "minmax"
    weight_calibration: str = "minmax"
    skip: tuple[str, ...] = ()
    cle: str | None = None  # None, or equalize_'s relu6 choice
    adaround: bool = False
    bias_correction: bool = False


#: The first convolution kept float: the model input is then not quantized (see the notes).
STEM = ("conv_stem",)


def variants(best: str) -> list[Variant]:
    """The rows; ``best`` is the activation calibration the weight fixes are tried with."""
    rows = [
        Variant("weights only, minmax", activations=False),
        Variant("activations only, minmax", weights=False),
        Variant("activations only, minmax, stem float", weights=False, skip=STEM),
        Variant("activations only, mse, stem float", weights=False, calibration="mse", skip=STEM),
        Variant("INT8 minmax", calibration="minmax"),
        Variant("INT8 percentile", calibration="percentile"),
        Variant("INT8 mse", calibration="mse"),
        Variant("INT8 entropy", calibration="entropy"),
        Variant(f"INT8 {best}, mse weights", calibration=best, weight_calibration="mse"),
        Variant(f"INT8 {best}, stem float", calibration=best, skip=STEM),
        Variant(f"INT8 {best} + CLE", calibration=best, cle="skip"),
        Variant(f"INT8 {best} + CLE(relu6->relu)", calibration=best, cle="relu"),
    ]
    for calibration in dict.fromkeys((best, "mse")):
        for skip, where in (((), ""), (STEM, ", stem float")):
            name = f"INT8 {calibration}{where}"
            common = {"calibration": calibration, "skip": skip}
            rows += [
                Variant(f"{name} + BC", bias_correction=True, **common),
                Variant(f"{name} + AdaRound", adaround=True, **common),
                Variant(f"{name} + AdaRound + BC", adaround=True, bias_correction=True, **common),
            ]
    return rows


def build(
    variant: Variant,
    module: torch.nn.Module,
    calib: list[torch.Tensor],
    ada_batches: list[torch.Tensor],
    ada: AdaRoundConfig,
) -> tuple[QuantizedModel, dict]:
    """The quantized simulation for one variant, and facts about its fixes."""
    facts: dict = {}
    source = module
    if variant.cle is not None:
        source = fold_batchnorm(module)
        facts["cle_pairs"] = equalize_(source, relu6=variant.cle)
    config = PrepareConfig(
        calibration=variant.calibration,
        weight_calibration=variant.weight_calibration,
        skip=variant.skip,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "these layers stay float": intended here
        qmodel = prepare(source, config)
    if variant.activations:
        calibrate(qmodel, calib)
    else:
        qmodel.set_mode("off", weights=False, activations=True)
    if not variant.weights:
        qmodel.set_mode("off", weights=True, activations=False)
    if variant.adaround:
        report = adaround_(qmodel, source, ada_batches, config=ada)
        before = sum(r["nearest"] for r in report.values())
        after = sum(r["adaround"] for r in report.values())
        facts["adaround_error_ratio"] = round(after / before, 4)
        facts["adaround_layers"] = len(report)
    if variant.bias_correction:
        facts["bc_layers"] = correct_bias_(qmodel, calib, float_module=source)
    return qmodel, facts


def noisy_logits(module: torch.nn.Module, held: torch.Tensor, seed: int) -> torch.Tensor:
    """FP32's logits when every input value moves by up to half an 8-bit pixel level: the
    noise any 8-bit quantizer of these (float, resized) inputs adds, so this row's agreement
    is about the ceiling for every variant that quantizes the model input."""
    generator = torch.Generator().manual_seed(seed)
    step = 1.0 / (255 * 0.226)  # one 8-bit level after normalisation (std ~0.226)
    noise = (torch.rand(held.shape, generator=generator) - 0.5) * step
    return logits_of(module, held + noise)


def logits_of(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(batch) for batch in images.split(50)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=300, help="held-out crops")
    parser.add_argument("--calib", type=int, default=100, help="calibration crops")
    parser.add_argument("--adaround-images", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=500, help="AdaRound steps per layer")
    parser.add_argument("--samples", type=int, default=4096, help="AdaRound positions per layer")
    parser.add_argument("--best", default="minmax", help="activation method for the fixes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "lite0_rounding"), help="path stem")
    parser.add_argument("--only", default="", help="row names to run, separated by ;")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = load_model(MODEL)
    module = model.module.eval()
    calib_set, held_set = photo_splits(
        args.calib + args.held, args.held / (args.calib + args.held), args.seed, model.preprocess
    )
    calib_images = torch.stack([calib_set[i][0] for i in range(len(calib_set))])
    held = torch.stack([held_set[i][0] for i in range(len(held_set))])
    calib = list(calib_images.split(25))
    ada_batches = list(calib_images[: args.adaround_images].split(32))
    ada = AdaRoundConfig(iterations=args.iterations, samples=args.samples, seed=args.seed)
    reference_logits = logits_of(module, held)
    reference = reference_logits.argmax(1)
    confident = reference_logits.softmax(1).amax(1) > CONFIDENT

    reference_logp = reference_logits.log_softmax(1)

    def scores(logits: torch.Tensor) -> dict:
        same = (logits.argmax(1) == reference).float()
        kl = (reference_logp.exp() * (reference_logp - logits.log_softmax(1))).sum(1).mean()
        return {
            "agreement": float(same.mean()),
            "confident": float(same[confident].mean()),
            "kl": float(kl),
        }

    rows = [
        {
            "variant": "FP32 + half-level input noise (reference)",
            **scores(noisy_logits(module, held, args.seed)),
            "seconds": 0.0,
        }
    ]
    print(f"{rows[0]['variant']:45s} {100 * rows[0]['agreement']:6.2f}%", flush=True)
    wanted = [w.strip() for w in args.only.split(";") if w.strip()]
    for variant in variants(args.best):
        if wanted and not any(w == variant.name for w in wanted):
            continue
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        qmodel, facts = build(variant, module, calib, ada_batches, ada)
        seconds = time.perf_counter() - start
        row = {"variant": variant.name, **scores(logits_of(qmodel.module.eval(), held))}
        rows.append({**row, "seconds": seconds, **facts})
        print(
            f"{variant.name:45s} {100 * row['agreement']:6.2f}% {100 * row['confident']:6.2f}% "
            f"KL {row['kl']:.4f} {seconds:7.1f} s  {facts}",
            flush=True,
        )

    lines = [
        f"# {MODEL}: INT8 top-1 agreement with FP32 (PyTorch simulation)",
        "",
        f"{len(held)} held-out crops, {len(calib_images)} calibration crops "
        f"(AdaRound: first {args.adaround_images} of them, {args.iterations} steps/layer, "
        f"{args.samples} positions/layer), seed {args.seed}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}.",
        "",
        f"{int(confident.sum())} of the held-out crops are confident (FP32 top-1 probability > "
        f"{CONFIDENT}); most others are ambiguous patches (gravel, sky) where a tiny logit change "
        "flips the top class.",
        "",
        "KL is the mean KL divergence of the INT8 softmax from FP32's (nats): less noisy than "
        "agreement for ranking variants.",
        "",
        "| variant | agreement | on confident crops | KL | build time (s) | notes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        notes = ", ".join(
            f"{k}={v}"
            for k, v in row.items()
            if k not in ("variant", "agreement", "confident", "kl", "seconds")
        )
        lines.append(
            f"| {row['variant']} | {100 * row['agreement']:.1f}% | {100 * row['confident']:.1f}% "
            f"| {row['kl']:.4f} | {row['seconds']:.1f} | {notes} |"
        )
    text = "\n".join(lines)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
