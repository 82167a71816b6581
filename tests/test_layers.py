import torch
from torch import nn

from spikedistill.spiking import (
    LIF,
    FoldedNeuron,
    TimeBatchNorm2d,
    TimeDistributed,
    direct_encode,
    fold_time,
    mean_readout,
    repeat_folded,
    time_first,
    unfold_time,
)


def test_time_distributed_equals_per_step_application():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(5, 2, 3, 6, 6)
    expected = torch.stack([conv(x[t]) for t in range(5)])
    torch.testing.assert_close(TimeDistributed(conv)(x), expected)


def test_time_batchnorm_normalises_over_time_and_batch():
    x = torch.randn(4, 3, 2, 5, 5) * 3 + 1
    y = TimeBatchNorm2d(2)(x)  # train mode: batch statistics over T*B*H*W
    mean = y.transpose(0, 2).reshape(2, -1).mean(1)
    var = y.transpose(0, 2).reshape(2, -1).var(1, unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones(2), atol=1e-3, rtol=0)


def test_fold_unfold_roundtrip_is_time_major():
    x = torch.arange(24.0).view(3, 2, 4)
    folded = fold_time(x)
    assert torch.equal(folded[2:4], x[1])  # rows t*B .. (t+1)*B - 1 hold step t
    assert torch.equal(unfold_time(folded, 3), x)


def test_folded_neuron_equals_neuron_on_time_first_tensor():
    x = torch.rand(4, 3, 2, 5) * 2
    lif = LIF("tdbn")
    assert torch.equal(FoldedNeuron(lif, T=4)(fold_time(x)), fold_time(lif(x)))


def test_direct_encoding_and_readout():
    img = torch.randn(3, 1, 4, 4)
    enc = direct_encode(img, 5)
    assert enc.shape == (5, 3, 1, 4, 4) and all(torch.equal(enc[t], img) for t in range(5))
    assert torch.equal(repeat_folded(img, 5), fold_time(enc))
    logits = torch.randn(5, 3, 10)
    torch.testing.assert_close(mean_readout(logits), logits.sum(0) / 5)


def test_time_first_accepts_batch_first_frames():
    frames = torch.randn(2, 7, 2, 4, 4)  # [B, T, C, H, W]
    assert torch.equal(time_first(frames, batch_first=True)[3], frames[:, 3])
    assert time_first(frames) is frames


def test_spikes_are_saved_once_as_bool_and_gradients_do_not_change(monkeypatch):
    import contextlib

    from spikedistill.models import base, build_model
    from spikedistill.spiking import saved_spikes

    packed = []

    class Spy(saved_spikes.PackedSaved):
        def __init__(self, bits, dtype, divisor):
            super().__init__(bits, dtype, divisor)
            packed.append(bits)

    monkeypatch.setattr(saved_spikes, "PackedSaved", Spy)
    torch.manual_seed(0)
    model = build_model("resnet8", 10, spiking=True, T=3).train()
    x = torch.randn(2, 3, 32, 32)

    def grads():
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    with_bool = grads()
    assert packed and all(b.dtype == torch.bool for b in packed)
    # resnet8 has 7 neurons; the last feeds the average pool, which saves nothing, and the
    # block inputs that feed both conv1 and the shortcut conv are packed once: 6 packs, each
    # reusing the bool spikes that the fused BN+LIF op made (and keeps) for its own backward
    assert len(packed) == 6
    monkeypatch.setattr(base, "spikes_saved_as_bool", contextlib.nullcontext)
    for a, b in zip(with_bool, grads(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
