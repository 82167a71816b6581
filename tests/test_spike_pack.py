"""Spike maps packed 8 steps per byte (``spike_pack``) and their use in Rate-BP's spike pass."""

import pytest
import torch
from torch import nn

from spikedistill.models import build_model
from spikedistill.ratebp import RateBackprop
from spikedistill.ratebp.packed_ops import or_pool
from spikedistill.spiking.kernels.spike_pack import PackedSpikes, pack, packed_steps, unpack


def test_pack_writes_step_8j_plus_b_into_bit_b_of_byte_j():
    spikes = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=torch.bool).view(10, 1)
    # steps 0, 2, 3, 7 -> 1 + 4 + 8 + 128; steps 8 + 1 -> 2
    assert pack(spikes).view(-1).tolist() == [141, 2]
    assert torch.equal(unpack(pack(spikes), 10), spikes)


@pytest.mark.parametrize("T", [1, 7, 8, 9, 16])
def test_pack_and_unpack_round_trip(T):
    torch.manual_seed(T)
    spikes = torch.rand(T, 3, 4, 5) < 0.4
    packed = pack(spikes)
    assert packed.dtype == torch.uint8 and packed.shape == (packed_steps(T), 3, 4, 5)
    assert torch.equal(unpack(packed, T), spikes)


def _packed_example(T=11, rows=3):
    torch.manual_seed(0)
    spikes = torch.rand(T, rows, 4, 6, 6) < 0.3
    return spikes.view(T * rows, 4, 6, 6), PackedSpikes(pack(spikes), T)


def test_packed_spikes_look_like_the_folded_bool_tensor_to_any_op():
    plain, packed = _packed_example()
    assert packed.shape == plain.shape and packed.dtype == torch.bool and packed.dim() == 4
    assert torch.equal(packed.unpacked(), plain)
    weight = torch.randn(2, 4, 3, 3)
    for op in (
        lambda s: s.float(),
        lambda s: s + 1,
        lambda s: s[:, 1:3],
        lambda s: s.view(11, 3, -1),
        lambda s: torch.flatten(s, 0, 1),
        lambda s: torch.cat([s, s]),
        lambda s: s.sum((0, 2)),
        lambda s: nn.functional.conv2d(s.float(), weight),
        lambda s: torch.zeros(s.shape).add_(s),
    ):
        ours, ref = op(packed), op(plain)
        assert type(ours) is torch.Tensor and torch.equal(ours, ref)
    with pytest.raises(TypeError, match="in place"):  # it would only change a copy
        packed.logical_not_()
    with pytest.raises(TypeError, match="in place"):
        torch.logical_not(plain, out=packed)
    with pytest.raises(ValueError, match=r"T=11 are uint8 \[2, rows"):  # one byte is 8 steps
        PackedSpikes(packed.packed[:1], 11)


def test_steps_and_byte_ops_of_packed_spikes():
    plain, packed = _packed_example()
    rows = 3
    assert torch.equal(packed.steps(6, 10, torch.float64), plain[6 * rows : 10 * rows].double())
    pooled = packed.map_bytes(lambda b: or_pool(b, 2))  # across both bytes (T = 11)
    assert isinstance(pooled, PackedSpikes) and pooled.packed.shape == (2, rows, 4, 3, 3)
    assert torch.equal(pooled.unpacked(), nn.functional.max_pool2d(plain.float(), 2).bool())


@pytest.mark.parametrize("shape", [(6, 4, 8, 10), (6, 4, 9, 10)])
def test_or_pool_of_bytes_is_the_max_pool_of_every_bit(shape):
    torch.manual_seed(0)
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    for k in (2, 3):
        expected = sum(
            nn.functional.max_pool2d(((x >> b) & 1).float(), k).to(torch.uint8) << b
            for b in range(8)
        )
        assert torch.equal(or_pool(x, k), expected)


def test_rate_backprop_spike_pass_passes_packed_spikes_between_layers():
    T = 10
    torch.manual_seed(0)
    model = build_model("convnet3", 10, spiking=True, T=T, neuron="ratebp", head_pool=7)
    seen = []  # a hooked stage is run as a module
    hook = model.layer1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(4, 1, 28, 28)
    view = RateBackprop(model)
    view(x)
    stem_spikes, stem_rates = seen  # spike pass, rate pass
    assert type(stem_rates) is torch.Tensor
    assert isinstance(stem_spikes, PackedSpikes)
    assert stem_spikes.shape == (T * 4, 16, 28, 28)
    assert stem_spikes.packed.shape == (packed_steps(T), 4, 16, 28, 28)
    hook.remove()
    with torch.no_grad():  # the plain BPTT forward, same batch statistics
        torch.testing.assert_close(
            view.last_spike_logits, model(x, per_step=True), rtol=0, atol=1e-5
        )
