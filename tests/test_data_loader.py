import pytest
import torch

from spikedistill.data import (
    DatasetInfo,
    ImageTensorDataset,
    TensorLoader,
    build_batch_transform,
    build_datasets,
    make_loader,
)
from spikedistill.errors import ConfigError

N = 103


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, 8, 8), generator=g, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(N, dtype=torch.uint8)  # sample id, survives normalisation
    labels = torch.arange(N) % 10
    info = DatasetInfo(10, 3, (8, 8), (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    return ImageTensorDataset(images, labels), info


def ids(x, info):
    """Recover the sample ids stored in pixel (0, 0, 0)."""
    return (x[:, 0, 0, 0] * info.std[0] + info.mean[0]).mul(255).round().long()


def collect(loader, start=0):
    return [(x.clone(), y.clone()) for x, y in loader.iter_from(start)]


def test_dataset_item_and_subset(data):
    ds, _ = data
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and y == 5
    assert torch.equal(x, ds.images[5].float() / 255)
    sub = ds.subset([4, 2])
    assert torch.equal(sub.labels, torch.tensor([4, 2])) and torch.equal(
        sub.images[1], ds.images[2]
    )


def test_shapes_dtypes_and_exact_normalisation(data):
    ds, info = data
    loader = make_loader(ds, 16, train=False, info=info)
    assert isinstance(loader, TensorLoader) and len(loader) == 7  # ceil(103 / 16), no drop
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16] * 6 + [7]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8) and y.dtype == torch.int64
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    expected = (ds.images[:16].float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert torch.equal(torch.cat([y for _, y in batches]), ds.labels)  # eval: in order


def test_train_drops_last_and_shuffles_per_epoch(data):
    ds, info = data
    loader = make_loader(ds, 16, train=True, info=info, seed=1)
    assert loader.drop_last and len(loader) == 6
    epoch0 = torch.cat([ids(x, info) for x, _ in loader])
    again = torch.cat([ids(x, info) for x, _ in loader])
    assert torch.equal(epoch0, again) and len(epoch0.unique()) == 96
    loader.set_epoch(1)
    epoch1 = torch.cat([ids(x, info) for x, _ in loader])
    assert not torch.equal(epoch0, epoch1)
    other_seed = make_loader(ds, 16, train=True, info=info, seed=2)
    assert not torch.equal(epoch0, torch.cat([ids(x, info) for x, _ in other_seed]))
    assert make_loader(ds, 16, train=True, info=info, drop_last=False).__len__() == 7


def test_order_ignores_global_rng(data):
    ds, info = data
    torch.manual_seed(0)
    first = [y for _, y in make_loader(ds, 10, train=True, info=info, seed=3)]
    torch.manual_seed(12345)
    torch.rand(100)
    second = [y for _, y in make_loader(ds, 10, train=True, info=info, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_iter_from_equals_tail_with_augmentation(data):
    ds, info = data
    transform = build_batch_transform(["crop", "flip", "cutout"], info)
    loader = make_loader(ds, 8, train=True, transform=transform, info=info, seed=4)
    loader.set_epoch(3)
    full = collect(loader)
    tail = collect(loader, 5)
    assert len(tail) == len(full) - 5
    for (xa, ya), (xb, yb) in zip(full[5:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    fresh = make_loader(ds, 8, train=True, transform=transform, info=info, seed=4)
    fresh.set_epoch(3)  # a restarted process reproduces the same batches
    assert all(torch.equal(a[0], b[0]) for a, b in zip(collect(fresh, 5), tail, strict=True))
    assert collect(loader, len(loader)) == []
    with pytest.raises(ConfigError):
        loader.iter_from(len(loader) + 1)


def test_augmentation_differs_between_epochs(data):
    ds, info = data
    transform = build_batch_transform(["crop", "flip"], info)
    loader = make_loader(ds, 200, train=False, transform=transform, info=info, seed=0)
    first = next(iter(loader))[0]
    loader.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[0])


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_train_shards_disjoint_equal_and_cover(data, world_size):
    ds, info = data
    shards = []
    for rank in range(world_size):
        loader = make_loader(
            ds, 5, train=True, info=info, seed=7, rank=rank, world_size=world_size, drop_last=False
        )
        loader.set_epoch(2)
        shards.append(torch.cat([ids(x, info) for x, _ in loader]))
    per_rank = -(-N // world_size)
    assert all(len(s) == per_rank for s in shards)
    everything = torch.cat(shards)
    assert set(everything.tolist()) == set(range(N))
    pad = per_rank * world_size - N
    assert len(everything) - len(everything.unique()) == pad  # only the wrap-around repeats
    single = make_loader(ds, N, train=True, info=info, seed=7, drop_last=False)
    single.set_epoch(2)
    perm = ids(next(iter(single))[0], info)
    for rank, shard in enumerate(shards):  # strided slices of the same permutation
        assert torch.equal(
            shard, torch.cat([perm, perm])[: per_rank * world_size][rank::world_size]
        )


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_eval_shards_cover_each_sample_once(data, world_size):
    ds, info = data
    shards = [
        torch.cat(
            [
                ids(x, info)
                for x, _ in make_loader(
                    ds, 7, train=False, info=info, rank=r, world_size=world_size
                )
            ]
        )
        for r in range(world_size)
    ]
    everything = torch.cat(shards)
    assert sorted(everything.tolist()) == list(range(N))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_loader_errors(data):
    ds, info = data
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(ds, 0, train=True, info=info)
    with pytest.raises(ConfigError, match="drop_last"):
        make_loader(ds, 500, train=True, info=info)
    with pytest.raises(ConfigError, match="rank"):
        make_loader(ds, 5, train=True, info=info, rank=2, world_size=2)


def test_digits_end_to_end():
    train, _, info = build_datasets("digits")
    loader = make_loader(
        train, 64, train=True, info=info, transform=build_batch_transform(["crop"], info)
    )
    x, y = next(iter(loader))
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    big = make_loader(train, len(train), train=False, info=info)
    x, _ = next(iter(big))
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_indices_name_the_samples_of_each_batch():
    from spikedistill.data import ImageTensorDataset, make_loader
    from spikedistill.data.info import DatasetInfo

    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).clone()
    data = ImageTensorDataset(images, torch.arange(20) % 3)
    info = DatasetInfo(3, 1, (2, 2), (0.0,), (1.0 / 255,))  # x * 255 recovers the pixel value
    loader = make_loader(data, 6, train=True, info=info, seed=4)
    for x, y, idx in loader.iter_from(0, with_indices=True):
        assert torch.equal(x[:, 0, 0, 0].round().long(), idx)
        assert torch.equal(y, idx % 3)
