"""Every user mistake ``eval``, ``report`` and ``bench`` can meet: one line on stderr, exit
status 2, nothing changed on disk (issue 22).

Each row is (id, argv builder, a fragment the message must contain). A builder gets ``run``, a
fresh copy of a tiny trained run that it may break, and ``tmp``, the test's folder (watched:
nothing in it may change); it returns the command line.
"""

import json
import shutil

import pytest
import torch

from bad_input import expect_one_line_error
from spikedistill.cli import main
from spikedistill.diagnostics.runs import file_stems, run_labels

BASE = """
name: tiny
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
train: {epochs: 1, seed: 0}
"""
SMALL_BENCH = ["--model", "convnet3", "--size", "12", "--in-channels", "1", "--batch", "2"]
SMALL_BENCH += ["--T", "1", "--reps", "1", "--no-memory", "--variants", "bptt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained run (digits, convnet3 width 8, T=2, one epoch)."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(BASE)
    assert main(["train", str(root / "tiny.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


# -- ways to break a run ----------------------------------------------------------------------
def change_checkpoint(change):
    """Rewrite the run's best.pt after ``change(ckpt)``."""

    def breaker(run):
        ckpt = torch.load(run / "best.pt", weights_only=True)
        change(ckpt)
        torch.save(ckpt, run / "best.pt")

    return breaker


def set_width(ckpt):
    ckpt["config"]["model"]["options"]["width"] = 16  # the weights are width 8


def drop_weight(ckpt):
    del ckpt["model"]["head.fc.bias"]


def add_weight(ckpt):
    ckpt["model"]["extra.weight"] = torch.zeros(3)


def reshape_weight(ckpt):
    ckpt["model"]["head.fc.weight"] = torch.zeros(10, 5)


def replace(field, value):
    return lambda ckpt: ckpt.__setitem__(field, value)


def set_config(section, key, value):
    return lambda ckpt: ckpt["config"][section].__setitem__(key, value)


def plain_state_dict(run):
    model = torch.load(run / "best.pt", weights_only=True)["model"]
    torch.save(model, run / "best.pt")


def not_a_checkpoint(run):
    (run / "best.pt").write_text("name: tiny\n")


#: (id, breaker of the run's best.pt, fragment): rows of both ``eval`` and ``report``
CHECKPOINTS = [
    ("width-changed", change_checkpoint(set_width), "stem.0.weight: checkpoint (8, 1, 3, 3) vs"),
    ("missing-key", change_checkpoint(drop_weight), "missing 1 keys (e.g. ['head.fc.bias'])"),
    ("unexpected-key", change_checkpoint(add_weight), "unexpected 1 keys (e.g. ['extra.weight'])"),
    ("mis-shaped-key", change_checkpoint(reshape_weight), "head.fc.weight: checkpoint (10, 5)"),
    ("no-config", change_checkpoint(lambda c: c.pop("config")), "not a spikedistill training"),
    ("config-a-list", change_checkpoint(replace("config", [1])), "config is a list, not a mapping"),
    ("model-a-string", change_checkpoint(replace("model", "x")), "'model' is not a state dict"),
    ("model-not-tensors", change_checkpoint(replace("model", {"a": 1})), "'model' is not a state"),
    ("objective-a-list", change_checkpoint(replace("objective", [])), "'objective' is not a"),
    (
        "config-invalid",
        change_checkpoint(set_config("model", "T", 0)),
        "config is not valid: model.T",
    ),
    (
        "config-unknown-key",
        change_checkpoint(set_config("train", "epochz", 1)),
        "not valid: unknown",
    ),
    ("plain-state-dict", plain_state_dict, "not a spikedistill training checkpoint"),
    ("not-a-checkpoint", not_a_checkpoint, "is unreadable or corrupt"),
]


def write_metrics(data: bytes):
    def breaker(run):
        (run / "metrics.json").write_bytes(data)

    return breaker


def edit_metrics(change):
    def breaker(run):
        summary = json.loads((run / "metrics.json").read_text())
        change(summary)
        (run / "metrics.json").write_text(json.dumps(summary))

    return breaker


def remove(*names):
    def breaker(run):
        for name in names:
            (run / name).unlink()

    return breaker


#: (id, breaker of the run, fragment): rows of ``report``
RUN_FILES = [
    ("metrics-invalid-json", write_metrics(b'{"history": ['), "metrics.json is not valid JSON"),
    ("metrics-not-utf8", write_metrics(b'{"name": "\xff"}'), "metrics.json is not UTF-8"),
    ("metrics-a-list", write_metrics(b"[1, 2]"), "metrics.json: holds a JSON list"),
    ("metrics-empty", write_metrics(b""), "metrics.json is empty"),
    ("metrics-nested-deeply", write_metrics(b"[" * 100_000), "(RecursionError: maximum"),
    ("metrics-huge-number", write_metrics(b'{"best_top1": 1' + b"0" * 5000 + b"}"), "4300 digits"),
    ("metrics-no-history", edit_metrics(lambda s: s.pop("history")), "no 'history' list"),
    ("metrics-history-a-number", edit_metrics(lambda s: s.update(history=5)), "no 'history'"),
    ("metrics-epoch-missing", edit_metrics(lambda s: s["history"][0].pop("epoch")), "history[0]"),
    (
        "metrics-top1-a-string",
        edit_metrics(lambda s: s["history"][0].update(test_top1="high")),
        "history[0].test_top1 is 'high', not a number",
    ),
    ("metrics-best-a-string", edit_metrics(lambda s: s.update(best_top1="x")), "best_top1 is 'x'"),
    ("no-checkpoint", remove("best.pt", "last.pt"), "no best.pt or last.pt"),
]


# -- the table --------------------------------------------------------------------------------
def eval_row(id_, breaker, fragment):
    def argv(run, tmp):
        breaker(run)
        return ["eval", "--checkpoint", str(run / "best.pt")]

    return pytest.param(argv, fragment, id=f"eval-{id_}")


def report_row(id_, breaker, fragment):
    def argv(run, tmp):
        breaker(run)
        return ["report", str(run), "--out", str(tmp / "out")]

    return pytest.param(argv, fragment, id=f"report-{id_}")


def plain_teacher_row():
    """``--teacher-checkpoint`` of bare weights, without ``--teacher``: no model to build."""

    def argv(run, tmp):
        torch.save(torch.load(run / "best.pt", weights_only=True)["model"], tmp / "plain.pt")
        plain = ["--teacher-checkpoint", str(tmp / "plain.pt")]
        return ["eval", "--checkpoint", str(run / "best.pt"), "--stm", *plain]

    return pytest.param(argv, "records no model", id="eval-teacher-checkpoint-plain-weights")


def command_row(id_, args, fragment):
    """A row of flags: ``{run}``, ``{tmp}`` in them are the run's and the test's folders."""

    def argv(run, tmp):
        return [a.replace("{run}", str(run)).replace("{tmp}", str(tmp)) for a in args]

    return pytest.param(argv, fragment, id=id_)


EVAL = ["eval", "--checkpoint", "{run}/best.pt"]
REPORT = ["report", "{run}", "--out", "{tmp}/out"]
BENCH = ["bench", *SMALL_BENCH, "--out", "{tmp}/bench/result"]

FLAGS = [
    ("eval-T-0", [*EVAL, "--T", "0"], "--T must be an integer >= 1, got 0"),
    ("eval-T-negative", [*EVAL, "--T", "-2"], "--T must be an integer >= 1, got -2"),
    ("eval-batch-size-0", [*EVAL, "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    ("eval-stm-batch-0", [*EVAL, "--stm", "--stm-batch", "0"], "--stm-batch must be an integer"),
    (
        "eval-teacher-without-stm",
        [*EVAL, "--teacher-checkpoint", "{run}/best.pt"],
        "--teacher-checkpoint is for the STM: add --stm",
    ),
    ("eval-device-bogus", [*EVAL, "--device", "bogus"], "--device='bogus' is not a device"),
    ("eval-unknown-dataset", [*EVAL, "--data", "mnsit"], "Did you mean 'mnist'"),
    ("eval-other-dataset", [*EVAL, "--data", "synthetic"], "does not fit the architecture"),
    ("eval-folder-not-a-run", ["eval", "--checkpoint", "{tmp}"], "no best.pt or last.pt"),
    ("report-e-ac-nan", [*REPORT, "--e-ac", "nan"], "--e-ac must be a finite number > 0, got nan"),
    ("report-e-ac-inf", [*REPORT, "--e-ac", "inf"], "--e-ac must be a finite number > 0, got inf"),
    ("report-e-ac-negative", [*REPORT, "--e-ac", "-0.9"], "--e-ac must be a finite number > 0"),
    ("report-e-ac-zero", [*REPORT, "--e-ac", "0"], "--e-ac must be a finite number > 0, got 0"),
    ("report-e-mac-nan", [*REPORT, "--e-mac", "nan"], "--e-mac must be a finite number > 0"),
    ("report-e-mac-zero", [*REPORT, "--e-mac", "0"], "--e-mac must be a finite number > 0"),
    ("report-batches-0", [*REPORT, "--batches", "0"], "--batches must be an integer >= 1"),
    ("report-batches-negative", [*REPORT, "--batches", "-1"], "--batches must be an integer"),
    ("report-device-bogus", [*REPORT, "--device", "bogus"], "--device='bogus' is not a device"),
    ("report-missing-run", ["report", "{tmp}/nope", "--out", "{tmp}/out"], "does not exist"),
    ("report-run-a-file", ["report", "{run}/config.yaml", "--out", "{tmp}/out"], "not a folder"),
    ("report-out-a-file", ["report", "{run}", "--out", "{run}/config.yaml"], "is not a folder"),
    (
        "report-second-run-broken",  # nothing measured or written for the first either
        ["report", "{run}", "{run}/../none", "--out", "{tmp}/out"],
        "none' does not exist",
    ),
    ("bench-options-bad-json", [*BENCH, "--options", "{bad"], "--options is not valid JSON"),
    ("bench-options-a-list", [*BENCH, "--options", "[1]"], "--options must be a JSON object"),
    ("bench-options-a-string", [*BENCH, "--options", '"w"'], "got str"),
    ("bench-options-nested-deeply", [*BENCH, "--options", "[" * 100_000], "RecursionError"),
    ("bench-size-0", [*BENCH, "--size", "0"], "--size must be an integer >= 1, got 0"),
    ("bench-size-negative", [*BENCH, "--size", "-8"], "--size must be an integer >= 1, got -8"),
    (
        "bench-size-too-small",
        [*BENCH, "--size", "2"],
        "cannot run on this data (a batch of shape (1, 1, 2, 2))",
    ),
    ("bench-in-channels-0", [*BENCH, "--in-channels", "0"], "--in-channels must be an integer"),
    ("bench-batch-0", [*BENCH, "--batch", "0"], "--batch must be an integer >= 1, got 0"),
    ("bench-reps-0", [*BENCH, "--reps", "0"], "--reps must be an integer >= 1, got 0"),
    ("bench-T-negative", [*BENCH, "--T", "2", "-1"], "--T must be an integer >= 1, got -1"),
    ("bench-device-bogus", [*BENCH, "--device", "bogus"], "--device='bogus' is not a device"),
    ("bench-out-empty", ["bench", *SMALL_BENCH, "--out", ""], "--out '' needs a file name"),
    (
        "bench-out-under-a-file",
        ["bench", *SMALL_BENCH, "--out", "{run}/config.yaml/bench"],
        "config.yaml' is not a folder",
    ),
]

ROWS = [
    *(eval_row(*row) for row in CHECKPOINTS),
    *(report_row(*row) for row in CHECKPOINTS),
    *(report_row(*row) for row in RUN_FILES),
    *(command_row(*row) for row in FLAGS),
    plain_teacher_row(),
]


@pytest.mark.parametrize(("argv", "message"), ROWS)
def test_bad_command_input_gives_one_line_exit_2_and_writes_nothing(
    argv, message, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    expect_one_line_error(argv(run, tmp_path), message, capsys, watch=[tmp_path])


# -- behaviour --------------------------------------------------------------------------------
def test_runs_of_the_same_folder_name_get_their_own_files(trained, tmp_path, capsys):
    for parent in ("a", "b"):
        shutil.copytree(trained, tmp_path / parent / "run")
    out = tmp_path / "out"
    argv = ["report", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    assert main([*argv, "--batches", "1", "--out", str(out)]) == 0
    assert (out / "firing_a_run.png").is_file() and (out / "firing_b_run.png").is_file()
    md = (out / "report.md").read_text()
    assert "| a/run |" in md and "| b/run |" in md
    assert "## a/run: firing rate" in md and "## b/run: firing rate" in md
    assert not list(out.glob(".spikedistill-*"))  # no staging folder left


def test_a_run_without_test_accuracy_is_reported(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    summary = json.loads((run / "metrics.json").read_text())
    summary.update(best_top1=None, last_top1=None)
    summary["history"][0]["test_top1"] = None  # e.g. train.eval_every > epochs
    (run / "metrics.json").write_text(json.dumps(summary))
    assert main(["report", str(run), "--batches", "1", "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    head, row = (line for line in md.splitlines() if line.startswith("| run |"))
    cells = dict(zip(head.split("|"), row.split("|"), strict=True))
    assert cells[" best top-1 (%) "] == cells[" last top-1 (%) "] == " n/a "


def test_a_report_that_fails_while_writing_leaves_no_files(trained, tmp_path, monkeypatch):
    import spikedistill.viz.diagnostics as figures

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "plot_firing", disk_full)
    out = tmp_path / "out"
    assert main(["report", str(trained), "--batches", "1", "--out", str(out)]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("runs", "labels", "stems"),
    [
        (["x/sastc", "x/samd"], ["sastc", "samd"], ["sastc", "samd"]),
        (["a/run", "b/run"], ["a/run", "b/run"], ["a_run", "b_run"]),
        (["a/run", "a/run"], ["run", "run-2"], ["run", "run-2"]),
        (["x/Run", "x/run"], ["Run", "run"], ["Run", "run-2"]),  # case-insensitive disks
    ],
    ids=["distinct", "same-folder-name", "same-folder-twice", "differ-by-case"],
)
def test_run_labels_and_file_names_are_distinct(runs, labels, stems):
    assert run_labels(runs) == labels
    assert file_stems(labels) == stems
