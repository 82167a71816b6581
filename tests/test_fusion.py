"""Fusion found in any model: a plain ``nn.Sequential`` runs its BatchNorm + LIF units fused
(same results), and a module that may not fuse its pairs is named in a warning."""

import warnings

import pytest
import torch
from torch import nn

from reference import grad_fn_names
from spikedistill.models import build_model
from spikedistill.spiking import (
    LIF,
    FoldedNeuron,
    FusedSequential,
    fuse_units,
    set_backend,
    unfused_norms,
)

T = 2


def _user_net() -> nn.Sequential:
    torch.manual_seed(0)
    act = lambda: FoldedNeuron(LIF("tdbn"), T)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), act(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), act(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    )  # fmt: skip


def test_a_plain_sequential_runs_its_units_fused_with_the_same_results():
    plain, fused = _user_net(), _user_net()
    keys = list(fused.state_dict())
    assert fuse_units(fused) == ["Sequential"]
    assert type(fused) is FusedSequential and list(fused.state_dict()) == keys
    x = torch.randn(T * 5, 2, 6, 6)
    outputs = []
    for model in (plain, fused):
        set_backend(model, "torch")
        out = model(x)
        names = grad_fn_names(out)
        out.square().sum().backward()
        outputs.append((out.detach(), [p.grad for p in model.parameters()], names))
    (out_a, grads_a, names_a), (out_b, grads_b, names_b) = outputs
    assert "BatchNormLIFBackward" not in names_a
    assert names_b.count("BatchNormLIFBackward") == 2
    assert torch.equal(out_a, out_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert fuse_units(fused) == []  # nothing left to fuse


class UserBlock(nn.Module):
    """A block whose forward calls its BatchNorm and neuron itself: cannot be fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.act = FoldedNeuron(LIF(), T)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def test_a_block_that_may_not_fuse_is_named_once():
    model = nn.Sequential(UserBlock(), nn.Flatten())
    assert unfused_norms(model) == ["0.bn"]
    apart = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(), FoldedNeuron(LIF(), T))
    assert fuse_units(apart) == [] and unfused_norms(apart) == ["0"]  # not adjacent
    with pytest.warns(UserWarning, match=r"\['0\.bn'\] may run unfused"):
        assert fuse_units(model) == []
    partly = nn.Sequential(nn.BatchNorm2d(2), FoldedNeuron(LIF(), T), nn.BatchNorm2d(2))
    with pytest.warns(UserWarning, match=r"\['2'\] may run unfused"):
        assert fuse_units(partly) == ["Sequential"]  # the pair fuses, the last BN cannot


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_2", "pyramidnet20", "vgg8", "convnet3"])
def test_zoo_models_are_fused_already(name):
    model = build_model(name, 10, spiking=True, T=T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fuse_units(model) == []
    assert unfused_norms(model) == []
