"""The reference papers' students as zoo variants (issue 25, "Paper fidelity"): SASTC's
``wrn_16_2_sastc`` and ``vgg11_sastc``, CKDSNN's ResNet-19 (``resnet19`` with
``shortcut="avgpool_conv", last_block_act="relu", head_act="none"``), and the reference weight
initialisations (``init``). The reference structures are re-created in ``reference_models``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_models import REFERENCES
from spikedistill.errors import ConfigError
from spikedistill.models import build_model
from spikedistill.models.registry import option_types
from spikedistill.spiking import FoldedNeuron

SASTC = ("wrn_16_2_sastc", "vgg11_sastc")
# the stage outputs = the reference's feature taps (channels, side) at a 32x32 input
STAGES = {
    "wrn_16_2_sastc": [(512, 32), (1024, 16), (2048, 8)],
    "vgg11_sastc": [(128, 16), (256, 8), (512, 4), (512, 2)],
}
CKDSNN = REFERENCES["resnet19"][1]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reference_and_zoo(name: str, num_classes: int = 10) -> tuple[nn.Module, nn.Module]:
    klass, options = REFERENCES[name]
    return klass(num_classes), build_model(name, num_classes, **options)


@pytest.mark.parametrize("name", REFERENCES)
def test_parameter_counts_match_the_reference_definitions(name):
    reference, zoo = reference_and_zoo(name)
    expected = n_params(reference)
    assert abs(n_params(zoo) - expected) / expected < 0.005, (n_params(zoo), expected)


@pytest.mark.parametrize("name", REFERENCES)
def test_the_ann_build_computes_the_reference_network(name):
    """With the reference's weights (copied in creation order), the ANN build gives the
    reference's logits: the same layers, strides, shortcuts and activation places."""
    torch.manual_seed(0)
    reference, zoo = reference_and_zoo(name, num_classes=7)
    ref_state, zoo_keys = reference.state_dict(), list(zoo.state_dict())
    assert [v.shape for v in ref_state.values()] == [zoo.state_dict()[k].shape for k in zoo_keys]
    zoo.load_state_dict(dict(zip(zoo_keys, ref_state.values(), strict=True)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(zoo.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-5)


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        for _, stage in model.stages()
    ]
    try:
        logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [logits, *outputs]


@pytest.mark.parametrize("name", SASTC)
def test_forward_shapes_as_ann_and_snn_at_T2(name):
    x = torch.randn(3, 3, 32, 32)
    ann = build_model(name, 10).eval()
    snn = build_model(name, 10, spiking=True, T=2).eval()
    with torch.no_grad():
        logits, *maps = stage_outputs(ann, x)
        assert logits.shape == (3, 10)
        assert [m.shape for m in maps] == [(3, c, s, s) for c, s in STAGES[name]]
        logits, *maps = stage_outputs(snn, x)
        assert logits.shape == (3, 10)
        assert [m.shape for m in maps] == [(2 * 3, c, s, s) for c, s in STAGES[name]]
        assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in maps)  # spikes
        assert snn(x, per_step=True).shape == (2, 3, 10)
    head = [type(m) for m in ann.head.children() if isinstance(m, nn.Linear | nn.ReLU)]
    if name == "vgg11_sastc":  # a purely linear three-layer classifier, also in the SNN
        assert head == [nn.Linear] * 3
        assert not any(isinstance(m, FoldedNeuron) for m in snn.head.modules())
    else:
        assert head == [nn.Linear, nn.ReLU, nn.Linear]


@pytest.mark.parametrize("name", SASTC)
def test_one_bptt_backward(name):
    torch.manual_seed(0)
    snn = build_model(name, 10, spiking=True, T=2).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    nn.functional.cross_entropy(snn(x), y).backward()
    grads = {k: p.grad for k, p in snn.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the surrogate carries the loss to the first layer, through every step and stage (the
    # last fc's weight may see no spike yet: a fresh fc1 rarely drives its LIF to threshold)
    zero = [k for k, g in grads.items() if not g.any()]
    assert set(zero) <= {"head.fc.weight"}, zero


def test_ckdsnn_student_ends_with_a_relu_and_a_linear_head():
    torch.manual_seed(0)
    snn = build_model("resnet19", 10, spiking=True, T=2, **CKDSNN)
    default = build_model("resnet19", 10, spiking=True, T=2)
    x = torch.randn(2, 3, 32, 32)  # train mode: BatchNorm's batch statistics make spikes
    with torch.no_grad():
        last = stage_outputs(snn, x)[-1]
        assert last.shape == (4, 512, 8, 8) and last.min() >= 0
        assert not set(last.unique().tolist()) <= {0.0, 1.0}  # real-valued, not spikes
        assert set(stage_outputs(default, x)[-1].unique().tolist()) <= {0.0, 1.0}
    assert isinstance(snn.layer3[-1].act2, nn.ReLU)
    assert isinstance(snn.layer3[0].act2, FoldedNeuron)
    assert isinstance(snn.layer3[-1].act1, FoldedNeuron)
    linears = [n for n, m in snn.head.named_children() if isinstance(m, nn.Linear)]
    assert linears == ["fc1", "fc"]
    between = list(snn.head.children())
    between = between[between.index(snn.head.fc1) + 1 : between.index(snn.head.fc)]
    assert between == []  # no neuron (nor any layer) between the two linear layers
    assert any(isinstance(m, FoldedNeuron) for m in default.head.modules())
    # the options add no parameter: an ANN teacher's weights (the same shortcut) load
    snn.load_state_dict(build_model("resnet19", 10, shortcut="avgpool_conv").state_dict())


def test_activation_options_are_declared_and_checked():
    for name in ("resnet19", "vgg11", "wrn_16_2_sastc"):
        assert {"head_act", "init"} <= set(option_types(name))
    assert "last_block_act" in option_types("resnet19")
    assert "downsample" in option_types("vgg11")
    with pytest.raises(ConfigError, match="last_block_act"):
        build_model("resnet19", last_block_act="none")
    with pytest.raises(ConfigError, match="head_act"):
        build_model("resnet19", head_act="relu")
    with pytest.raises(ConfigError, match="kaiming_normal"):  # the valid names are listed
        build_model("resnet8", init="xavier")


CONV_FAMILIES = ("resnet19", "wrn_16_2", "pyramidnet20", "vgg11", "wrn_16_2_sastc")


def _weights(model: nn.Module, kinds: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kinds)]


def _batchnorms_are_unit(model: nn.Module) -> None:
    for bn in _weights(model, (nn.BatchNorm2d,)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


@pytest.mark.parametrize("name", CONV_FAMILIES)
def test_kaiming_normal_init_of_the_sastc_teachers(name):
    torch.manual_seed(0)
    model = build_model(name, 10, init="kaiming_normal")
    for conv in _weights(model, (nn.Conv2d,)):
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = (2.0 / fan_out) ** 0.5
        assert abs(conv.weight.std().item() - expected) / expected < 0.1, conv
        assert abs(conv.weight.mean().item()) < 0.1 * expected
        assert conv.bias is None or not conv.bias.any()
    _batchnorms_are_unit(model)
    torch.manual_seed(0)  # linear layers keep PyTorch's default init
    default = build_model(name, 10)
    torch.testing.assert_close(model.head.fc.weight.std(), default.head.fc.weight.std())


@pytest.mark.parametrize("name", ("vggsnn", "vgg11_sastc"))
def test_normal_half_init_of_rate_bp(name):
    model = build_model(name, 10, init="normal_0.5")
    for layer in _weights(model, (nn.Conv2d, nn.Linear)):
        assert abs(layer.weight.std().item() - 0.5) < 0.05, layer
        assert abs(layer.weight.mean().item()) < 0.05
        assert not layer.bias.any()
    _batchnorms_are_unit(model)


@pytest.mark.parametrize("name", [*CONV_FAMILIES, "vggsnn"])
def test_default_init_changes_nothing(name):
    torch.manual_seed(0)
    plain = build_model(name, 10).state_dict()
    torch.manual_seed(0)
    default = build_model(name, 10, init="default").state_dict()
    assert all(torch.equal(plain[k], v) for k, v in default.items())
