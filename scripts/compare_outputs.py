"""Bit-for-bit check that a refactoring changed no number: dump logits, gradients and
checkpoints of fixed runs in one checkout, dump them again in another, compare.

    python scripts/compare_outputs.py dump OUT.pt     # in each checkout (its own src/ first)
    python scripts/compare_outputs.py compare A.pt B.pt

Cases: the MNIST net (convnet3, width 16, 28x28) and ResNet-19 (32x32), BPTT and Rate-BP,
the tdbn and ratebp neuron presets (and IF and a soft reset with a scaled input on the MNIST
net), one training forward + backward on a fixed batch per neuron backend (torch, cpp, compile
for the MNIST net); and two short trainer runs (BPTT and Rate-BP with its gradient scale, the
MNIST net on ``digits``; ResNet-19 with KD from a fresh ResNet-8 on ``synthetic``), whose
``last.pt`` is compared whole (model, objective, optimizer, scheduler, loop state, RNG).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path.cwd() / "src"))  # the checkout the command runs in

NETS = {
    "mnist": ("convnet3", dict(in_channels=1, width=16, head_pool=7), (8, 1, 28, 28)),
    "resnet19": ("resnet19", dict(in_channels=3), (4, 3, 32, 32)),
}
BACKENDS = {"mnist": ("torch", "cpp", "compile"), "resnet19": ("torch", "cpp")}


def _import(*names: str):
    for name in names:
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise ImportError(names)


def rate_view(model):
    ratebp = _import("spikedistill.ratebp", "spikedistill.spiking.ratebp")
    return ratebp.RateBackprop(model)


def backend_ctx(model, name: str):
    """The backend ``name`` for ``model``: the model's own setting where the checkout has one,
    else the old process-wide context."""
    spiking = _import("spikedistill.spiking")
    if hasattr(spiking, "set_backend"):
        spiking.set_backend(model, name)
        return contextlib.nullcontext()
    return spiking.neuron_backend(name)


#: neuron variants beyond the default ``tdbn`` (hard reset): Rate-BP's preset (soft, detached
#: reset, sigmoid surrogate), IF, and a leaky soft reset with a scaled input
NEURONS = {
    "tdbn": ("tdbn", {}),
    "ratebp": ("ratebp", {}),
    "if": ("if", {}),
    "soft-decay-input": ("tdbn", {"reset": "soft", "decay_input": True, "surrogate": "atan"}),
}
CASES = [  # (net, backprop, neuron)
    *[(net, bp, "tdbn") for net in NETS for bp in ("bptt", "rate")],
    *[(net, "rate", "ratebp") for net in NETS],
    ("mnist", "bptt", "if"),
    ("mnist", "bptt", "soft-decay-input"),
    ("mnist", "rate", "soft-decay-input"),
]


def step(net: str, backprop: str, backend: str, neuron: str) -> dict[str, torch.Tensor]:
    from spikedistill.models import build_model

    name, options, shape = NETS[net]
    preset, kwargs = NEURONS[neuron]
    torch.manual_seed(0)
    model = build_model(name, 10, spiking=True, T=2, neuron=preset, neuron_kwargs=kwargs, **options)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 2
    y = torch.arange(shape[0]) % 10
    model.train()
    with backend_ctx(model, backend):
        forward = rate_view(model) if backprop == "rate" else model
        logits = forward(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
    out = {"logits": logits.detach()}
    out.update({f"grad.{k}": p.grad for k, p in model.named_parameters()})
    out.update({f"buffer.{k}": b for k, b in model.named_buffers()})
    return out


TRAIN = {
    "mnist-bptt": [
        "data.name=digits",
        "data.batch_size=32",
        "model.name=convnet3",
        "model.spiking=true",
        "model.T=2",
        "model.options={width: 8}",
        "train.epochs=1",
        "train.seed=3",
        "data.train_subset=192",
        "optim.lr=0.05",
    ],
    "resnet19-kd": [
        "data.name=synthetic",
        "data.batch_size=8",
        "data.options={n_train: 24, n_test: 8}",
        "model.name=resnet19",
        "model.spiking=true",
        "model.T=2",
        "train.epochs=1",
        "train.seed=5",
        "distill.method=kd",
        "teacher.name=resnet8",
        "teacher.cache=false",
    ],
}
TRAIN["mnist-rate"] = [
    *TRAIN["mnist-bptt"],
    "train.backprop=rate",
    "train.rate_grad_scale=true",
    "model.T=3",
]


def train(case: str) -> dict[str, torch.Tensor]:
    from spikedistill.engine.config import load_config
    from spikedistill.engine.trainer import Trainer

    load_checkpoint = _import("spikedistill.checkpoint", "spikedistill.engine.checkpoint")

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, TRAIN[case])
        trainer = Trainer(cfg, Path(tmp) / "run")
        trainer.fit()
        ckpt = load_checkpoint.load_checkpoint(Path(tmp) / "run" / "last.pt")
    return flatten(ckpt)


def flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def dump(path: str) -> None:
    results = {}
    for net, backprop, neuron in CASES:
        for backend in BACKENDS[net]:
            key = f"{net}/{backprop}/{neuron}/{backend}"
            results[key] = step(net, backprop, backend, neuron)
            print("dumped", key, flush=True)
    for case in TRAIN:
        results[f"train/{case}"] = train(case)
        print("dumped", f"train/{case}", flush=True)
    torch.save(results, path)


#: entries that differ between two runs of one commit: wall-clock times, and Python's RNG state
#: in a process that ran ``torch.compile`` before (its workers draw from ``random``)
VOLATILE = (".seconds", "rng.python.")


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def compare(path_a: str, path_b: str) -> int:
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    bad = 0
    for case in sorted(set(a) | set(b)):
        if case not in a or case not in b:
            print(f"{case}: only in {'B' if case in b else 'A'}")
            bad += 1
            continue
        keys = {k for k in set(a[case]) | set(b[case]) if not any(v in k for v in VOLATILE)}
        diff = [k for k in sorted(keys) if k not in a[case] or k not in b[case]]
        diff += [k for k in sorted(keys - set(diff)) if not same(a[case][k], b[case][k])]
        n = sum(isinstance(v, torch.Tensor) for v in a[case].values())
        verdict = "bit-identical" if not diff else f"DIFFERENT in {len(diff)}: {diff[:6]}"
        print(f"{case}: {n} tensors, {len(keys)} entries: {verdict}")
        bad += bool(diff)
    print("all bit-identical" if not bad else f"{bad} case(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"] and len(sys.argv) == 3:
        dump(sys.argv[2])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
