"""Every registered block kind builds from the grammar, runs, and exports to a matching ONNX file.

Parametrized over the registry, so a kind registered later is checked without editing this file
(add a token to ``TOKENS`` if the generic one does not suit it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from slimcv.arch import build_network, parse_network
from slimcv.arch.kinds import BLOCK_KINDS, block_options, load_block_kinds
from slimcv.errors import SpecError
from slimcv.exporters.onnx import export_onnx

load_block_kinds()

# The option keys other code relies on, beyond the common c, r, s, a.
PROMISED_OPTIONS = {
    "conv": {"k"},
    "ds": {"k", "se"},
    "ir": {"k", "e", "se"},
    "shuffle": {"k"},
    "gshuffle": {"k", "e", "g"},
    "ghost": {"k", "e", "se"},
    "mvit": {"k", "e", "d", "h", "p"},
    "win": {"e", "d", "h", "w"},
}

# A striding, repeated stage then a widening stride-1 stage; kinds needing options get their own.
TOKENS = {
    "ghost": "ghost_r2_s2_c32_se,ghost_c48_e2",
    "mvit": "mvit_r2_s2_c32_d1_h2_p2,mvit_c48_d1_h4_p4_e1.5",
    "win": "win_r2_s2_c32_d1_h2_w4,win_c48_d2_h4_w3_e2",
}


def _token(kind: str) -> str:
    return TOKENS.get(kind, f"{kind}_r2_s2_c32,{kind}_c48")


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    # Fresh BatchNorms are identities and the builder's classifier init gives logits near 1e-3;
    # comparing such outputs at atol 1e-4 would prove nothing.
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
        elif isinstance(module, nn.Linear):
            module.weight.data.normal_(0, 1 / module.in_features**0.5, generator=generator)
    return model.eval()


def test_promised_kinds_and_options_are_registered() -> None:
    options = block_options()
    for kind, keys in PROMISED_OPTIONS.items():
        assert options[kind] == keys | {"c", "r", "s", "a"}, kind


@pytest.mark.parametrize("kind", sorted(BLOCK_KINDS))
def test_kind_builds_runs_and_exports(kind: str, tmp_path: Path) -> None:
    spec = f"stem_c16,{_token(kind)},head_c64"
    torch.manual_seed(0)  # conv init draws from the global RNG; fix it so test order cannot matter
    model = _randomize(build_network(spec, num_classes=10))
    assert parse_network(spec).to_string() == model.spec.to_string()
    blocks = [block for stage in model.stages for block in stage]
    assert [b.out_channels for b in blocks] == [32, 32, 48]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.shape == (2, 10)
    assert np.isfinite(expected).all()
    assert np.abs(expected).max() > 0.1  # outputs large enough for the comparison to mean much

    facts = export_onnx(model, tmp_path / "model.onnx", (1, 3, 32, 32))
    assert int(facts["opset"]) >= 17
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})  # batch 2: the batch axis stays dynamic
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(31, 29), (20, 36)])
@pytest.mark.parametrize("kind", ["mvit", "win"])
def test_attention_kinds_take_sizes_off_the_patch_grid(
    kind: str, size: tuple[int, int], tmp_path: Path
) -> None:
    # MobileViT resizes to a multiple of p; window attention pads to a multiple of w.
    token = "mvit_c32_d1_h2_p4" if kind == "mvit" else "win_c32_d1_h2_w4"
    model = _randomize(build_network(f"stem_c16,{token}", num_classes=10))
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x).numpy()
    export_onnx(model, tmp_path / "model.onnx", (1, 3, *size))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("stem_c16,shuffle_c33", "even"),
        ("stem_c16,mvit_c30_h4", "heads"),
        ("stem_c16,win_c32_h5", "heads"),
        ("stem_c16,gshuffle_s2_c16", "must widen"),
        ("stem_c16,win_k3_c32", "takes no 'k'"),
    ],
)
def test_impossible_blocks_are_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_network(spec, num_classes=10)
