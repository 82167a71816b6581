import warnings

from spikedistill.cli import main
from spikedistill.demo import run_demo


def test_demo_distils_students_and_writes_a_plot(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summaries = run_demo(out=str(tmp_path / "demo"))
    ours = [str(w.message) for w in caught if "spikedistill" in w.filename]
    assert ours == []  # a first user's run says nothing to fix
    assert list(summaries) == ["teacher (ANN)", "none", "kd", "kd+sastc"]
    assert summaries["teacher (ANN)"]["best_top1"] > 90
    assert all(s["last_top1"] > 50 for s in summaries.values())  # chance is 10%
    assert (tmp_path / "demo" / "comparison.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "best top-1" in out and "kd+sastc" in out


def test_unwritable_output_directory_is_one_clear_error(capsys):
    assert main(["demo", "--out", "/dev/null/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikedistill: error:") and "/dev/null/x" in err
    assert len(err.splitlines()) == 1
