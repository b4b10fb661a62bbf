"""Early exits: the exit rule, its cost accounting, real early stopping, and joint training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomize_batchnorm
from slimcv.analysis import profile_model
from slimcv.arch import build_network
from slimcv.arch.early_exit import (
    EarlyExitNet,
    EarlyExitObjective,
    choose_exits,
    tradeoff,
)
from slimcv.errors import SlimcvError, UnknownNameError

SPEC = "stem_c8,ds_c8,conv_c16_s2,conv_c24_s2"
SHAPE = (1, 3, 16, 16)


def _net(seed: int = 0) -> EarlyExitNet:
    torch.manual_seed(seed)
    backbone = randomize_batchnorm(build_network(SPEC, num_classes=10), seed)
    net = EarlyExitNet(backbone, ["stages.0", "stages.1"], input_shape=SHAPE).eval()
    with torch.no_grad():  # spread the heads' confidences over (0.1, 1)
        for head in net.heads:
            head.classifier.weight.normal_(0, 3.0)
        net.backbone.classifier.weight.normal_(0, 0.3)
    return net


def _batches(n: int = 64, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g))]


def test_threshold_above_one_is_exactly_the_full_network() -> None:
    net = _net()
    ((x, y),) = _batches()
    decision = net.predict(x, 1.01)
    with torch.no_grad():
        assert torch.equal(decision.logits, net.backbone(x))
    assert decision.exit_index.tolist() == [2] * len(x)
    (point,) = tradeoff(net, [(x, y)], [1.01])
    assert point.avg_macs == profile_model(net.backbone, SHAPE).macs
    assert point.histogram == {"stages.0": 0, "stages.1": 0, "final": len(x)}
    assert point.top1 == pytest.approx(100 * float((net.backbone(x).argmax(1) == y).float().mean()))


def test_threshold_zero_takes_the_first_exit_at_its_cost() -> None:
    net = _net()
    ((x, y),) = _batches()
    decision = net.predict(x, 0.0)
    assert decision.exit_index.tolist() == [0] * len(x)
    with torch.no_grad():
        torch.testing.assert_close(decision.logits, net.forward_all(x)[0])
    # Independent account: stem + first stage, then the head on the first stage's output.
    b = net.backbone
    prefix = profile_model(nn.Sequential(b.stem, b.stages[0]), SHAPE).macs
    head = profile_model(net.heads[0], (1, 8, 16, 16)).macs
    assert head == 8 * 10  # pool first, then one linear layer
    paths = net.path_macs()
    assert paths[0] == prefix + head
    assert paths[-1] == net.backbone_macs() + head + 16 * 10  # every head ran on the way
    assert paths == sorted(paths)
    (point,) = tradeoff(net, [(x, y)], [0.0])
    assert point.avg_macs == paths[0]
    assert point.histogram["stages.0"] == len(x)


def test_exit_choice_is_monotone_and_batched_equals_one_by_one() -> None:
    net = _net()
    ((x, y),) = _batches()
    with torch.no_grad():
        everything = net.forward_all(x)
    # The first exit's median confidence sends half the samples on: a mix of exits.
    middle = float(torch.softmax(everything[0], 1).amax(1).median())
    thresholds = sorted([0.0, 0.2, 0.5, 0.8, 0.9, middle, 0.99, 1.0, 1.01])
    indices = torch.stack([net.predict(x, t).exit_index for t in thresholds])
    assert bool((indices[1:] >= indices[:-1]).all())
    assert len({int(i) for i in indices[thresholds.index(middle)]}) >= 2
    for t in thresholds:
        batched = net.predict(x, t)
        logits, index = choose_exits(everything, t)
        assert torch.equal(batched.exit_index, index)
        torch.testing.assert_close(batched.logits, logits)
    single = [net.predict(x[i : i + 1], middle) for i in range(16)]
    assert [int(s.exit_index) for s in single] == net.predict(x[:16], middle).exit_index.tolist()
    points = tradeoff(net, [(x, y)], thresholds)
    macs = [p.avg_macs for p in points[:-1]]
    assert macs == sorted(macs)  # higher thresholds leave later and cost more
    assert all(sum(p.histogram.values()) == len(x) for p in points)


def test_batch_of_one_really_stops_the_backbone() -> None:
    torch.manual_seed(0)
    backbone = build_network(SPEC, num_classes=10)
    net = EarlyExitNet(backbone, ["stages.0"], input_shape=SHAPE).eval()
    runs = []
    handle = backbone.stages[1].register_forward_hook(lambda *a: runs.append(1))
    net.predict(torch.randn(1, 3, 16, 16), 0.0)
    assert runs == []
    net.predict(torch.randn(1, 3, 16, 16), 1.0 + 1e-9)
    assert runs == [1]
    handle.remove()


def test_resnet_layer_names_work() -> None:
    from slimcv.sources import load_model

    backbone = load_model("torchvision:resnet18", num_classes=10).module
    net = EarlyExitNet(backbone, ["layer2"], input_shape=(1, 3, 32, 32), hidden_channels=32)
    paths = net.path_macs()
    assert paths[0] < 0.6 * net.backbone_macs()  # the stem and layer1 cost most at 32x32
    # Head: 128 -> 32 conv (with bias) after pooling, then 32 -> 10.
    assert paths[1] - net.backbone_macs() == 128 * 32 + 32 * 10
    net.train()
    outputs = net(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outputs] == [(2, 10), (2, 10)]


def test_bad_exits_are_refused() -> None:
    backbone = build_network(SPEC, num_classes=10)
    with pytest.raises(UnknownNameError, match="stages.9"):
        EarlyExitNet(backbone, ["stages.9"], input_shape=SHAPE)
    with pytest.raises(SlimcvError, match="shallow to deep"):
        EarlyExitNet(backbone, ["stages.1", "stages.0"], input_shape=SHAPE)
    with pytest.raises(SlimcvError, match="not an NCHW map"):
        EarlyExitNet(backbone, ["classifier"], input_shape=SHAPE)
    net = EarlyExitNet(backbone, ["stages.0"], input_shape=SHAPE).train()
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    with pytest.raises(SlimcvError, match="3 exit weights for 2 exits"):
        EarlyExitObjective([1, 1, 1])(net, x, y, torch.arange(2))


def test_a_short_training_run_lowers_every_exit_loss() -> None:
    from torch.utils.data import TensorDataset

    from slimcv.data import DataBundle, load_data
    from slimcv.sources.model import Preprocess
    from slimcv.training import TrainConfig, fit

    torch.manual_seed(0)
    backbone = build_network(SPEC, num_classes=10)
    net = EarlyExitNet(backbone, ["stages.0", "stages.1"], input_shape=SHAPE)
    digits = load_data("digits", Preprocess(image_size=16))
    images = torch.stack([digits.train[i][0] for i in range(320)])
    labels = torch.tensor([digits.train[i][1] for i in range(320)])
    train, val = (
        TensorDataset(images[:256], labels[:256]),
        TensorDataset(images[256:], labels[256:]),
    )
    bundle = DataBundle("digits[:320]", train, val, digits.classes, 16)

    def losses() -> list[float]:
        net.eval()
        with torch.no_grad():
            outputs = net.forward_all(images[:256])
        return [float(nn.functional.cross_entropy(o, labels[:256])) for o in outputs]

    before = losses()
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, device="cpu")
    objective = EarlyExitObjective([0.5, 0.5, 1.0])
    history = fit(net, bundle, config, objective=objective, progress=False)
    after = losses()
    # 32 steps: every exit's loss is down by a clear margin (about 0.09, 0.15 and 0.25 nats).
    assert all(a < b - 0.05 for a, b in zip(after, before, strict=True)), (before, after)
    assert set(history[-1].parts) == {"ce:0", "ce:1", "ce:2"}
    assert history[-1].parts["ce:2"] < history[0].parts["ce:2"]
