from spikedistill.cli import main


def test_demo_command_trains_and_learns(capsys):
    assert main(["demo", "--epochs", "2", "--T", "2"]) == 0
    out = capsys.readouterr().out
    final = float(out.strip().splitlines()[-1].rsplit(" ", 1)[-1].rstrip("%"))
    assert final > 50.0  # 10 classes: chance is 10%
