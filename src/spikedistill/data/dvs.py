"""Neuromorphic datasets as event frames: CIFAR10-DVS and DVS128 Gesture.

Both read the official files (``aedat``), integrate each sample's events into ``frames`` frames
(``events.integrate_frames``: split by event number or by time), optionally resize them to
``size x size`` (bilinear, antialiased) and cache them on disk, one ``float16 [T, 2, H, W]``
tensor per sample, under a folder named after those parameters
(``frames_T10_number_48x48``): the next run with the same parameters reads the cache. Samples
are ``float32 [T, 2, H, W]`` event counts; the loader batches them time-first
``[T, B, 2, H, W]`` (``DatasetInfo.time_steps`` tells the trainer). Augmentations for them:
``flip`` and ``roll`` (``data.augment``).

- ``cifar10dvs``: 10 classes x 1000 recordings; the ten class zips of the figshare release
  (MD5-checked download) or their extracted ``<class>/*.aedat`` folders. Per class the first 90 %
  of the recordings (by number) train and the last 10 % test.
- ``dvsgesture``: 11 gestures; ``DvsGesture.tar.gz`` (manual download from IBM, MD5-checked and
  extracted safely) or its ``DvsGesture/`` folder. Each row of ``<trial>_labels.csv`` is a
  sample; ``trials_to_train.txt`` / ``trials_to_test.txt`` give the split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..files import replaced_atomically
from .aedat import Events, read_aedat31, read_cifar10dvs_aedat
from .download import download_url, install_archive
from .events import SPLITS, integrate_frames
from .info import DatasetInfo
from .paths import how_to_get_data, read_text
from .registry import DATASETS

SENSOR = (128, 128)
CIFAR10DVS_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_FIGSHARE = "https://ndownloader.figshare.com/files/"
CIFAR10DVS_ZIPS = {  # class -> (figshare file id, MD5)
    "airplane": ("7712788", "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": ("7712791", "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": ("7712794", "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": ("7712812", "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": ("7712815", "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": ("7712818", "f379ebdf6703d16e0a690782e62639c3"),
    "frog": ("7712842", "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": ("7712851", "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": ("7712836", "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": ("7712839", "89f3922fd147d9aeff89e76a2b0b70a7"),
}
DVSGESTURE_ARCHIVE = ("DvsGesture.tar.gz", "8a5c71fb11e24e5ca5b11866ca6c00a1")
DVSGESTURE_URL = "https://research.ibm.com/interactive/dvsgesture/"


class EventFrames(Dataset):
    """Cached frame files and labels: ``load(i) -> (float32 [T, 2, H, W], label)``; each file
    is checked on load (a tensor of ``shape`` when given, finite, non-negative counts)."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | Tensor,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        self.files = list(files)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.shape = shape
        if len(self.files) != len(self.labels):
            raise DataError(f"{len(self.files)} frame files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.load(index, None)

    def load(self, index: int, generator: torch.Generator | None) -> tuple[Tensor, int]:
        path = self.files[index]
        rebuild = f"delete it (or the cache folder {path.parent.parent}) to rebuild it"
        try:
            frames = torch.load(path, weights_only=True)
        except Exception as e:  # truncated or foreign file
            raise DataError(f"{path}: unreadable cached frames ({e}); {rebuild}") from e
        if not isinstance(frames, Tensor) or not frames.is_floating_point():
            raise DataError(f"{path}: cached frames are not a float tensor; {rebuild}")
        if self.shape is not None and tuple(frames.shape) != self.shape:
            raise DataError(
                f"{path}: cached frames of shape {tuple(frames.shape)}, expected {self.shape}; "
                f"{rebuild}"
            )
        if not bool(torch.isfinite(frames).all()) or bool((frames < 0).any()):
            raise DataError(
                f"{path}: cached frames hold NaN, infinite or negative counts; {rebuild}"
            )
        return frames.to(torch.float32), int(self.labels[index])

    def check_cache(self) -> EventFrames:
        """Load the first sample now: a stale or foreign cache fails before training starts."""
        if len(self):
            self.load(0, None)
        return self

    def subset(self, indices: Sequence[int] | Tensor) -> EventFrames:
        idx = torch.as_tensor(indices, dtype=torch.int64).tolist()
        return EventFrames([self.files[i] for i in idx], self.labels[idx], self.shape)

    def with_labels(self, labels: Tensor) -> EventFrames:
        return EventFrames(self.files, labels, self.shape)


def frames_folder(frames: int, split_by: str, size: tuple[int, int]) -> str:
    """The cache folder name: every parameter that changes the frames."""
    return f"frames_T{frames}_{split_by}_{size[0]}x{size[1]}"


def to_frames(events: Events, frames: int, split_by: str, size: tuple[int, int]) -> Tensor:
    """``float16 [frames, 2, *size]``: integrated on the sensor, then resized if needed."""
    x = torch.from_numpy(integrate_frames(events, frames, SENSOR, split_by))
    if tuple(size) != SENSOR:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True)
    return x.to(torch.float16)


def read_events(reader: Callable[[Path], Events], path: Path) -> Events:
    """``reader(path)``, refusing events off the 128x128 sensor (a corrupt file) by name."""
    events = reader(path)
    for key in ("x", "y"):
        if len(events[key]) and not 0 <= int(events[key].min()) <= int(events[key].max()) < 128:
            raise DataError(f"{path}: events with {key} outside 0..127 (a corrupt file?)")
    return events


def _atomic_tensor_save(tensor: Tensor, path: Path) -> None:
    """Write ``path`` via a unique temporary file (ranks under torchrun may write the same
    sample at once); a failed write (disk full) leaves nothing and names the cache."""
    try:
        with replaced_atomically(path, durable=False) as tmp:  # a cache: rebuilt if lost
            torch.save(tensor, tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        raise DataError(f"cannot write the frame cache file {path}: {e}") from e


def fill_cache(jobs: dict[Path, Callable[[], dict[Path, Tensor]]], what: str) -> None:
    """Run the jobs whose outputs are missing; a job returns ``{path: frames}`` (one source file
    may give several samples). Files are written atomically, so a killed run resumes."""
    todo = {key: job for key, job in jobs.items() if not key.exists()}
    bar = tqdm(todo.values(), desc=f"{what}: events to frames", disable=None)
    if todo and bar.disable:  # off a terminal (a batch job's log) no bar shows
        print(f"{what}: {len(todo)} event files to frames (once: cached)", flush=True)
    for job in bar:
        for path, frames in job().items():
            _atomic_tensor_save(frames, path)


def _check_options(frames: int, split_by: str, size: int) -> tuple[int, int]:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"frames must be an integer >= 1, got {frames!r}")
    if split_by not in SPLITS:
        raise ConfigError(f"split_by must be one of {', '.join(SPLITS)}, got {split_by!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 128:
        raise ConfigError(f"size must be an integer in [1, 128], got {size!r}")
    return size, size


def _info(num_classes: int, size: tuple[int, int], frames: int) -> DatasetInfo:
    return DatasetInfo(num_classes, 2, size, (0.0, 0.0), (1.0, 1.0), time_steps=frames)


# -- CIFAR10-DVS ------------------------------------------------------------------------------
def _recording_number(path: Path) -> tuple[int, str]:
    match = re.search(r"(\d+)$", path.stem)
    return (int(match.group(1)) if match else -1, path.name)


def _install_class_zips(zips: dict[str, Path], base: Path) -> None:
    """Extract each class zip (MD5-checked, all or nothing) whose folder is not there yet."""
    for name, z in zips.items():
        if not (base / name).is_dir():
            install_archive(z, base, name, md5=CIFAR10DVS_ZIPS[name][1])


def locate_cifar10dvs(root: Path, download: bool) -> Path:
    """The folder holding ``<class>/*.aedat``, extracting (or downloading) the class zips."""
    candidates = [root / "cifar10dvs", root / "CIFAR10DVS", root]
    for base in candidates:
        if all((base / c).is_dir() for c in CIFAR10DVS_CLASSES):
            return base
    for folder in candidates:
        zips = {c: folder / f"{c}.zip" for c in CIFAR10DVS_CLASSES}
        if all(z.is_file() for z in zips.values()):
            _install_class_zips(zips, candidates[0])
            return candidates[0]
    if download:
        zips = {c: candidates[0] / f"{c}.zip" for c in CIFAR10DVS_CLASSES}
        for name, (file_id, md5) in CIFAR10DVS_ZIPS.items():
            if not zips[name].is_file() and not (candidates[0] / name).is_dir():
                download_url(_FIGSHARE + file_id, zips[name], md5=md5)
        _install_class_zips(zips, candidates[0])
        return candidates[0]
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"CIFAR10-DVS not found: looked in {looked} for the class folders "
        f"({', '.join(CIFAR10DVS_CLASSES)}) of .aedat files or the ten class zips. "
        + how_to_get_data("CIFAR10-DVS")
    )


@DATASETS.register("cifar10dvs")
def build_cifar10dvs(
    root: Path,
    *,
    download: bool = False,
    seed: int = 0,
    frames: int = 10,
    split_by: str = "number",
    size: int = 48,
) -> tuple[EventFrames, EventFrames, DatasetInfo]:
    """CIFAR10-DVS frames ``[frames, 2, size, size]``, a 9:1 split per class."""
    hw = _check_options(frames, split_by, size)
    base = locate_cifar10dvs(root, download)
    cache = base / frames_folder(frames, split_by, hw)
    splits: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    jobs = {}
    for label, name in enumerate(CIFAR10DVS_CLASSES):
        found = (p for p in (base / name).rglob("*.aedat") if p.is_file())  # no fifo
        sources = sorted(found, key=_recording_number)
        if not sources:
            raise DataError(f"{base / name}: no .aedat recordings")
        n_test = max(1, len(sources) // 10)
        for i, src in enumerate(sources):
            out = cache / name / f"{src.stem}.pt"
            split = "train" if i < len(sources) - n_test else "test"
            splits[split][0].append(out)
            splits[split][1].append(label)
            jobs[out] = lambda src=src, out=out: {
                out: to_frames(read_events(read_cifar10dvs_aedat, src), frames, split_by, hw)
            }
    fill_cache(jobs, "CIFAR10-DVS")
    info = _info(len(CIFAR10DVS_CLASSES), hw, frames)
    train, test = (
        EventFrames(*splits[k], (frames, 2, *hw)).check_cache() for k in ("train", "test")
    )
    return train, test, info


# -- DVS128 Gesture ---------------------------------------------------------------------------
def locate_dvsgesture(root: Path) -> Path:
    """The ``DvsGesture`` folder (with the trial lists), extracting the archive if needed."""
    candidates = [root / "DvsGesture", root / "dvsgesture" / "DvsGesture", root]
    for base in candidates:
        if (base / "trials_to_train.txt").is_file():
            return base
    for folder in (root, root / "dvsgesture"):
        archive = folder / DVSGESTURE_ARCHIVE[0]
        if archive.is_file():
            required = ("trials_to_train.txt", "trials_to_test.txt")
            md5 = DVSGESTURE_ARCHIVE[1]
            return install_archive(archive, folder, "DvsGesture", md5=md5, required=required)
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"DVS128 Gesture not found: looked in {looked} for trials_to_train.txt and for "
        f"{DVSGESTURE_ARCHIVE[0]}. It cannot be downloaded automatically: get "
        f"{DVSGESTURE_ARCHIVE[0]} from {DVSGESTURE_URL} (IBM's license) and place it (or the "
        f"DvsGesture/ folder it holds) in {root}. "
        + how_to_get_data("DVS128 Gesture", downloadable=False)
    )


def read_gesture_labels(path: Path) -> list[tuple[int, int, int]]:
    """``(label 0..10, start_us, end_us)`` per row of a ``<trial>_labels.csv``."""
    lines = read_text(path, "gesture labels").split("\n")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            label, start, end = (int(v) for v in line.replace("\t", ",").split(",")[:3])
        except ValueError:
            message = f"{path}:{number}: expected 'class,startTime_usec,endTime_usec'"
            raise DataError(message) from None
        if not 1 <= label <= 11 or end < start:
            raise DataError(f"{path}:{number}: class {label} or times {start}..{end} invalid")
        rows.append((label - 1, start, end))
    return rows


def _gesture_samples(events: Events, rows, frames, split_by, hw, outs) -> dict[Path, Tensor]:
    t = events["t"]
    samples = {}
    for (_, start, end), out in zip(rows, outs, strict=True):
        keep = (t >= start) & (t < end)
        clip = {k: v[keep] for k, v in events.items()}
        samples[out] = to_frames(clip, frames, split_by, hw)
    return samples


@DATASETS.register("dvsgesture")
def build_dvsgesture(
    root: Path,
    *,
    download: bool = False,
    seed: int = 0,
    frames: int = 16,
    split_by: str = "number",
    size: int = 128,
) -> tuple[EventFrames, EventFrames, DatasetInfo]:
    """DVS128 Gesture frames ``[frames, 2, size, size]``, the official trial split."""
    hw = _check_options(frames, split_by, size)
    base = locate_dvsgesture(root)
    cache = base / frames_folder(frames, split_by, hw)
    splits, jobs = {}, {}
    for split in ("train", "test"):
        files, labels = [], []
        trial_list = base / f"trials_to_{split}.txt"
        for trial in read_text(trial_list, "trial list").split():
            if not (base / trial).is_file():  # checked before any sample is cached
                raise DataError(f"{trial_list}: the recording {base / trial} does not exist")
            stem = Path(trial).stem
            rows = read_gesture_labels(base / f"{stem}_labels.csv")
            outs = [cache / split / f"{stem}_{i}.pt" for i in range(len(rows))]
            files += outs
            labels += [label for label, _, _ in rows]
            if outs and not all(o.exists() for o in outs):
                jobs[outs[-1]] = lambda src=base / trial, rows=rows, outs=outs: _gesture_samples(
                    read_events(read_aedat31, src), rows, frames, split_by, hw, outs
                )
        if not files:
            raise DataError(f"{trial_list}: no labelled sample in the listed trials ({split} set)")
        splits[split] = EventFrames(files, labels, (frames, 2, *hw))
    fill_cache(jobs, "DVS128 Gesture")
    train, test = splits["train"].check_cache(), splits["test"].check_cache()
    return train, test, _info(11, hw, frames)
