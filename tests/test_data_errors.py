"""Every dataset's "data not found" error says where it looked and how to get the data, naming
only switches and config keys that exist (``data.download=true``, never a ``--download``)."""

import re

import pytest

from spikedistill.data import build_datasets
from spikedistill.engine.config import DataConfig, load_config
from spikedistill.errors import DataError

#: dataset -> whether spikedistill can download it (``data.download=true``)
DATASETS = {
    "mnist": True,
    "cifar10": True,
    "cifar100": True,
    "cifar10dvs": True,
    "imagenet": False,
    "dvsgesture": False,
}
#: the command-line switches a "not found" message may name (``train`` and ``eval`` take them)
SWITCHES = {"--data-dir"}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_data_error_names_the_folder_and_a_way_that_exists(name, tmp_path):
    root = tmp_path / "empty-data-root"
    root.mkdir()
    with pytest.raises(DataError) as info:
        build_datasets(name, root)
    message = str(info.value)
    assert "not found" in message and str(root) in message
    assert "--download" not in message
    assert set(re.findall(r"--[a-z][a-z-]*", message)) <= SWITCHES
    for key in re.findall(r"\bdata\.([a-z_]+)", message):
        assert hasattr(DataConfig(), key), key
    if DATASETS[name]:
        assert "data.download=true" in message
        assert load_config(None, ["data.download=true"]).data.download is True
    else:
        assert "data.download" not in message and "place" in message
        assert "cannot be downloaded" in message
    assert sorted(root.iterdir()) == []  # nothing written


def test_digits_needs_no_data_root(tmp_path):
    train, test, _ = build_datasets("digits", tmp_path / "absent")
    assert (len(train), len(test)) == (1442, 355)
    assert not (tmp_path / "absent").exists()


def test_the_train_command_accepts_the_switches_the_messages_name():
    cli = pytest.importorskip("spikedistill.cli")
    parser = cli.build_parser()
    train = parser.parse_args(["train", "x.yaml", "data.download=true", "--data-dir", "DATA"])
    assert train.data_dir == "DATA" and train.overrides == ["data.download=true"]
    evaluate = parser.parse_args(["eval", "--checkpoint", "r", "--data-dir", "DATA"])
    assert evaluate.data_dir == "DATA"
