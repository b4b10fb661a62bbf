import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import randomize_batchnorm
from slimcv.errors import ArtifactError, CheckpointError, SlimcvError
from slimcv.pruning.unstructured import UnstructuredConfig, apply_masks_, make_permanent_
from slimcv.sources import load_model, save_artifact
from slimcv.sources.artifact import MANIFEST, WEIGHTS
from slimcv.sources.weights_codec import decode_state_dict, encode_state_dict

BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    width = BITS[a.element_size()]
    return torch.equal(a.contiguous().view(width), b.contiguous().view(width))


def sparse(shape: tuple[int, ...], sparsity: float, dtype=torch.float32, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=generator).to(dtype)
    return values.masked_fill(torch.rand(shape, generator=generator) < sparsity, 0.0)


def test_round_trip_is_bit_exact():
    special = sparse((7, 9), 0.6)
    special[0, :4] = torch.tensor([-0.0, float("nan"), float("inf"), -float("inf")])
    state = {
        "conv.weight": sparse((16, 8, 3, 3), 0.8),
        "special": special,  # -0.0 is a value, nan and inf survive
        "half": sparse((33,), 0.5, torch.float16),  # length not a multiple of 8
        "brain": sparse((12, 5), 0.7, torch.bfloat16),
        "double": sparse((4, 4), 0.9, torch.float64),
        "transposed": sparse((6, 10), 0.8).t(),  # not contiguous
        "all_zero": torch.zeros(3, 3),
        "scalar": torch.tensor(0.0),
        "empty": torch.zeros(0, 4),
        "steps": torch.tensor(12, dtype=torch.int64),
        "dense": torch.randn(5, 5),
    }
    stored, meta = encode_state_dict(state)
    assert {"conv.weight", "special", "half", "brain", "double", "transposed"} <= set(meta)
    assert all(info["encoding"] == "bitmask" for info in meta.values())
    assert meta["conv.weight"] == {
        "encoding": "bitmask",
        "shape": [16, 8, 3, 3],
        "dtype": "float32",
    }
    decoded = decode_state_dict(stored, meta)
    assert set(decoded) == set(state)
    for name, tensor in state.items():
        assert same_bits(decoded[name], tensor), name
    assert torch.signbit(decoded["special"][0, 0])  # the sign of -0.0 is kept


def test_dense_tensors_are_stored_as_they_are(tmp_path: Path):
    state = {"dense": torch.randn(8, 8), "light": sparse((100,), 0.1), "count": torch.arange(4)}
    stored, meta = encode_state_dict(state)
    assert meta == {} and set(stored) == set(state)
    for name, tensor in state.items():
        assert same_bits(stored[name], tensor)
    save_file(stored, str(tmp_path / "w.safetensors"))  # a valid safetensors dict
    assert same_bits(load_file(str(tmp_path / "w.safetensors"))["light"], state["light"])


def test_sparse_encoding_size_and_file_round_trip(tmp_path: Path):
    weight = sparse((256, 512), 0.8)
    stored, meta = encode_state_dict({"w": weight})
    assert set(stored) == {"w::values", "w::mask"}
    assert stored["w::mask"].dtype == torch.uint8 and stored["w::mask"].numel() == 256 * 512 // 8
    assert stored["w::values"].numel() == int((weight != 0).sum())
    path = tmp_path / "w.safetensors"
    save_file(stored, str(path))
    ratio = path.stat().st_size / (weight.numel() * 4)
    assert 0.2 < ratio < 0.24  # 0.2 * 4 + 1/8 bytes of 4
    assert same_bits(decode_state_dict(load_file(str(path)), meta)["w"], weight)


def test_tied_tensors_are_stored_once():
    shared = sparse((10, 10), 0.8)
    state = {"encoder.weight": shared, "decoder.weight": shared, "bias": torch.randn(10)}
    stored, meta = encode_state_dict(state)
    assert meta["encoder.weight"] == {"encoding": "alias", "of": "decoder.weight"}
    assert "encoder.weight::values" not in stored
    decoded = decode_state_dict(stored, meta)
    assert decoded["encoder.weight"] is decoded["decoder.weight"]
    assert same_bits(decoded["encoder.weight"], shared)


def test_negative_zeros_can_count_as_zeros():
    weight = torch.tensor([-0.0, 1.0, -0.0, 0.0, -2.0, -0.0, 0.0, 0.0, 3.0, -0.0])
    bits, _ = encode_state_dict({"w": weight}, min_sparsity=0.0)
    values, meta = encode_state_dict({"w": weight}, min_sparsity=0.0, keep_signed_zeros=False)
    assert bits["w::values"].numel() == 7 and values["w::values"].numel() == 3
    decoded = decode_state_dict(values, meta)["w"]
    assert torch.equal(decoded, weight) and not torch.any(torch.signbit(decoded[decoded == 0]))


def test_mismatched_parts_are_refused():
    stored, meta = encode_state_dict({"w": sparse((8, 8), 0.8)})
    with pytest.raises(CheckpointError, match="incomplete"):
        decode_state_dict({"w::values": stored["w::values"]}, meta)
    with pytest.raises(CheckpointError, match="values for"):
        decode_state_dict({**stored, "w::values": stored["w::values"][1:]}, meta)
    with pytest.raises(CheckpointError, match="no decoding metadata"):
        decode_state_dict(stored, {})
    with pytest.raises(CheckpointError, match="unknown encoding"):
        decode_state_dict(stored, {"w": {"encoding": "zstd"}})
    with pytest.raises(SlimcvError, match="reserved"):
        encode_state_dict({"a::b": torch.zeros(2)})
    with pytest.raises(SlimcvError, match="min_sparsity"):
        encode_state_dict({}, min_sparsity=1.5)


def outputs_in_fresh_process(artifact: Path, x_path: Path, out_path: Path) -> torch.Tensor:
    code = (
        "import torch; from safetensors.torch import load_file, save_file;"
        "from slimcv.sources import load_model;"
        f"m = load_model({str(artifact)!r});"
        f"x = load_file({str(x_path)!r})['x'];"
        "torch.set_grad_enabled(False);"
        f"save_file({{'y': m.module(x)}}, {str(out_path)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return load_file(str(out_path))["y"]


def test_sparse_artifact_is_small_and_reloads_exactly(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=10, image_size=32)
    randomize_batchnorm(model.module)
    dense_dir = save_artifact(tmp_path / "dense", model, command="test")

    apply_masks_(model.module, UnstructuredConfig(sparsity=0.8))  # masks still attached
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.module.eval()(x)
    sparse_dir = save_artifact(tmp_path / "sparse", model, command="prune", sparse=True)
    masked_dense_dir = save_artifact(tmp_path / "masked-dense", model, command="prune")

    manifest = json.loads((sparse_dir / MANIFEST).read_text())
    encoding = manifest["weights_encoding"]
    assert encoding["layer1.0.conv1.weight"]["encoding"] == "bitmask"
    assert "bn1.weight" not in encoding  # dense tensors stay plain
    ratio = (sparse_dir / WEIGHTS).stat().st_size / (dense_dir / WEIGHTS).stat().st_size
    assert ratio <= 0.35, ratio
    assert manifest["files"][WEIGHTS]["bytes"] == (sparse_dir / WEIGHTS).stat().st_size

    # no weight_orig / weight_mask leak into either artifact
    with safe_open(str(masked_dense_dir / WEIGHTS), "pt") as fh:
        keys = set(fh.keys())
    assert keys == set(load_file(str(dense_dir / WEIGHTS)))
    assert "weights_encoding" not in json.loads((masked_dense_dir / MANIFEST).read_text())

    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    for directory in (sparse_dir, masked_dense_dir):
        got = outputs_in_fresh_process(directory, tmp_path / "x.safetensors", tmp_path / "y")
        assert torch.equal(got, expected), directory

    # and the permanent (hook-free) model saves to the very same sparse weights
    make_permanent_(model.module)
    again = save_artifact(tmp_path / "again", model, command="prune", sparse=True)
    assert (again / WEIGHTS).read_bytes() == (sparse_dir / WEIGHTS).read_bytes()


def test_sparse_artifact_checks_its_hash(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=2, image_size=32)
    apply_masks_(model.module, UnstructuredConfig(sparsity=0.5))
    out = save_artifact(tmp_path / "art", model, command="test", sparse=True)
    assert load_model(str(out)).module.fc.weight.shape == (2, 512)
    data = bytearray((out / WEIGHTS).read_bytes())
    data[-3] ^= 0xFF
    (out / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted"):
        load_model(str(out))
