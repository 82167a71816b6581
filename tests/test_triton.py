"""The ``triton`` backend's kernels against the reference scans, for every neuron preset and
reset/surrogate variant: identical spikes (and packed spikes, counts), membranes, gradients,
eligibilities and BatchNorm statistics within float rounding; and a zoo SNN trained one step
under BPTT and Rate-BP on either backend. On a CPU they run in Triton's interpreter
(``TRITON_INTERPRET=1``, set in conftest.py): small shapes, as it is slow."""

import copy
import dataclasses
import itertools

import pytest
import torch

from spikedistill.models import build_model
from spikedistill.ratebp import RateBackprop
from spikedistill.spiking import lif_multistep, neuron_config, set_backend
from spikedistill.spiking.kernels import LIF_BACKENDS, BatchStats, NormDrive, choose_backend
from spikedistill.spiking.kernels.reference import lif_backward, lif_forward
from spikedistill.spiking.surrogate import SURROGATES

pytest.importorskip("triton")
BACKEND = LIF_BACKENDS.get("triton")
REFERENCE = LIF_BACKENDS.get("torch")
if reason := BACKEND.unavailable(torch.device("cpu")):  # on a GPU machine: see test_gpu.py
    pytest.skip(reason, allow_module_level=True)
VARIANTS = [
    neuron_config(preset, reset=reset, detach_reset=detach, decay_input=decay_input,
                  surrogate=surrogate)
    for preset, reset, detach, decay_input, surrogate in itertools.product(
        ("tdbn", "ratebp", "if"), ("hard", "soft"), (False, True), (False, True), SURROGATES
    )
    if not (preset == "if" and decay_input)  # an IF neuron (decay 1) would scale inputs by 0
]  # fmt: skip


def variant_id(cfg) -> str:
    attached = "detach" if cfg.detach_reset else "attach"
    return f"{cfg.decay}-{cfg.reset}-{attached}-{'din' if cfg.decay_input else 'x'}-{cfg.surrogate}"


@pytest.mark.parametrize("cfg", VARIANTS, ids=variant_id)
def test_kernels_equal_the_reference_scans(cfg):
    generator = torch.Generator().manual_seed(len(str(cfg)))
    x = torch.randn(6, 3, 5, 7, generator=generator) * 1.5 + 0.6
    grad_spikes = torch.randn(x.shape, generator=generator)
    spikes, membrane = BACKEND.forward(x, cfg, keep_membrane=True)
    ref_spikes, ref_membrane = lif_forward(x, cfg, keep_membrane=True)
    assert torch.equal(spikes, ref_spikes) and 0 < spikes.mean() < 1
    torch.testing.assert_close(membrane, ref_membrane, rtol=1e-6, atol=1e-6)
    grad = BACKEND.backward(grad_spikes, membrane, cfg)
    torch.testing.assert_close(grad, lif_backward(grad_spikes, ref_membrane.clone(), cfg),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_backend_runs_a_neuron_end_to_end_and_falls_back_for_other_dtypes():
    cfg = neuron_config("tdbn")
    x = (torch.randn(4, 2, 9) + 0.5).requires_grad_(True)
    spikes = lif_multistep(x, cfg, backend=choose_backend("triton", "cpu"))
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = lif_multistep(x_ref, cfg, backend="torch")
    (ref_grad,) = torch.autograd.grad(ref.sum(), x_ref)
    assert torch.equal(spikes, ref)
    torch.testing.assert_close(grad, ref_grad)
    half = x.detach().to(torch.bfloat16)
    assert torch.equal(BACKEND.forward(half, cfg, False)[0], lif_forward(half, cfg, False)[0])


def test_auto_prefers_triton_on_cuda_then_compile(monkeypatch):
    from spikedistill.spiking import kernels

    assert kernels.AUTO["cuda"] == ("triton", "compile")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert "TRITON_INTERPRET=1" in BACKEND.unavailable(torch.device("cpu"))
    assert BACKEND.unavailable(torch.device("cuda")) is None  # triton imports here


def test_an_interpreter_that_cannot_loop_makes_the_backend_say_why(monkeypatch):
    from spikedistill.spiking.kernels import triton_kernels

    assert triton_kernels.interpreter_fault() is None  # this one loops (the tests run)

    class Broken:  # Triton 3.6's interpreter under numpy 2.4
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise TypeError("only 0-dimensional arrays can be converted to Python scalars")

            return launch

    monkeypatch.setattr(triton_kernels, "_loop_probe", Broken())
    reason = triton_kernels.interpreter_fault()
    assert "TypeError: only 0-dimensional" in reason and "install numpy<2.4" in reason


# -- the BatchNorm + LIF unit (``NormDrive``) -------------------------------------------------
def _unit(T: int, static: bool, residual: bool, seed: int = 0) -> NormDrive:
    """A drive ``x [T*rows or rows, C, 4, 5] * scale + shift [+ r]`` around the threshold."""
    g = torch.Generator().manual_seed(seed)
    rows, C = 2, 3
    x = torch.randn(rows if static else T * rows, C, 4, 5, generator=g)
    scale = torch.rand(C, generator=g) + 0.5
    shift = torch.randn(C, generator=g) * 0.3 + 0.6
    r = torch.randn(T * rows, C, 4, 5, generator=g) * 0.5 if residual else None
    return NormDrive(x, scale, shift, r, T, static)


def _fresh(unit: NormDrive) -> NormDrive:
    """``unit`` on a copy of ``x`` (the reference's record scan overwrites it)."""
    return dataclasses.replace(unit, x=unit.x.clone())


def _check_unit_scans(unit: NormDrive, cfg) -> None:
    """Forward, ``dL/dy`` and the record scan of the unit against the reference's."""
    spikes, bits = BACKEND.norm_forward(unit, cfg)
    ref_spikes, ref_bits = REFERENCE.norm_forward(unit, cfg)
    assert torch.equal(spikes, ref_spikes) and torch.equal(bits, ref_bits)
    assert bits.dtype == torch.bool and 0 < spikes.mean() < 1
    grad_spikes = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(1))
    grad = BACKEND.norm_backward(grad_spikes, bits.view(torch.uint8), unit, cfg)
    ref_grad = REFERENCE.norm_backward(grad_spikes, ref_bits.view(torch.uint8), unit, cfg)
    torch.testing.assert_close(grad, ref_grad.reshape(unit.x.shape), rtol=1e-5, atol=1e-6)
    x = unit.x.clone()
    packed, counts, elig = BACKEND.norm_record(unit, cfg)
    assert torch.equal(unit.x, x)  # left as it was (the reference normalises it in place)
    ref = REFERENCE.norm_record(_fresh(unit), cfg)
    assert torch.equal(packed, ref[0]) and torch.equal(counts, ref[1])
    assert counts.dtype == ref[1].dtype == torch.uint8
    torch.testing.assert_close(elig, ref[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["residual", "static"])
@pytest.mark.parametrize("cfg", VARIANTS, ids=variant_id)
def test_unit_kernels_equal_the_reference_scans(cfg, case):
    """Every variant per step with a residual (9 steps: spikes packed across two bytes) and
    static (3 steps)."""
    T, static, residual = (3, True, False) if case == "static" else (9, False, True)
    _check_unit_scans(_unit(T, static, residual), cfg)


#: each reset mode, detached or not, with every surrogate once
SUBSET = [
    neuron_config(preset, reset=reset, detach_reset=detach, decay_input=decay_input,
                  surrogate=surrogate)
    for preset, reset, detach, decay_input, surrogate in [
        ("tdbn", "hard", False, False, "triangle"), ("ratebp", "hard", True, True, "atan"),
        ("if", "soft", False, False, "rectangle"), ("tdbn", "soft", True, True, "sigmoid"),
    ]
]  # fmt: skip


@pytest.mark.parametrize(("T", "static"), [(1, False), (9, False), (1, True), (9, True)])
@pytest.mark.parametrize("cfg", SUBSET, ids=variant_id)
def test_unit_kernels_without_a_residual(cfg, T, static):
    """A single step (no carried membrane) and 9 steps, per step and static."""
    _check_unit_scans(_unit(T, static, residual=False, seed=T), cfg)


@pytest.mark.parametrize("case", ["plain", "residual", "static"])
@pytest.mark.parametrize("cfg", SUBSET, ids=variant_id)
def test_unit_input_backward_equals_the_reference(cfg, case):
    """``dL/dx, dL/dw, dL/db, dL/dr`` of the whole unit (the batch statistics of ``x``)."""
    unit = _unit(3, case == "static", case == "residual", seed=2)
    weight = torch.rand(unit.x.shape[1]) + 0.5
    var, mean = torch.var_mean(unit.x, [0, 2, 3], correction=0)
    stats = BatchStats(weight, mean, torch.rsqrt(var + 1e-5))
    spikes, bits = REFERENCE.norm_forward(unit, cfg)
    grad_spikes = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(3))
    args = (grad_spikes, bits.view(torch.uint8), unit, stats, cfg,
            (True, True, True, unit.residual is not None))  # fmt: skip
    for ours, theirs in zip(BACKEND.norm_input_backward(*args),
                            REFERENCE.norm_input_backward(*args), strict=True):  # fmt: skip
        assert (ours is None) == (theirs is None)
        if ours is not None:
            torch.testing.assert_close(ours, theirs.view(ours.shape), rtol=1e-5, atol=1e-5)


def test_record_counts_take_the_count_dtype(monkeypatch):
    """Counts of ``T >= 256`` are int32 (``record.count_dtype``): the kernel stores the
    dtype it is given (forced here at a small ``T``; the interpreter is slow)."""
    from spikedistill.spiking.kernels import triton_unit_kernels

    monkeypatch.setattr(triton_unit_kernels, "count_dtype", lambda T: torch.int32)
    unit, cfg = _unit(5, False, False), neuron_config("tdbn")
    _, counts, _ = BACKEND.norm_record(unit, cfg)
    _, ref_counts, _ = REFERENCE.norm_record(_fresh(unit), cfg)
    assert counts.dtype == torch.int32 and torch.equal(counts, ref_counts.int())


def test_unit_scans_fall_back_for_other_dtypes():
    unit, cfg = _unit(3, False, True), neuron_config("tdbn")
    unit = NormDrive(*(t.double() for t in (unit.x, unit.scale, unit.shift, unit.residual)), 3,
                     False)  # fmt: skip
    assert torch.equal(BACKEND.norm_forward(unit, cfg)[1], REFERENCE.norm_forward(unit, cfg)[1])
    ours, theirs = BACKEND.norm_record(_fresh(unit), cfg), REFERENCE.norm_record(_fresh(unit), cfg)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert torch.equal(BACKEND.batch_stats(unit.x, None, None, 0.0, 1e-5)[1],
                       REFERENCE.batch_stats(unit.x, None, None, 0.0, 1e-5)[1])  # fmt: skip


def _near_threshold(case: str, cfg) -> NormDrive:
    """``drive``: ``x scale + shift`` within rounding of the threshold; ``static``: the same,
    static; ``charge``: an exact drive (scale 1, shift 0) whose step-1 charge ``y_1 + decay y_0``
    (step 0 stays below the threshold) is within rounding of it."""
    g = torch.Generator().manual_seed(0)
    C = 4
    if case == "charge":
        y0 = torch.rand(64, C, 16, generator=g) * 0.6 + 0.3
        ulps = torch.randint(-3, 4, y0.shape, generator=g).float()
        y1 = (cfg.threshold - cfg.decay * y0.double()).float()
        x = torch.cat([y0, y1 + ulps * torch.finfo(torch.float32).eps * y1])
        return NormDrive(x, torch.ones(C), torch.zeros(C), None, 2, False)
    scale = torch.rand(C, generator=g).view(1, -1, 1) * 3 + 0.1
    shift = torch.randn(C, generator=g).view(1, -1, 1) * 2
    x = (cfg.threshold - shift) / scale * (1 + torch.randn(64, C, 16, generator=g) * 1e-6)
    return NormDrive(x, scale.flatten(), shift.flatten(), None, 2 if case == "static" else 1,
                     case == "static")  # fmt: skip


@pytest.mark.parametrize("case", ["drive", "static", "charge"])
def test_spikes_within_rounding_of_the_threshold_are_the_reference_bits(case):
    """Rounded as the reference (every product and sum on its own, no fused multiply-add), the
    forward, the record scan and the plain neuron fire the reference's bits."""
    cfg = neuron_config("tdbn", decay=0.8)
    unit = _near_threshold(case, cfg)
    _, bits = BACKEND.norm_forward(unit, cfg)
    _, ref_bits = REFERENCE.norm_forward(unit, cfg)
    step = ref_bits.view(unit.T, -1)[1 if case == "charge" else 0]
    assert 0.2 < step.float().mean() < 0.8  # the drive (or the charge) straddles the threshold
    assert torch.equal(bits, ref_bits)
    packed, _, _ = BACKEND.norm_record(unit, cfg)
    assert torch.equal(packed, REFERENCE.norm_record(_fresh(unit), cfg)[0])
    if case == "charge":
        x = unit.x.view(2, -1)
        assert torch.equal(BACKEND.forward(x, cfg, False)[0], lif_forward(x, cfg, False)[0])
        decay = torch.tensor(cfg.decay, dtype=torch.float32).double()
        fused = (x[1].double() + decay * x[0].double()).float() >= cfg.threshold  # one rounding
        assert not torch.equal(fused, ref_bits.view(2, -1)[1])  # the test can tell


@pytest.mark.parametrize(
    ("shape", "offset", "running", "max_splits"),
    [((12, 3, 5, 7), 1.0, True, 64), ((40, 5, 33), 100.0, False, 64),
     ((40, 5, 33), -3.0, True, 2), ((300, 4), 0.5, True, 64)],
    ids=["conv", "large_mean", "long_slices", "linear"],
)  # fmt: skip
def test_batch_stats_equal_the_reference(shape, offset, running, max_splits, monkeypatch):
    """Mean, invstd and the running statistics; a channel summed in several slices (programs),
    several blocks each with ``max_splits=2``."""
    from spikedistill.spiking.kernels import triton_unit_kernels

    monkeypatch.setattr(triton_unit_kernels, "MAX_SPLITS", max_splits)
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g) * 2 + offset
    buffers = (torch.randn(shape[1], generator=g), torch.rand(shape[1], generator=g) + 0.5)
    ours = [b.clone() for b in buffers] if running else [None, None]
    theirs = [b.clone() for b in buffers] if running else [None, None]
    mean, invstd = BACKEND.batch_stats(x, *ours, 0.3, 1e-5)
    ref_mean, ref_invstd = REFERENCE.batch_stats(x, *theirs, 0.3, 1e-5)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-6, atol=1e-5 * (1 + abs(offset)))
    torch.testing.assert_close(invstd, ref_invstd, rtol=1e-5, atol=0)
    if running:
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _counted(fn, calls: dict[str, int]):
    """``fn``, counting its calls in ``calls[fn.__name__]``."""

    def counted(*args):
        calls[fn.__name__] = calls.get(fn.__name__, 0) + 1
        return fn(*args)

    return counted


def _train_step(model, x, y, rate: bool):
    """Loss, parameter gradients and buffers after one BPTT or Rate-BP training step."""
    net = RateBackprop(model, stored_steps=1) if rate else model
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return loss.detach(), grads, [b.clone() for b in model.buffers()]


@pytest.mark.parametrize("rate", [False, True], ids=["bptt", "rate"])
def test_a_zoo_snn_trains_alike_on_triton_and_torch(rate, monkeypatch):
    """convnet3 (a static stem, two per-step units): one training step under BPTT (the fused
    unit's forward, backward and statistics) or Rate-BP (the record scan, in channel chunks:
    ``stored_steps=1`` of ``T=3``) on each backend."""
    from spikedistill.spiking.kernels import triton_kernels, triton_unit_kernels

    calls: dict[str, int] = {}
    for module, names in ((triton_kernels, ("norm_forward", "norm_backward")),
                          (triton_unit_kernels, ("batch_stats", "norm_record"))):  # fmt: skip
        for fn_name in names:
            monkeypatch.setattr(module, fn_name, _counted(getattr(module, fn_name), calls))
    torch.manual_seed(0)
    model = build_model("convnet3", 10, spiking=True, T=3, width=4,
                        neuron="ratebp" if rate else "tdbn").train()  # fmt: skip
    x, y = torch.rand(2, 1, 28, 28) * 2, torch.tensor([3, 7])
    results = {}
    for name in ("torch", "triton"):
        copy_ = copy.deepcopy(model)
        set_backend(copy_, name)
        results[name] = _train_step(copy_, x, y, rate)
    expected = ["norm_record"] if rate else ["batch_stats", "norm_backward", "norm_forward"]
    assert sorted(calls) == expected and min(calls.values()) >= 3  # ran for every unit
    (loss, grads, buffers), (ref_loss, ref_grads, ref_buffers) = results["triton"], results["torch"]
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(buffers, ref_buffers, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
