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
    with pytest.raises(ConfigError, match=r"input must be \[B, C, H, W\]"):
        build_model("resnet8")(torch.randn(3, 32, 32))


def test_ann_given_event_frames_sees_their_time_mean():
    ann = build_model("resnet8").eval()
    frames = torch.randn(4, 2, 3, 32, 32)  # [T, B, C, H, W]
    torch.testing.assert_close(ann(frames), ann(frames.mean(0)))


def test_in_channels_option_for_mnist():
    model = build_model("resnet8", 10, in_channels=1, spiking=True, T=2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def _step_with_saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Loss, gradients and the bytes autograd saved during the forward (packed tensors)."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # (not model(): its
        logits = model.head(model.forward_features(x))  # own hooks would hide the saves)
        loss = nn.functional.cross_entropy(logits.view(-1, *y.shape, 10).mean(0), y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return loss.detach(), grads, sum(saved)


@pytest.mark.parametrize(
    ("name", "spiking", "unit", "at_most"),
    [  # convnet3 keeps less without checkpoints: its max-pools of spikes save only argmax
        ("resnet8", True, "BasicBlock", 0.6),
        ("convnet3", True, "FusedSequential", 0.8),
        ("vgg8", False, "FusedSequential", 0.6),
    ],
)
def test_block_checkpointing_gives_the_same_step_with_less_saved(name, spiking, unit, at_most):
    from spikedistill.models.base import checkpoint_units

    size, channels = (28, 1) if name == "convnet3" else (32, 3)
    snn_kwargs = {"T": 2} if spiking else {}
    torch.manual_seed(0)
    x, y = torch.randn(4, channels, size, size), torch.randint(0, 10, (4,))
    runs = []
    for flag in (False, True):
        torch.manual_seed(1)
        model = build_model(
            name, 10, spiking=spiking, in_channels=channels, checkpoint_blocks=flag, **snn_kwargs
        )
        loss, grads, saved = _step_with_saved_bytes(model, x, y)
        bn = model.stages()[0][1].modules()
        stats = [
            (m.running_mean.clone(), m.num_batches_tracked.item())
            for m in bn
            if isinstance(m, nn.BatchNorm2d)
        ]
        runs.append((loss, grads, saved, stats))
    (loss0, grads0, saved0, stats0), (loss1, grads1, saved1, stats1) = runs
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=0)
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-6, atol=1e-7)
    for (mean0, n0), (mean1, n1) in zip(stats0, stats1, strict=True):
        assert n0 == n1 == 1  # the recompute does not count the batch twice
        torch.testing.assert_close(mean1, mean0, rtol=0, atol=0)
    assert saved1 < at_most * saved0
    stage = build_model(name, 10, spiking=spiking, in_channels=channels).stages()[0][1]
    assert {type(u).__name__ for u in checkpoint_units(stage)} == {unit}


def test_plain_stages_run_inline_and_free_their_input():
    """forward_features runs a hook-free FusedSequential stage layer by layer: its input is
    gone once the first layer has used it (no grad: nothing saves it); a hooked stage is
    still called as a module, with the same output."""
    import weakref

    torch.manual_seed(0)
    model = build_model("convnet3", 10, spiking=True, T=2, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    stem_out = []
    first = model.layer1[0]  # the max-pool: its input is the stem's spikes
    handle = first.register_forward_pre_hook(lambda m, a: stem_out.append(weakref.ref(a[0])))
    alive = []
    model.layer1[1].register_forward_pre_hook(lambda m, a: alive.append(stem_out[-1]() is not None))
    with torch.no_grad():
        inline = model(x)
        calls = []
        model.layer1.register_forward_hook(lambda m, a, o: calls.append(1))
        called = model(x)
    handle.remove()
    assert alive == [False, True]  # freed inline; held by the call of the hooked stage
    assert calls == [1]
    torch.testing.assert_close(inline, called, rtol=0, atol=0)
