import pytest
import torch
from torch import nn

from spikedistill.errors import ConfigError, UnknownNameError
from spikedistill.models import build_model, list_models
from spikedistill.spiking import FoldedNeuron

# Standard parameter counts (CIFAR-100 builds of RepDistiller / mdistiller; torchvision ImageNet).
PARAMS_CIFAR100 = {
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn_16_2": 0.70e6,
    "wrn_40_2": 2.25e6,
    "resnet56": 0.86e6,
    "resnet20": 0.28e6,
    "vgg13": 9.46e6,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "expected"), PARAMS_CIFAR100.items())
def test_standard_parameter_counts(name, expected):
    assert abs(n_params(build_model(name, 100)) - expected) / expected < 0.01


def test_imagenet_resnets_match_torchvision_counts():
    assert n_params(build_model("resnet18_imagenet", 1000)) == 11_689_512
    assert n_params(build_model("resnet34_imagenet", 1000)) == 21_797_672


def input_for(name: str, batch: int = 2) -> torch.Tensor:
    if name == "vggsnn":
        return torch.randn(batch, 2, 48, 48)
    if name == "convnet3":
        return torch.randn(batch, 1, 28, 28)
    size = 64 if "imagenet" in name else 32
    return torch.randn(batch, 3, size, size)


SKIP_FORWARD = {"resnet110", "wrn_28_10", "pyramidnet110"}  # large: built but not run


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_as_ann_and_snn_with_the_same_names(name):
    ann = build_model(name, 7)
    snn = build_model(name, 7, spiking=True, T=2)
    assert [(k, v.shape) for k, v in ann.state_dict().items()] == [
        (k, v.shape) for k, v in snn.state_dict().items()
    ]
    assert any(isinstance(m, FoldedNeuron) for m in snn.modules())
    assert not any(isinstance(m, FoldedNeuron) for m in ann.modules())
    assert ann.stage_names and ann.stage_names == snn.stage_names
    if name in SKIP_FORWARD:
        return
    x = input_for(name)
    with torch.no_grad():
        assert ann.eval()(x).shape == (2, 7)
        assert snn.eval()(x).shape == (2, 7)
        assert snn(x, per_step=True).shape == (2, 2, 7)


def test_ann_weights_load_into_the_snn():
    ann = build_model("resnet8", 10)
    snn = build_model("resnet8", 10, spiking=True, T=3)
    snn.load_state_dict(ann.state_dict())  # strict: same names and shapes


def test_snn_static_input_equals_repeated_event_input():
    torch.manual_seed(0)
    snn = build_model("resnet8", 10, spiking=True, T=3).eval()
    img = torch.randn(4, 3, 32, 32)
    frames = img.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(snn(img), snn(frames))
        snn.batch_first = True
        torch.testing.assert_close(snn(img), snn(frames.transpose(0, 1)))


def test_mean_readout_is_mean_of_per_step_logits():
    snn = build_model("convnet3", 10, spiking=True, T=4).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(snn(x), snn(x, per_step=True).mean(0))


def test_changing_T_reaches_every_neuron():
    snn = build_model("resnet8", 10, spiking=True, T=2)
    snn.T = 5
    assert {m.T for m in snn.modules() if isinstance(m, FoldedNeuron)} == {5}
    assert snn(torch.randn(2, 3, 32, 32), per_step=True).shape == (5, 2, 10)


def test_snn_trains_end_to_end():
    torch.manual_seed(0)
    snn = build_model("convnet3", 10, spiking=True, T=2)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(snn(x), y).backward()
    assert snn.stem[0].weight.grad.abs().sum() > 0  # gradient reaches the first layer


def test_neuron_preset_and_overrides_reach_the_model():
    snn = build_model("resnet8", 10, spiking=True, neuron="ratebp", neuron_kwargs={"decay": 0.3})
    cfgs = {m.neuron.config for m in snn.modules() if isinstance(m, FoldedNeuron)}
    assert len(cfgs) == 1 and next(iter(cfgs)).decay == 0.3
    assert next(iter(cfgs)).reset == "soft"


def test_clear_errors_for_bad_model_requests():
    with pytest.raises(UnknownNameError, match="resnet19"):
        build_model("resnet91")
    with pytest.raises(ConfigError, match="unknown option"):
        build_model("resnet19", widthh=3)
    with pytest.raises(ConfigError, match="T must be"):
        build_model("resnet8", spiking=True, T=0)
    with pytest.raises(ConfigError, match="time steps"):
        build_model("resnet8", spiking=True, T=2)(torch.randn(3, 2, 3, 32, 32))
    with pytest.raises(ConfigError, match="ANN input"):
        build_model("resnet8")(torch.randn(3, 2, 3, 32, 32))


def test_in_channels_option_for_mnist():
    model = build_model("resnet8", 10, in_channels=1, spiking=True, T=2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
