"""Seconds per training epoch in channels_last against NCHW for MobileNet-style networks.

slimcv's training loop switches networks with grouped or depthwise convolutions to
channels_last on CPU (:func:`slimcv.training.loop.training_memory_format`); this measures what
that buys, one epoch of digits at 32 px per network and layout, in one run.

    python benchmarks/train_layout.py
"""

from __future__ import annotations

import time

import torch

import slimcv.training.loop as loop
from slimcv.arch import build_network
from slimcv.data import load_data
from slimcv.training import TrainConfig, fit

NETWORKS = {
    "mobilenetv2-0.5 (3x3)": "arch:mobilenetv2:width=0.5,small_input=true",
    "searched (5x5, 7x7)": "stem_c8_arelu6,ir_k7_e2_c8,ir_r3_k5_s2_e4_c16,ir_r3_k7_s2_e2_c24,"
    "ir_k5_s2_e3_c40_se0.25",
}


def main() -> None:
    from slimcv.sources import load_model

    data = load_data("digits", image_size=32, seed=0)
    chosen = loop.training_memory_format
    print("| network | channels_last s/epoch | NCHW s/epoch | speed-up |")
    print("|---|---:|---:|---:|")
    for name, source in NETWORKS.items():
        seconds = {}
        for layout, rule in (("cl", chosen), ("nchw", lambda m, d: torch.contiguous_format)):
            loop.training_memory_format = rule
            torch.manual_seed(0)
            if source.startswith("arch:"):
                model = load_model(source, num_classes=10, image_size=32).module
            else:
                model = build_network(source, 10)
            start = time.perf_counter()
            fit(model, data, TrainConfig(epochs=1, batch_size=32, lr=5e-3), progress=False)
            seconds[layout] = time.perf_counter() - start
        loop.training_memory_format = chosen
        print(
            f"| {name} | {seconds['cl']:.1f} | {seconds['nchw']:.1f} | "
            f"{seconds['nchw'] / seconds['cl']:.2f}x |"
        )


if __name__ == "__main__":
    main()
