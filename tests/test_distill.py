import math

import pytest
import torch

from spikedistill.distill import (
    DistillObjective,
    FrozenTeacher,
    load_teacher,
    parse_methods,
    resolve_tap,
)
from spikedistill.distill.fitnet import FitNet
from spikedistill.distill.kd import KD
from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import CheckpointError, ConfigError, UnknownNameError
from spikedistill.models import build_model


def test_kd_loss_equals_explicit_formula():
    torch.manual_seed(0)
    s, t, tau = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64), 4.0
    expected = 0.0
    for b in range(5):
        p_t = [math.exp(v / tau) for v in t[b].tolist()]
        p_s = [math.exp(v / tau) for v in s[b].tolist()]
        zt, zs = sum(p_t), sum(p_s)
        expected += sum(
            pt / zt * (math.log(pt / zt) - math.log(ps / zs))
            for pt, ps in zip(p_t, p_s, strict=True)
        )
    expected = expected / 5 * tau * tau
    from spikedistill.distill import DistillBatch

    kd = KD(None, None, tau=tau, weight=0.5)
    batch = DistillBatch(y=None, student_logits=s, step_logits=s[None], teacher_logits=t)
    assert kd(batch)["kd"].item() == pytest.approx(0.5 * expected, rel=1e-12)


def test_fitnet_regresses_time_averaged_map_and_pools_the_larger_one():
    torch.manual_seed(0)
    student = build_model("convnet3", 10, spiking=True, T=2, in_channels=1)
    teacher = build_model("resnet8", 10, in_channels=1)
    method = FitNet(student, teacher, student_tap="layer1", teacher_tap="layer3")
    s = torch.rand(2, 4, 32, 14, 14)  # [T, B, C, H, W]
    a = torch.randn(4, 64, 7, 7)
    from spikedistill.distill import DistillBatch

    batch = DistillBatch(
        y=None,
        student_logits=None,
        step_logits=None,
        teacher_logits=None,
        student_features={"layer1": s},
        teacher_features={"layer3": a},
    )
    method.build(batch)
    loss = method(batch)["fitnet"]
    regressed = method.regressor(s.mean(0))  # [B, 64, 14, 14]
    pooled = torch.nn.functional.avg_pool2d(regressed, 2)  # 14 -> 7 exactly
    assert loss.item() == pytest.approx(((pooled - a) ** 2).mean().item(), rel=1e-6)


def test_frozen_teacher_stays_in_eval_mode_and_gets_no_gradient():
    teacher = FrozenTeacher(build_model("convnet3", 10, in_channels=1))
    teacher.train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    out = teacher(torch.randn(2, 1, 28, 28))
    assert not out.requires_grad
    reference = FrozenTeacher(build_model("convnet3", 10, in_channels=1), train_bn=True).train()
    assert reference.model.training  # the CKDSNN behaviour, on request only


def test_teacher_checkpoint_layouts_and_mismatches(tmp_path):
    model = build_model("convnet3", 10, in_channels=1)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"epoch": 240, "model": model.state_dict()}, tmp_path / "repdistiller.pt")
    for name in ("plain.pt", "repdistiller.pt"):
        teacher = load_teacher("convnet3", str(tmp_path / name), 10, 1)
        assert torch.equal(teacher.model.stem[0].weight, model.stem[0].weight)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_teacher("convnet3", str(tmp_path / "plain.pt"), 100, 1)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_teacher("resnet8", str(tmp_path / "plain.pt"), 10, 1)


def test_method_spec_and_tap_errors():
    assert parse_methods("none") == [] and parse_methods("kd+fitnet") == ["kd", "fitnet"]
    with pytest.raises(UnknownNameError, match="Did you mean 'kd'"):
        parse_methods("kdd")
    with pytest.raises(ConfigError, match="twice"):
        parse_methods("kd+kd")
    model = build_model("resnet8", 10)
    assert resolve_tap(model, -1) == "layer3" and resolve_tap(model, "layer2.0.act1")
    with pytest.raises(ConfigError, match="stages: \\['layer1', 'layer2', 'layer3'\\]"):
        resolve_tap(model, "layer4")
    with pytest.raises(ConfigError, match="out of range"):
        resolve_tap(model, 5)


BASE = """
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
sched: {name: cosine}
train: {epochs: 2, seed: 5, deterministic: true}
"""


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    (root / "t.yaml").write_text(BASE)
    cfg = load_config(str(root / "t.yaml"), ["model.spiking=false", "train.epochs=2"])
    Trainer(cfg, root / "run").fit()
    return str(root / "run" / "best.pt")


def student_cfg(tmp_path, teacher_ckpt, method, *extra):
    (tmp_path / "s.yaml").write_text(BASE)
    return load_config(
        str(tmp_path / "s.yaml"),
        [
            "teacher.name=convnet3",
            f"teacher.checkpoint={teacher_ckpt}",
            "teacher.options={width: 8}",
            f"distill.method={method}",
            *extra,
        ],
    )


def test_distillation_trains_with_named_terms(tmp_path, teacher_ckpt):
    cfg = student_cfg(tmp_path, teacher_ckpt, "kd+fitnet", "distill.options={kd: {tau: 2}}")
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.objective, DistillObjective)
    assert set(trainer.objective.methods) == {"kd", "fitnet"}
    # the FitNet regressor is optimised with the student
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimised for p in trainer.objective.methods["fitnet"].parameters())
    assert not any(id(p) in optimised for p in trainer.objective.teacher.parameters())
    summary = trainer.fit()
    assert {"train_ce", "train_kd", "train_fitnet"} <= set(summary["history"][-1])
    assert summary["last_top1"] > 50
    assert "kd" in (tmp_path / "run" / "log.txt").read_text()


def test_a_teacher_without_a_method_is_not_used_and_says_so(tmp_path):
    cfg = student_cfg(tmp_path, str(tmp_path / "missing.pt"), "none")
    with pytest.warns(UserWarning, match="a teacher is set but distill.method is none"):
        trainer = Trainer(cfg, tmp_path / "run")  # the checkpoint is never read
    assert not isinstance(trainer.objective, DistillObjective)


def test_a_teacher_run_brings_its_options_and_a_spiking_one_is_flagged(tmp_path, teacher_ckpt):
    from spikedistill.checkpoint import load_checkpoint
    from spikedistill.distill.teacher import load_teacher

    saved = load_checkpoint(teacher_ckpt)
    assert saved["config"]["model"]["options"] == {"width": 8}  # not convnet3's default
    teacher = load_teacher("convnet3", teacher_ckpt, 10, 1)
    for key, value in teacher.model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    with pytest.raises(CheckpointError, match="does not fit"):
        load_teacher("convnet3", teacher_ckpt, 10, 1, {"width": 16})  # given options win
    saved["config"]["model"]["spiking"] = True
    torch.save(saved, tmp_path / "snn.pt")
    with pytest.warns(UserWarning, match="is a spiking run's"):
        load_teacher("convnet3", str(tmp_path / "snn.pt"), 10, 1)


def test_distillation_resume_restores_method_modules(tmp_path, teacher_ckpt):
    overrides = ["train.checkpoint_every=9"]
    full = Trainer(student_cfg(tmp_path, teacher_ckpt, "kd+fitnet", *overrides), tmp_path / "a")
    full_summary = full.fit()
    part = Trainer(student_cfg(tmp_path, teacher_ckpt, "kd+fitnet", *overrides), tmp_path / "b")
    original = part.save

    def crash(name):
        original(name)
        if part.state.global_step == 27:
            raise KeyboardInterrupt

    part.save = crash
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    resumed = Trainer(student_cfg(tmp_path, teacher_ckpt, "kd+fitnet", *overrides), tmp_path / "b")
    resumed.resume()
    assert resumed.state.step_in_epoch == 5  # mid epoch 2 (22 batches per epoch)
    summary = resumed.fit()
    assert summary["history"] == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(full_summary["history"], summary["history"], strict=True)
    ]
    fa = full.objective.methods["fitnet"].state_dict()
    fb = resumed.objective.methods["fitnet"].state_dict()
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_options_for_methods_not_selected_are_refused(tmp_path, teacher_ckpt):
    with pytest.raises(ConfigError, match=r"not in distill\.method"):
        student_cfg(tmp_path, teacher_ckpt, "kd", "distill.options={fitnet: {weight: 2}}")
    with pytest.raises(
        ConfigError,
        match=r"distill\.options\.kd\.temperature' of method 'kd' \(valid here: tau, weight\)",
    ):
        student_cfg(tmp_path, teacher_ckpt, "kd", "distill.options={kd: {temperature: 2}}")


def test_teacher_cache_skips_seen_samples_and_matches_uncached_training(tmp_path, teacher_ckpt):
    runs = {}
    for cache in (False, True):
        cfg = student_cfg(tmp_path, teacher_ckpt, "kd+fitnet", f"teacher.cache={cache}")
        trainer = Trainer(cfg, tmp_path / f"cache-{cache}")
        calls = []
        trainer.objective.teacher.model.register_forward_hook(lambda *_, c=calls: c.append(1))
        runs[cache] = (trainer.fit(), len(calls), trainer.model.state_dict())
    (plain, plain_calls, w_plain), (cached, cached_calls, w_cached) = runs[False], runs[True]
    # epoch 1 fills the cache (the incomplete last batch is dropped, so some samples stay
    # unseen); in epoch 2 the teacher runs once per batch holding an unseen sample
    loader = trainer.train_loader
    loader.set_epoch(0)
    seen = {int(i) for _, _, idx in loader.iter_from(0, with_indices=True) for i in idx}
    loader.set_epoch(1)
    misses = sum(
        any(int(i) not in seen for i in idx) for _, _, idx in loader.iter_from(0, with_indices=True)
    )
    steps = len(loader)
    assert plain_calls == 2 * steps and cached_calls == steps + misses < 2 * steps
    # cached outputs were computed in other batch compositions: equal up to conv rounding
    losses = ([r["train_loss"] for r in h["history"]] for h in (plain, cached))
    assert next(losses) == pytest.approx(next(losses), rel=1e-6)
    assert all(torch.allclose(w_plain[k], w_cached[k], rtol=1e-4, atol=1e-6) for k in w_plain)


def test_teacher_cache_refuses_augmented_inputs(tmp_path, teacher_ckpt):
    cfg = student_cfg(tmp_path, teacher_ckpt, "kd", "teacher.cache=true", "data.augment=[flip]")
    with pytest.raises(ConfigError, match=r"teacher\.cache needs the same teacher input"):
        Trainer(cfg, tmp_path / "r")


def test_eval_cli_reports_stm_of_a_sastc_run(tmp_path, teacher_ckpt, capsys):
    import json

    from spikedistill.cli import main

    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(BASE)
    out = tmp_path / "sastc"
    args = [
        "train",
        str(cfg_path),
        "train.epochs=1",
        "teacher.name=convnet3",
        f"teacher.checkpoint={teacher_ckpt}",
        "teacher.options={width: 8}",
        "distill.method=kd+sastc",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--stm", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert math.isfinite(result["stm"]) and result["samples"] == 355  # ln of an MSE: any sign
    other = ["--teacher", "convnet3", "--teacher-checkpoint", teacher_ckpt]  # width 8: its run's
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--stm", "--json", *other]) == 0
    named = json.loads(capsys.readouterr().out)["stm"]
    assert math.isfinite(named)
    # the teacher run records its model: --teacher may be left out
    argv = ["eval", "--checkpoint", str(out / "last.pt"), "--stm", "--json", *other[2:]]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["stm"] == named


def test_a_tap_the_model_overwrites_in_place_is_refused():
    from spikedistill.distill.taps import FeatureTaps

    model = build_model("resnet8", 10)  # ANN: bn2 output is overwritten by the residual sum
    taps = FeatureTaps(model, ["layer1.0.bn2", "layer1.0"])
    model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ConfigError, match=r"layer1\.0\.bn2"):
        taps.pop()
    taps = FeatureTaps(model, ["layer1.0"])
    model(torch.randn(2, 3, 32, 32))
    assert set(taps.pop()) == {"layer1.0"}


def test_student_taps_are_time_first_and_a_once_per_sample_stem_is_one_step():
    from spikedistill.distill.objective import time_first_features

    snn = build_model("convnet3", 10, spiking=True, T=3, in_channels=1, width=4)
    folded, once = torch.randn(3 * 5, 4, 8, 8), torch.randn(5, 4, 8, 8)
    out = time_first_features({"a": folded, "stem": once}, snn, 5)
    assert torch.equal(out["a"], folded.view(3, 5, 4, 8, 8))
    assert torch.equal(out["stem"], once.unsqueeze(0))
    with pytest.raises(ConfigError, match="gives 7 rows for a batch of 5 at T=3"):
        time_first_features({"odd": torch.randn(7, 4)}, snn, 5)
