from pathlib import Path

import pytest
import torch

from spikedistill.data import DATASETS, DatasetInfo, build_datasets, resolve_data_root
from spikedistill.data.subsets import balanced_quotas, class_balanced_indices, noisy_labels
from spikedistill.errors import ConfigError, UnknownNameError


def test_registry_names():
    assert DATASETS.names() == [
        "cifar10",
        "cifar100",
        "cifar10dvs",
        "digits",
        "dvsgesture",
        "imagenet",
        "mnist",
        "synthetic",
    ]
    # a run trained on loaders given in Python: resolves, to explain why it cannot rebuild
    assert "python" in DATASETS and "python" not in DATASETS.unknown_message("pyton")


def test_unknown_dataset_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'") as info:
        build_datasets("mnsit")
    assert isinstance(info.value, ConfigError)


def test_unknown_option_names_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown option 'data.options.colour'") as info:
        build_datasets("synthetic", colour=True)
    assert "valid here: shape, num_classes, n_train, n_test" in str(info.value)
    with pytest.raises(ConfigError, match=r"valid here: none"):
        build_datasets("digits", image_size=8)
    with pytest.raises(ConfigError, match=r"data.options.n_train: expected int, got 'many'"):
        build_datasets("synthetic", n_train="many")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_subset": 5},  # fewer than the classes
        {"train_subset": 513},  # more than the samples
        {"train_subset": 2.5},
        {"train_subset": True},
        {"label_noise": 1.0},
        {"label_noise": -0.1},
        {"label_noise": "0.1"},
        {"shape": (3, 8)},
        {"num_classes": 1},
        {"n_train": 0},
    ],
)
def test_bad_values(kwargs):
    with pytest.raises(ConfigError):
        build_datasets("synthetic", **kwargs)


def test_resolve_data_root(monkeypatch, tmp_path):
    assert resolve_data_root(tmp_path) == tmp_path
    assert resolve_data_root("~/x") == Path.home() / "x"
    monkeypatch.setenv("SPIKEDISTILL_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.delenv("SPIKEDISTILL_DATA")
    assert resolve_data_root() == Path.home() / ".cache" / "spikedistill" / "data"


def test_env_var_is_used_by_build(monkeypatch, tmp_path, mnist_writer):
    mnist_writer(tmp_path / "MNIST" / "raw", gz=False)
    monkeypatch.setenv("SPIKEDISTILL_DATA", str(tmp_path))
    assert len(build_datasets("mnist")[0]) == 30


def test_synthetic_is_deterministic_and_learnable():
    a_train, a_test, info = build_datasets("synthetic", seed=1, shape=(2, 6, 5), n_train=200)
    b_train, _, _ = build_datasets("synthetic", seed=1, shape=[2, 6, 5], n_train=200)
    c_train, _, _ = build_datasets("synthetic", seed=2, shape=(2, 6, 5), n_train=200)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(
        a_train.labels, b_train.labels
    )
    assert not torch.equal(a_train.images, c_train.images)
    assert a_train.images.shape == (200, 2, 6, 5) and len(a_test) == 256
    assert info == DatasetInfo(10, 2, (6, 5), info.mean, info.std)
    assert torch.bincount(a_train.labels).tolist() == [20] * 10
    # nearest class mean (estimated on train) classifies the test set well
    x = a_train.images.float().flatten(1)
    means = torch.stack([x[a_train.labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(a_test.images.float().flatten(1), means).argmin(1)
    assert (pred == a_test.labels).float().mean() > 0.9


def test_digits_fixed_stratified_split():
    train, test, info = build_datasets("digits", seed=0)
    train2, test2, _ = build_datasets("digits", seed=99)
    assert torch.equal(test.images, test2.images) and torch.equal(train.labels, train2.labels)
    assert len(train) + len(test) == 1797 and 0.19 < len(test) / 1797 < 0.21
    ratio = torch.bincount(test.labels, minlength=10) / torch.bincount(train.labels, minlength=10)
    assert ((ratio > 0.22) & (ratio < 0.28)).all()
    assert train.images.dtype == torch.uint8 and train.images.max() == 255
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, (8, 8))


def test_class_balanced_subset():
    train, test, _ = build_datasets("synthetic", train_subset=50, seed=3)
    assert torch.bincount(train.labels, minlength=10).tolist() == [5] * 10
    again, _, _ = build_datasets("synthetic", train_subset=50, seed=3)
    other, _, _ = build_datasets("synthetic", train_subset=50, seed=4)
    assert torch.equal(train.images, again.images)
    assert not torch.equal(train.images, other.images)
    assert len(test) == 256  # the test set is untouched
    full, _, _ = build_datasets("synthetic", seed=3)
    assert len(build_datasets("synthetic", train_subset=len(full), seed=3)[0]) == len(full)


def test_subset_with_uneven_classes():
    labels = torch.tensor([0] * 3 + [1] * 50 + [2] * 50)
    idx = class_balanced_indices(labels, 3, 33, seed=0)
    counts = torch.bincount(labels[idx], minlength=3).tolist()
    assert counts == [3, 15, 15] and len(idx.unique()) == 33
    quotas = balanced_quotas(torch.tensor([10, 10, 10]), 14, torch.Generator().manual_seed(0))
    assert sorted(quotas.tolist()) == [4, 5, 5]
    assert torch.equal(idx, class_balanced_indices(labels, 3, 33, seed=0))


def test_label_noise_rate_other_class_and_train_only():
    clean_train, clean_test, _ = build_datasets("synthetic", shape=(1, 4, 4), n_train=4000, seed=5)
    noisy_train, noisy_test, _ = build_datasets(
        "synthetic", shape=(1, 4, 4), n_train=4000, seed=5, label_noise=0.3
    )
    assert torch.equal(noisy_train.images, clean_train.images)
    changed = noisy_train.labels != clean_train.labels
    assert abs(changed.float().mean().item() - 0.3) < 0.03
    assert torch.equal(noisy_test.labels, clean_test.labels)
    again, _, _ = build_datasets(
        "synthetic", shape=(1, 4, 4), n_train=4000, seed=5, label_noise=0.3
    )
    assert torch.equal(again.labels, noisy_train.labels)
    # replacements are spread over the other classes
    moved = (noisy_train.labels[changed] - clean_train.labels[changed]) % 10
    assert set(moved.tolist()) == set(range(1, 10))


def test_noisy_labels_never_keep_the_class():
    labels = torch.arange(10000) % 7
    noisy = noisy_labels(labels, 7, 0.9999, seed=0)
    assert (noisy != labels).float().mean() > 0.99
    assert torch.equal(noisy_labels(labels, 7, 0.0, seed=0), labels)


def test_subset_and_noise_together():
    train, _, _ = build_datasets("synthetic", train_subset=100, label_noise=0.2, seed=0)
    clean, _, _ = build_datasets("synthetic", train_subset=100, seed=0)
    assert torch.equal(train.images, clean.images)
    assert 0 < (train.labels != clean.labels).sum() < 40
