"""Students from outside the zoo (issue 24): the student contract (``models.contract``), the
``SpikingStudent`` adapter for SpikingJelly / time-first SNNs, and every logit and feature
method (kd, fitnet, sastc, samd, nld) on a SpikingJelly ResNet-like net, a plain SNN that
implements the contract itself, and a plain ANN, with a zoo and a plain teacher."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikedistill.distill import DistillObjective, FrozenTeacher
from spikedistill.distill.brd import BRD
from spikedistill.distill.objective import build_method, time_first_features
from spikedistill.distill.samd import SAMD
from spikedistill.errors import ConfigError
from spikedistill.models import build_model
from spikedistill.models.adapter import SpikingStudent, reset_states
from spikedistill.models.contract import (
    Student,
    check_student,
    feature_layout_of,
    infer_stage_names,
    stage_names_of,
    time_steps,
)
from spikedistill.spiking import LIF, FoldedNeuron

T, B, K, SIZE = 2, 4, 10, 16

# ---------------------------------------------------------------------------------------------
# Students and teachers.


def sj_net(step_mode: str = "m") -> nn.Module:
    """A small SpikingJelly ResNet-like net: stem, a residual block, a strided stage, head;
    ``[T, B, 3, 16, 16] -> [T, B, K]`` in multi-step mode."""
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import layer, neuron

    def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        conv = layer.Conv2d(cin, cout, 3, stride, 1, bias=False, step_mode=step_mode)
        return [conv, layer.BatchNorm2d(cout, step_mode=step_mode)]

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, step_mode=step_mode)

    class Block(nn.Module):
        """``lif(bn(conv(lif(bn(conv(x))))) + x)``."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(*conv_bn(c, c), lif(), *conv_bn(c, c))
            self.act = lif()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.body(x) + x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(*conv_bn(3, 8), lif())
            self.layer1 = nn.Sequential(Block(8))
            self.layer2 = nn.Sequential(*conv_bn(8, 16, 2), lif())
            self.pool = layer.AdaptiveAvgPool2d(1, step_mode=step_mode)
            self.flatten = layer.Flatten(step_mode=step_mode)
            self.fc = layer.Linear(16, K, step_mode=step_mode)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.layer2(self.layer1(self.stem(x)))
            return self.fc(self.flatten(self.pool(z)))

    return Net()


class PlainANN(nn.Module):
    """A plain ANN (no contract members): ``stem -> layer1 -> pool -> fc``."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


class OwnSNN(nn.Module):
    """A plain SNN that implements the contract itself, with time-folded maps ``[T*B, ...]``."""

    spiking = True
    feature_layout = "folded"

    def __init__(self, steps: int = T) -> None:
        super().__init__()
        self.T = steps
        self.stage_names = ["stem", "layer1"]
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), self.neuron())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), self.neuron())
        self.fc = nn.Linear(16, K)

    def neuron(self) -> nn.Module:
        return FoldedNeuron(LIF("tdbn"), self.T)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        folded = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1).flatten(0, 1)
        z = self.layer1(self.stem(folded)).mean(dim=(2, 3))
        logits = self.fc(z).view(self.T, -1, K)
        return logits if per_step else logits.mean(0)


class SnnTorchNet(nn.Module):
    """snnTorch's way: one step of the layers per time step, in a loop (``snn.Leaky`` neurons
    keep their membrane between the calls); its stages are inferred."""

    spiking = True

    def __init__(self, steps: int = T) -> None:
        super().__init__()
        snn = pytest.importorskip("snntorch")
        self.T = steps
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), snn.Leaky(0.5, init_hidden=True)
        )
        self.layer1 = nn.Sequential(
            nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), snn.Leaky(0.5, init_hidden=True)
        )
        self.fc = nn.Linear(16, K)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        from snntorch import utils

        utils.reset(self)
        logits = torch.stack(
            [self.fc(self.layer1(self.stem(x)).mean(dim=(2, 3))) for _ in range(self.T)]
        )
        return logits if per_step else logits.mean(0)


STUDENTS = {
    "spikingjelly": lambda: SpikingStudent(sj_net(), T),
    "own_snn": OwnSNN,
    "snntorch": SnnTorchNet,
    "plain_ann": PlainANN,
}
TEACHERS = {
    "zoo": lambda: build_model("resnet8", K),
    "plain": lambda: PlainANN(width=6),
}
OPTIONS = {  # (method, teacher kind) -> options
    ("sastc", "zoo"): {"batch_size": B},
    ("sastc", "plain"): {"batch_size": B},
    ("samd", "plain"): {"teacher_tap": "layer1", "teacher_fc": "fc"},
}


def first_weight(student: nn.Module) -> torch.Tensor:
    return next(m.weight for m in student.modules() if isinstance(m, nn.Conv2d))


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(B, 3, SIZE, SIZE, generator=g), torch.randint(0, K, (B,), generator=g)


# ---------------------------------------------------------------------------------------------
# Every method on every kind of student.


@pytest.mark.parametrize("teacher_kind", list(TEACHERS))
@pytest.mark.parametrize("student_kind", list(STUDENTS))
@pytest.mark.parametrize("method", ["kd", "fitnet", "sastc", "samd", "nld"])
def test_method_runs_on_own_student(method, student_kind, teacher_kind):
    torch.manual_seed(0)
    student, teacher = STUDENTS[student_kind](), TEACHERS[teacher_kind]()
    options = OPTIONS.get((method, teacher_kind), {})
    distill = build_method(method, student, teacher, options)
    objective = DistillObjective(student, FrozenTeacher(teacher), [distill], ce_weight=0.0)
    x, y = data()
    objective.build(student, x, y)
    logits, terms = objective(student, x, y)
    assert logits.shape == (B, K) and set(terms) == {method}
    loss = terms[method]
    assert torch.isfinite(loss)
    loss.backward()
    grad = first_weight(student).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_a_per_step_students_taps_are_its_steps_stacked():
    """A module that runs once per time step gives ``[T, B, ...]``: each step's own output of
    the same forward (snnTorch-style, the steps differ by the neurons' membranes)."""
    torch.manual_seed(0)
    student, teacher = SnnTorchNet(), PlainANN(width=6)
    assert stage_names_of(student) == ["stem", "layer1"]  # snn.Leaky counts as a neuron
    method = build_method("fitnet", student, teacher, {"student_tap": "stem"})
    objective = DistillObjective(student, FrozenTeacher(teacher), [method])
    outputs = []
    student.stem.register_forward_hook(lambda m, i, out: outputs.append(out.detach().clone()))
    batch = objective.distill_batch(student, *data())
    features = batch.student_features["stem"]
    assert len(outputs) == T and not torch.equal(outputs[0], outputs[1])
    assert features.shape == (T, B, 8, SIZE, SIZE) and features.requires_grad
    assert torch.equal(features.detach(), torch.stack(outputs))


class TwiceRun(nn.Module):
    """Runs ``stem`` ``runs`` times in one forward (a teacher reusing a block; a per-step loop
    of the wrong length)."""

    spiking = True

    def __init__(self, runs: int, steps: int = T) -> None:
        super().__init__()
        self.runs, self.T = runs, steps
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU())
        self.fc = nn.Linear(8, K)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        z = x
        for _ in range(self.runs):
            z = self.stem(z if z.shape[1] == 3 else x)
        logits = self.fc(z.mean(dim=(2, 3))).expand(self.T, -1, -1)
        return logits if per_step else logits.mean(0)


def test_taps_that_run_an_unexpected_number_of_times_are_refused():
    x, y = data()
    fitnet = {"student_tap": "stem", "teacher_tap": "stem"}

    def batch(student, teacher):
        method = build_method("fitnet", student, teacher, fitnet)
        return DistillObjective(student, FrozenTeacher(teacher), [method]).distill_batch(
            student, x, y
        )

    once = r"TwiceRun's feature taps ran several times in one forward \({'stem': 2}\)"
    with pytest.raises(ConfigError, match=once):
        batch(TwiceRun(1), TwiceRun(2))  # the teacher's
    with pytest.raises(ConfigError, match=r"'stem' ran 3 times in one forward.*run T=2 times"):
        batch(TwiceRun(3), TwiceRun(1))


def test_a_tap_returning_a_tuple_is_named():
    snn = pytest.importorskip("snntorch")
    student = OwnSNN()
    student.stem[2] = snn.Leaky(0.5)  # without init_hidden: returns (spikes, membrane)
    with pytest.raises(ConfigError, match=r"'stem.2' \(Leaky\) returns a tuple, not a tensor"):
        method = build_method("fitnet", student, PlainANN(), {"student_tap": "stem.2"})
        objective = DistillObjective(student, FrozenTeacher(PlainANN()), [method])
        objective.distill_batch(student, *data())


# ---------------------------------------------------------------------------------------------
# The adapter.


def test_adapter_repeats_a_static_input_over_time():
    torch.manual_seed(0)
    student = SpikingStudent(sj_net(), T).eval()
    x, _ = data()
    static = student(x, per_step=True)
    sequence = student(x.unsqueeze(0).repeat(T, 1, 1, 1, 1), per_step=True)
    assert static.shape == (T, B, K)
    torch.testing.assert_close(static, sequence, rtol=0, atol=0)
    torch.testing.assert_close(student(x), static.mean(0), rtol=0, atol=0)


def test_adapter_resets_neuron_state_before_every_forward():
    torch.manual_seed(0)
    net = sj_net()
    student = SpikingStudent(net, T).eval()
    x, _ = data()
    first = student(x)
    lif = net.stem[2]
    assert isinstance(lif.v, torch.Tensor) and lif.v.abs().sum() > 0  # state after a forward
    net(torch.randn(T, B, 3, SIZE, SIZE))  # leaves other state behind
    torch.testing.assert_close(student(x), first, rtol=0, atol=0)
    reset_states(net)
    assert not isinstance(lif.v, torch.Tensor) or lif.v.abs().sum() == 0


def test_adapter_features_are_time_first_and_stages_inferred():
    student = SpikingStudent(sj_net(), T)
    assert student.stage_names == ["module.stem", "module.layer1", "module.layer2"]
    teacher = FrozenTeacher(build_model("resnet8", K))
    method = build_method("fitnet", student, teacher.model, {"student_tap": 1})
    objective = DistillObjective(student, teacher, [method])
    x, y = data()
    batch = objective.distill_batch(student, x, y)
    assert batch.student_features["module.layer1"].shape == (T, B, 8, SIZE, SIZE)
    assert batch.step_logits.shape == (T, B, K)
    explicit = SpikingStudent(sj_net(), T, stage_names=["layer2"])
    assert explicit.stage_names == ["module.layer2"]


def test_adapter_input_output_and_mode_errors():
    with pytest.raises(ConfigError, match="set_step_mode"):
        SpikingStudent(sj_net(step_mode="s"), T)
    with pytest.raises(ConfigError, match="not a module path"):
        SpikingStudent(sj_net(), T, stage_names=["nope"])
    with pytest.raises(ConfigError, match="feature_layout"):
        SpikingStudent(sj_net(), T, feature_layout="time_last")
    with pytest.raises(ConfigError, match="integer >= 1"):
        SpikingStudent(sj_net(), 0)
    student = SpikingStudent(sj_net(), T)
    with pytest.raises(ConfigError, match="3 time steps"):
        student(torch.randn(3, B, 3, SIZE, SIZE))
    with pytest.raises(ConfigError, match="must have 4 dims"):
        student(torch.randn(B, SIZE))
    with pytest.raises(ConfigError, match="per_step_output=True"):
        SpikingStudent(sj_net(), T, per_step_output=False)(data()[0])


def test_adapter_for_a_net_returning_mean_logits():
    class MeanNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = sj_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).mean(0)

    torch.manual_seed(0)
    mean_net = MeanNet()
    student = SpikingStudent(mean_net, T, per_step_output=False).eval()
    x, _ = data()
    assert student(x, per_step=True).shape == (1, B, K)
    reference = SpikingStudent(mean_net.net, T).eval()
    torch.testing.assert_close(student(x), reference(x), rtol=0, atol=0)


def test_interop_as_student_switches_to_multi_step():
    from spikedistill.interop.spikingjelly import as_student

    student = as_student(sj_net(step_mode="s"), T)
    assert student(data()[0], per_step=True).shape == (T, B, K)


# ---------------------------------------------------------------------------------------------
# The contract.


def test_zoo_models_and_adapter_satisfy_the_protocol():
    for model in (
        build_model("resnet8", K, spiking=True, T=T),
        build_model("resnet8", K),
        build_model("convnet3", K, spiking=True, T=T, in_channels=1),
        SpikingStudent(sj_net(), T),
        OwnSNN(),
    ):
        assert isinstance(model, Student), type(model).__name__
        check_student(model)
    zoo = build_model("resnet8", K, spiking=True, T=3)
    assert feature_layout_of(zoo) == "folded" and time_steps(zoo) == 3
    assert feature_layout_of(SpikingStudent(sj_net(), T)) == "time_first"


def test_plain_module_defaults():
    plain = PlainANN()
    assert not isinstance(plain, Student)
    check_student(plain)
    assert time_steps(plain) == 1 and feature_layout_of(plain) == "folded"
    assert stage_names_of(plain) == ["stem", "layer1"]
    flat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten())
    assert infer_stage_names(flat) == ["1", "3"]
    no_act = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    assert infer_stage_names(no_act) == ["0"]
    assert infer_stage_names(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.ReLU())) == []


def test_contract_errors():
    class NoT(PlainANN):
        spiking = True

    class NoPerStep(PlainANN):
        spiking, T = True, 2

    class BadLayout(PlainANN):
        feature_layout = "time_last"

    with pytest.raises(ConfigError, match="needs T"):
        check_student(NoT())
    with pytest.raises(ConfigError, match="per_step"):
        check_student(NoPerStep())
    with pytest.raises(ConfigError, match="feature_layout"):
        check_student(BadLayout())
    with pytest.raises(ConfigError, match="per_step"):
        DistillObjective(NoPerStep(), FrozenTeacher(PlainANN()), [])


def test_declared_layout_decides_when_t_equals_b():
    """``[2, 2, ...]`` at T = B = 2 is time-first for one student and per-sample (computed
    once, ``[B, ...]``) for a folded one: no shape guess could tell them apart."""
    v = torch.arange(2 * 2 * 3.0).view(2, 2, 3)
    time_first = SpikingStudent(sj_net(), 2)
    assert time_first_features({"a": v}, time_first, 2)["a"] is v
    folded = time_first_features({"a": v}, OwnSNN(steps=2), 2)["a"]
    assert folded.shape == (1, 2, 2, 3)
    torch.testing.assert_close(
        time_first_features({"a": v.view(4, 3)}, OwnSNN(steps=2), 2)["a"], v, rtol=0, atol=0
    )
    with pytest.raises(ConfigError, match=r"must be \[T=2, B=3"):
        time_first_features({"a": v}, time_first, 3)


# ---------------------------------------------------------------------------------------------
# Error messages of the methods that need more than the contract.


def test_samd_names_its_options_when_the_teacher_has_no_zoo_head():
    student, teacher = PlainANN(), PlainANN()
    with pytest.raises(ConfigError, match=r"teacher_tap .*teacher_fc"):
        SAMD(student, teacher)
    with pytest.raises(ConfigError, match="teacher_tap must name"):
        SAMD(student, teacher, teacher_fc="fc")
    with pytest.raises(ConfigError, match=r"final nn\.Linear"):
        SAMD(student, teacher, teacher_tap="layer1", teacher_fc="layer1")
    method = SAMD(student, teacher, teacher_tap="layer1", teacher_fc="fc")
    assert method.teacher_taps() == ["layer1"] and method.teacher_fc == "fc"
    assert method.student_taps() == ["layer1"]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, K))
    with pytest.raises(ConfigError, match="student_tap"):
        SAMD(mlp, build_model("resnet8", K))
    zoo = SAMD(SpikingStudent(sj_net(), T), build_model("resnet8", K))
    assert zoo.teacher_fc == "head.fc" and zoo.student_taps() == ["module.layer2"]


def test_samd_channel_mismatch_names_the_options():
    student, teacher = PlainANN(), PlainANN()
    method = SAMD(student, teacher, teacher_tap="stem", teacher_fc="fc")
    objective = DistillObjective(student, FrozenTeacher(teacher), [method])
    with pytest.raises(ConfigError, match=r"teacher_fc.*teacher_tap"):
        objective(student, *data())


def test_brd_says_it_needs_zoo_models():
    zoo_student = build_model("resnet8", K, spiking=True, T=T)
    with pytest.raises(ConfigError, match=r"brd needs a zoo student .*same stages"):
        BRD(SpikingStudent(sj_net(), T), build_model("resnet8", K))
    with pytest.raises(ConfigError, match="brd needs a zoo teacher"):
        BRD(zoo_student, PlainANN())


@pytest.mark.parametrize("kind", ["spikingjelly", "snntorch", "own_snn"])
def test_rate_backprop_refuses_students_that_are_not_zoo_snns(kind):
    """Rate-BP's spike pass runs the zoo's layers: other neurons would run unreplaced
    (snnTorch's: trained through its own surrogate at one step), SpikingJelly's time-first
    maps would reach the folded kernels, an own net of our neurons fails inside."""
    from spikedistill.ratebp import RateBackprop

    student = STUDENTS[kind]()
    with pytest.raises(ConfigError, match=rf"{type(student).__name__} is not one.*bptt"):
        RateBackprop(student)


def test_the_start_line_names_whose_neurons_run():
    from spikedistill.engine.config import load_config
    from spikedistill.engine.setup import run_kind

    snn = load_config(None, ["model.spiking=true", f"model.T={T}"])
    rate = load_config(None, ["model.spiking=true", f"model.T={T}", "train.backprop=rate"])
    zoo = build_model("convnet3", K, spiking=True, T=T, width=4)
    assert run_kind(rate, zoo, "cpp") == f"SNN T={T}, cpp neurons, Rate-BP"
    assert run_kind(snn, SnnTorchNet(), "cpp") == f"SNN T={T}, Leaky neurons, BPTT"
    assert run_kind(snn, STUDENTS["spikingjelly"](), "cpp") == f"SNN T={T}, LIFNode neurons, BPTT"
    assert run_kind(load_config(None, []), PlainANN(), "cpp") == "ANN"


def test_a_net_without_stages_is_told_to_declare_them():
    from spikedistill.distill.taps import resolve_tap

    class OneChild(nn.Module):  # everything under one child, which holds the classifier
        def __init__(self):
            super().__init__()
            self.net = PlainANN()

    with pytest.raises(ConfigError, match="OneChild has no stages to index; declare stage_names"):
        resolve_tap(OneChild(), -1)
    assert resolve_tap(OneChild(), "net.layer1") == "net.layer1"
