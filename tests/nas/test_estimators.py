import math
import pickle

import pytest
import torch
from search_helpers import TinySpace

from slimcv.arch import build_network
from slimcv.nas.estimators import ESTIMATORS, EstimatorContext

CANDIDATE = TinySpace().decode({"resolution": 12, "width": 8, "k0": 3, "e0": 2})


def context(**options):
    return EstimatorContext(data="digits", num_classes=10, image_size=16, seed=0, options=options)


def test_zero_cost_is_seeded_and_not_accuracy():
    first = ESTIMATORS.get("zero-cost")(context(proxies="naswot,synflow,gradnorm"))
    # A pickled copy (what a Ray worker receives) gives the same score from scratch.
    second = pickle.loads(pickle.dumps(first))
    a, b = first.evaluate(CANDIDATE), second.evaluate(CANDIDATE)
    assert a.is_accuracy is False and a.state_dict is None
    assert set(a.details["proxies"]) == {"naswot", "synflow", "gradnorm"}
    assert all(math.isfinite(v) for v in a.details["proxies"].values())
    assert a.score == pytest.approx(sum(a.details["proxies"].values()))
    assert a.score == pytest.approx(b.score, rel=1e-9)


def test_zero_cost_prefers_the_wider_network_on_naswot_and_synflow():
    estimator = ESTIMATORS.get("zero-cost")(context())
    narrow = estimator.evaluate(CANDIDATE)
    wide = estimator.evaluate(TinySpace().decode({"resolution": 12, "width": 16, "k0": 5, "e0": 4}))
    assert wide.details["proxies"]["synflow"] > narrow.details["proxies"]["synflow"]
    assert wide.score > narrow.score


def test_zero_cost_unknown_proxy():
    from slimcv.errors import SearchError

    with pytest.raises(SearchError, match="known: naswot, synflow, gradnorm"):
        ESTIMATORS.get("zero-cost")(context(proxies="jacob"))


def test_short_train_learns_and_returns_weights():
    estimator = ESTIMATORS.get("short-train")(
        context(epochs=1, lr=0.02, batch_size=32, device="cpu")
    )
    estimate = estimator.evaluate(CANDIDATE)
    assert estimate.is_accuracy
    assert 30.0 < estimate.score <= 100.0  # well above chance (10 %) after one epoch
    model = build_network(CANDIDATE.spec, 10)
    model.load_state_dict(estimate.state_dict)
    assert not pickle.loads(pickle.dumps(estimator))._data  # workers load their own data
    again = ESTIMATORS.get("short-train")(
        context(epochs=1, lr=0.02, batch_size=32, device="cpu")
    ).evaluate(CANDIDATE)
    assert again.score == estimate.score
    assert torch.equal(
        again.state_dict["classifier.weight"], estimate.state_dict["classifier.weight"]
    )
