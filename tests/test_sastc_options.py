"""SASTC's options beyond the paper's: ``embed_dim``, ``warmup_epochs`` and the cheaper
``regressor: conv1x1`` (against the explicit loops of test_sastc)."""

from __future__ import annotations

import pytest
import torch

import test_sastc
from spikedistill.distill.sastc import SASTC
from spikedistill.errors import ConfigError
from test_sastc import B, Stub, loss_by_loops, make_batch


def make_method(**options) -> SASTC:
    method = test_sastc.make_method(**options)
    for p in method.parameters():  # BN's affine parameters away from 1 / 0
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    return method


def test_conv1x1_regressor_matches_the_loops():
    method = make_method(regressor="conv1x1", weight=2.0)
    conv = method.regressors[0][1][0]
    assert conv.kernel_size == (1, 1) and conv.padding == (0, 0)
    batch = make_batch()
    expected, _ = loss_by_loops(method, batch)
    torch.testing.assert_close(method(batch)["sastc"], expected, rtol=1e-9, atol=1e-9)


def test_unknown_regressor_names_the_valid_ones():
    with pytest.raises(ConfigError, match="expected one of 'conv3x3', 'conv1x1', got 'conv5x5'"):
        SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=8, regressor="conv5x5")


def test_embed_dim_sets_the_mlp_sizes():
    method = make_method(embed_dim=5)
    for mlp in [*method.query, *method.key]:
        assert (mlp.fc1.in_features, mlp.fc1.out_features, mlp.fc2.out_features) == (B, 10, 5)
    assert make_method().query[0].fc2.out_features == B // 4
    with pytest.raises(ConfigError, match="embed_dim must be >= 1"):
        SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=8, embed_dim=0)


def test_warmup_ramps_the_weight_linearly():
    method = make_method(weight=3.0, warmup_epochs=4)
    full = make_method(weight=3.0)
    batch = make_batch()
    base = full(batch)["sastc"].item()
    for epoch, factor in [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0), (9, 1.0)]:
        method.set_epoch(epoch)
        assert method(batch)["sastc"].item() == pytest.approx(factor * base, rel=1e-12)
    full.set_epoch(0)  # no warm-up: the full weight from the first epoch
    assert full(batch)["sastc"].item() == pytest.approx(base, rel=1e-12)
    with pytest.raises(ConfigError, match="warmup_epochs must be >= 0"):
        SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=8, warmup_epochs=-1)
