"""Deterministic, resumable, shardable batch loaders.

``make_loader`` returns a :class:`TensorLoader` for in-memory :class:`ImageTensorDataset`\\ s
(pure tensor indexing, no ``DataLoader`` and no per-sample Python) and a :class:`FolderLoader`
(a ``torch.utils.data.DataLoader`` over the same index order) for anything else. Both:

* shuffle (train only) with a generator seeded from ``(seed, epoch)``: the order of an epoch
  never depends on global RNG state;
* draw augmentation randomness for batch ``b`` from a generator seeded from
  ``(seed, epoch, rank, b)``, so ``iter_from(b)`` reproduces the tail of an epoch exactly;
* give rank ``rank`` of ``world_size`` a disjoint shard of the same permutation (train: equal
  shards, padded by wrap-around; eval: every sample exactly once, no padding);
* yield ``(x float32 [B, C, H, W] normalised with info.mean/std, y int64 [B])``; event frames
  come time-first, ``x [T, B, C, H, W]``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConfigError, DataError, SpikeDistillError, described
from .info import DatasetInfo
from .sampling import check_rank, epoch_indices
from .seeding import derive_seed, make_generator
from .tensor_dataset import ImageTensorDataset
from .transforms import BatchTransform

Batch = tuple[Tensor, Tensor]
IndexedBatch = tuple[Tensor, Tensor, Tensor]
_MASK63 = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # odd constant spreading per-sample seeds


class Loader:
    """What the trainer iterates: ``len()`` batches per epoch, ``set_epoch``, ``iter_from``."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        train: bool,
        transform: BatchTransform | None,
        info: DatasetInfo,
        seed: int,
        drop_last: bool,
        rank: int,
        world_size: int,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.train = train
        self.transform = transform
        self.info = info
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._mean = torch.tensor(info.mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).reshape(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation) the next iteration produces."""
        self.epoch = int(epoch)

    def indices(self) -> Tensor:
        """The dataset indices this rank visits in the current epoch, in order."""
        return epoch_indices(
            len(self.dataset),  # type: ignore[arg-type]
            train=self.train,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
        )

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch (before dropping a last partial batch)."""
        n, ws = len(self.dataset), self.world_size  # type: ignore[arg-type]
        if self.train:
            return -(-n // ws)
        return n // ws + (1 if self.rank < n % ws else 0)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int, with_indices: bool = False) -> Iterator:
        """Iterate the current epoch from batch ``start_batch`` on: exactly the batches a full
        iteration yields from that point (same samples, same augmentation). With
        ``with_indices`` each batch also carries its dataset indices ``[B]`` (for caches)."""
        if not 0 <= start_batch <= len(self):
            raise ConfigError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        batches = self._batches(start_batch, self.epoch, self.indices())
        return batches if with_indices else ((x, y) for x, y, _ in batches)

    def _batches(self, start: int, epoch: int, indices: Tensor) -> Iterator[IndexedBatch]:
        """``(x, y, dataset indices)`` for batches ``start ..`` of ``epoch``."""
        raise NotImplementedError

    def _finish(self, x: Tensor, y: Tensor, epoch: int, batch: int) -> Batch:
        if self.transform is not None:
            generator = make_generator(self.seed, "augment", epoch, self.rank, batch)
            x = self.transform(x, generator)
        x = x.sub_(self._mean).div_(self._std)
        if x.dim() == 5:  # event frames [B, T, C, H, W] -> time-first, as the SNNs take them
            x = x.transpose(0, 1).contiguous()
        return x, y

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batches={len(self)}, batch_size={self.batch_size}, "
            f"train={self.train}, rank={self.rank}/{self.world_size}, epoch={self.epoch})"
        )


class TensorLoader(Loader):
    """Batches straight from an :class:`ImageTensorDataset`'s uint8 tensor."""

    dataset: ImageTensorDataset

    def _batches(self, start: int, epoch: int, indices: Tensor) -> Iterator[IndexedBatch]:
        images, labels, bs = self.dataset.images, self.dataset.labels, self.batch_size
        for b in range(start, len(self)):
            sel = indices[b * bs : (b + 1) * bs]
            x = images[sel].to(torch.float32).div_(255.0)
            yield (*self._finish(x, labels[sel], epoch, b), sel)


class _SeededView(Dataset):
    """Gives ``dataset.load(index, generator)`` (if it has one) a per-sample seeded generator;
    an error of your own dataset's code becomes a ``DataError`` naming the sample."""

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset, self.split = dataset, split
        inner = type(getattr(dataset, "dataset", dataset))  # a Subset's or LabelledView's
        self.own, self.name = not inner.__module__.startswith("spikedistill."), inner.__name__

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        index, seed = key
        load = getattr(self.dataset, "load", None)
        try:
            if load is None:
                return self.dataset[index]
            return load(index, torch.Generator().manual_seed(seed))
        except Exception as err:
            if not self.own or isinstance(err, SpikeDistillError):
                raise  # the package's own dataset: a bug of ours, or a DataError
            raise DataError(
                f"your dataset's {self.name} failed to give {self.split} "
                f"sample {index}: {described(err)}"
            ) from err


class _FixedSampler(Sampler):
    """Yields ``(index, sample_seed)`` for a fixed index list, from position ``start`` on."""

    def __init__(self, indices: Tensor, start: int, base_seed: int) -> None:
        self.indices = indices.tolist()
        self.start = start
        self.base_seed = base_seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for pos in range(self.start, len(self.indices)):
            yield self.indices[pos], (self.base_seed + pos * _GOLDEN) & _MASK63

    def __len__(self) -> int:
        return len(self.indices) - self.start


def outlive_group_stop(_worker_id: int) -> None:
    """A worker absorbs the first SIGTERM and the first Ctrl-C: a scheduler signals the whole
    process group, a terminal its foreground group, and the run may still wait on a batch
    before it stops, saved (a later one ends the worker)."""

    def absorb(signum: int, _frame: object) -> None:
        later = signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler
        signal.signal(signum, later)

    signal.signal(signal.SIGTERM, absorb)
    signal.signal(signal.SIGINT, absorb)


class FolderLoader(Loader):
    """A ``DataLoader`` (with ``num_workers`` processes) over the same deterministic order; a
    dataset with a ``load(index, generator)`` method gets a generator seeded per sample and
    epoch, so its own augmentation is reproducible too, whatever the number of workers."""

    def __init__(self, *args, num_workers: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_workers = num_workers

    def _batches(self, start: int, epoch: int, indices: Tensor) -> Iterator[IndexedBatch]:
        base = derive_seed(self.seed, "sample", epoch, self.rank)
        sampler = _FixedSampler(indices, start * self.batch_size, base)
        loader = DataLoader(
            _SeededView(self.dataset, "training" if self.train else "test"),
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            worker_init_fn=outlive_group_stop if self.num_workers else None,
            generator=make_generator(self.seed, "workers", epoch, self.rank),
        )
        bs, batches = self.batch_size, iter(loader)
        try:
            for b, (x, y) in enumerate(batches, start=start):
                y, at = torch.as_tensor(y, dtype=torch.int64), indices[b * bs : b * bs + len(y)]
                check_labels(y, at, self.info.num_classes)
                yield *self._finish(x.to(torch.float32), y, epoch, b), at
        except SpikeDistillError as err:
            flat = _without_worker_traceback(err)
            if flat is err:
                raise
            raise flat from None
        finally:
            _stop_workers(batches)


def check_labels(labels: Tensor, indices: Tensor, num_classes: int) -> None:
    """``DataError`` naming the first sample whose label is not a class index of the data."""
    outside = (labels < 0) | (labels >= num_classes)
    if bool(outside.any()):
        first = int(outside.nonzero()[0])
        raise DataError(
            f"sample {int(indices[first])} has label {int(labels[first])}, outside the "
            f"{num_classes} classes [0, {num_classes}) its dataset's info gives"
        )


def _stop_workers(batches: Iterator) -> None:
    """End a ``DataLoader`` iterator's workers now, as its ``__del__`` would: after an error its
    traceback may keep it alive until exit, where multiprocessing's one SIGTERM to each worker
    is the one ``outlive_group_stop`` absorbs, and the exit would wait for them forever."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _without_worker_traceback(err: SpikeDistillError) -> SpikeDistillError:
    """The error a ``DataLoader`` worker raised, with its own message only: torch re-raises
    it as "Caught DataError in DataLoader worker process 0. Original Traceback ...", which
    would end up in the one-line CLI error."""
    text = str(err).strip()
    if not text.startswith("Caught ") or "Traceback" not in text:
        return err
    last = text.splitlines()[-1]
    return type(err)(last.removeprefix(f"{type(err).__module__}.{type(err).__qualname__}: "))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    transform: BatchTransform | None = None,
    info: DatasetInfo,
    seed: int = 0,
    drop_last: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Loader:
    """A loader yielding ``(x float32 normalised [B, C, H, W], y int64 [B])`` batches.

    ``train`` turns on shuffling and, by default, ``drop_last``; ``transform(x, generator)``
    augments float batches in [0, 1] before normalisation; ``rank``/``world_size`` select a
    DDP shard; ``num_workers`` only matters for datasets that are not in memory.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    check_rank(rank, world_size)
    common = dict(
        train=train,
        transform=transform,
        info=info,
        seed=seed,
        drop_last=train if drop_last is None else drop_last,
        rank=rank,
        world_size=world_size,
    )
    loader: Loader
    if isinstance(dataset, ImageTensorDataset):
        if dataset.images.shape[-3] != info.in_channels:
            raise DataError(
                f"dataset has {dataset.images.shape[-3]} channels but info says {info.in_channels}"
            )
        check_labels(dataset.labels, torch.arange(len(dataset)), info.num_classes)
        loader = TensorLoader(dataset, batch_size, **common)
    else:
        loader = FolderLoader(dataset, batch_size, num_workers=num_workers, **common)
    if len(loader) == 0 and loader.num_samples > 0:
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {loader.num_samples} samples per rank and the "
            "last partial batch is dropped: no batch at all. Lower data.batch_size (calling "
            "make_loader yourself, you may also pass drop_last=False)."
        )
    return loader
