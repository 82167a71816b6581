"""Bad data files through the real CLI: one line on stderr, exit status 2, nothing changed on
disk (neither the data root nor the run folder).

Each row is (id, a function preparing the bad data root, CLI overrides, a fragment the message
must contain). A preparing function gets the data root (to fill) and ``monkeypatch`` (to make a
test-made archive the "official" one by patching its MD5).
"""

from __future__ import annotations

import io
import struct
import tarfile

import numpy as np
import pytest
import torch

from bad_input import expect_one_line_error
from conftest import cifar_batch, idx_bytes, py2_pickle, write_cifar, write_mnist
from spikedistill.data import build_datasets, cifar
from spikedistill.data.download import install_archive
from spikedistill.data.dvs import EventFrames
from spikedistill.errors import DataError
from test_data_cifar import trust_archive
from test_data_dvs import _fake_gesture

BASE = """
name: tiny
data: {name: digits, batch_size: 4, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
train: {epochs: 1, seed: 0}
"""
CIFAR10 = ["data.name=cifar10"]
GESTURE = ["data.name=dvsgesture", "data.options={frames: 2, size: 16}"]
MNIST_LABELS = idx_bytes(np.arange(4, dtype=np.uint8))  # a file the CIFAR archive must not touch


# -- CIFAR ------------------------------------------------------------------------------------
def _cifar_archive(root, monkeypatch, extra=(), drop=(), trusted=True):
    """``cifar-10-python.tar.gz`` in ``root`` from a valid tiny CIFAR-10 (minus the members in
    ``drop``, plus the ``(TarInfo, bytes or None)`` in ``extra``), next to an MNIST label file."""
    staging = root.parent / "staging"
    write_cifar(staging, "cifar10", archive=False)
    root.mkdir()
    (root / "train-labels-idx1-ubyte").write_bytes(MNIST_LABELS)
    archive = root / cifar.CIFAR10.archive
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((staging / cifar.CIFAR10.folder).iterdir()):
            if path.name not in drop:
                tar.add(path, arcname=f"{cifar.CIFAR10.folder}/{path.name}")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    if trusted:
        trust_archive(monkeypatch, archive)


def _member(name, data=None, link=None):
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = len(data)
    return info, data


def archive_escape(root, monkeypatch):
    evil = _member("train-labels-idx1-ubyte", b"overwritten")
    _cifar_archive(root, monkeypatch, extra=[evil])


def archive_symlink_out(root, monkeypatch):
    link = _member(f"{cifar.CIFAR10.folder}/labels", link="../train-labels-idx1-ubyte")
    _cifar_archive(root, monkeypatch, extra=[link])


def archive_md5(root, monkeypatch):
    _cifar_archive(root, monkeypatch, trusted=False)


def archive_incomplete(root, monkeypatch):
    _cifar_archive(root, monkeypatch, drop=("data_batch_5",))


def folder_partial(root, monkeypatch):
    """A folder left by an interrupted extraction of an older version, next to its archive."""
    _cifar_archive(root, monkeypatch)
    write_cifar(root, "cifar10", archive=False)
    (root / cifar.CIFAR10.folder / "data_batch_4").unlink()


def batch_truncated(root, monkeypatch):
    write_cifar(root, "cifar10", archive=False)
    batch = root / cifar.CIFAR10.folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:5000])


def _cifar_with_batch(root, name, images, labels):
    write_cifar(root, "cifar10", archive=False)
    data = {b"data": images.reshape(len(images), 3072), b"labels": labels}
    (root / cifar.CIFAR10.folder / name).write_bytes(py2_pickle(data))


def float_labels(root, monkeypatch):
    labels = [0.0, 1.7, 2.2, 3.0, 4.9, 5.0]  # int() would make them 0, 1, 2, 3, 4, 5
    _cifar_with_batch(root, "data_batch_1", np.zeros((6, 3, 32, 32), np.uint8), labels)


def label_out_of_range(root, monkeypatch):
    write_cifar(root, "cifar10", archive=False)
    images = np.zeros((3, 3, 32, 32), np.uint8)
    batch = cifar_batch(images, np.array([1, 10, 2]), "labels")
    (root / cifar.CIFAR10.folder / "test_batch").write_bytes(batch)


def empty_test_set(root, monkeypatch):
    _cifar_with_batch(root, "test_batch", np.zeros((0, 3, 32, 32), np.uint8), [])


# -- MNIST / IDX ------------------------------------------------------------------------------
def _mnist(root, stem, data):
    write_mnist(root, n_train=8, n_test=4, gz=False)
    (root / stem).write_bytes(data)


def mnist_no_train_images(root, monkeypatch):
    write_mnist(root, n_train=8, n_test=4, gz=False)
    (root / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(0, np.uint8)))


def idx_ndim_255(root, monkeypatch):
    _mnist(root, "t10k-labels-idx1-ubyte", bytes([0, 0, 8, 255]) + bytes(4 * 255))


def idx_shape_too_big(root, monkeypatch):
    sizes = struct.pack(">4I", 0, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    _mnist(root, "t10k-images-idx3-ubyte", bytes([0, 0, 8, 4]) + sizes)


def mnist_missing(root, monkeypatch):
    root.mkdir()


# -- DVS128 Gesture ---------------------------------------------------------------------------
def _packet(kind, size, capacity, number, payload):
    return struct.pack("<hhiiiiii", kind, 1, size, 4, 0, capacity, number, number) + payload


def _gesture_with_aedat(root, packet):
    """The first trial read (so no sample is cached before the error) holds ``packet``."""
    root.mkdir()
    base = _fake_gesture(root)
    header = b"#!AER-DAT3.1\r\n#!END-HEADER\r\n"
    (base / "user01_lab.aedat").write_bytes(header + packet)


def _events(x, t):
    data = (np.asarray(x, np.int64) << 17) | (5 << 2) | 1
    return np.stack([data, np.asarray(t, np.int64)], 1).astype("<u4").tobytes()


def aedat_negative_count(root, monkeypatch):
    _gesture_with_aedat(root, _packet(1, 8, 3, -1, _events([1, 2, 3], [10, 20, 30])))


def aedat_event_size_10(root, monkeypatch):
    payload = b"".join(
        w + b"\0\0" for w in np.split(np.frombuffer(_events([1, 2], [1, 2]), "S8"), 2)
    )
    _gesture_with_aedat(root, _packet(1, 10, 2, 2, payload))


def aedat_off_sensor(root, monkeypatch):
    _gesture_with_aedat(root, _packet(1, 8, 2, 2, _events([3, 200], [10, 20])))


def labels_not_utf8(root, monkeypatch):
    root.mkdir()
    base = _fake_gesture(root)
    (base / "user02_led_labels.csv").write_bytes(b"class,start,end\n1,0,\xff\xfe\n")


def trials_not_utf8(root, monkeypatch):
    root.mkdir()
    (_fake_gesture(root) / "trials_to_test.txt").write_bytes(b"user24_lab.aedat\xe9\n")


def gesture_empty_test(root, monkeypatch):
    root.mkdir()
    (_fake_gesture(root) / "trials_to_test.txt").write_text("\n")


def gesture_missing_recording(root, monkeypatch):
    root.mkdir()
    (_fake_gesture(root) / "user24_lab.aedat").unlink()


def _cached_gesture(root, frames):
    """A complete frame cache (frames=2, 16x16) whose first training sample is ``frames``."""
    root.mkdir()
    _fake_gesture(root)
    build_datasets("dvsgesture", root, frames=2, size=16)
    torch.save(frames, root / "DvsGesture" / "frames_T2_number_16x16" / "train" / "user01_lab_0.pt")


def cache_wrong_shape(root, monkeypatch):
    _cached_gesture(root, torch.zeros(3, 2, 16, 16, dtype=torch.float16))


def cache_nan(root, monkeypatch):
    _cached_gesture(root, torch.full((2, 2, 16, 16), float("nan"), dtype=torch.float16))


ROWS = [
    ("cifar-archive-member-outside-folder", archive_escape, CIFAR10, "lies outside cifar-10"),
    ("cifar-archive-symlink-outside-folder", archive_symlink_out, CIFAR10, "lies outside"),
    ("cifar-local-archive-md5", archive_md5, CIFAR10, "md5 checksum mismatch"),
    ("cifar-archive-incomplete", archive_incomplete, CIFAR10, "incomplete archive"),
    (
        "cifar-partial-extraction",
        folder_partial,
        CIFAR10,
        "data_batch_4 (an interrupted extraction?)",
    ),
    ("cifar-truncated-batch", batch_truncated, CIFAR10, "cifar-10-batches-py to extract it again"),
    ("cifar-float-labels", float_labels, CIFAR10, "must hold integers, got float64"),
    ("cifar-label-out-of-range", label_out_of_range, CIFAR10, "label 10 of image 1 outside"),
    ("cifar-empty-test-set", empty_test_set, CIFAR10, "the test set is empty"),
    ("mnist-no-train-images", mnist_no_train_images, ["data.name=mnist"], "holds 0 images"),
    ("idx-ndim-255", idx_ndim_255, ["data.name=mnist"], "declares 255 dimensions"),
    ("idx-shape-too-big", idx_shape_too_big, ["data.name=mnist"], "not a valid array shape"),
    ("missing-data-hint", mnist_missing, ["data.name=mnist"], "data.download=true"),
    ("aedat-negative-count", aedat_negative_count, GESTURE, "event count -1 outside"),
    ("aedat-event-size-10", aedat_event_size_10, GESTURE, "of 10 bytes, expected 8"),
    ("aedat-off-sensor", aedat_off_sensor, GESTURE, "x outside 0..127"),
    ("gesture-labels-not-utf8", labels_not_utf8, GESTURE, "labels.csv: gesture labels is not"),
    ("gesture-trials-not-utf8", trials_not_utf8, GESTURE, "trial list is not UTF-8"),
    ("gesture-empty-test-set", gesture_empty_test, GESTURE, "no labelled sample"),
    ("gesture-missing-recording", gesture_missing_recording, GESTURE, "does not exist"),
    ("dvs-cache-wrong-shape", cache_wrong_shape, GESTURE, "expected (2, 2, 16, 16); delete"),
    ("dvs-cache-nan", cache_nan, GESTURE, "NaN"),
]


@pytest.mark.parametrize(
    ("prepare", "args", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_data_gives_one_line_exit_2_and_changes_nothing(
    prepare, args, message, tmp_path, capsys, monkeypatch
):
    config, root, run = tmp_path / "tiny.yaml", tmp_path / "data", tmp_path / "run"
    config.write_text(BASE)
    prepare(root, monkeypatch)
    argv = ["train", str(config), *args, "--data-dir", str(root), "--out", str(run)]
    err = expect_one_line_error(argv, message, capsys, watch=[root, run])
    assert str(root) in err or "dataset" in err  # names the file (or the dataset and root)
    if prepare in (archive_escape, archive_symlink_out):
        assert (root / "train-labels-idx1-ubyte").read_bytes() == MNIST_LABELS


# -- not through the CLI ----------------------------------------------------------------------
def test_interrupted_extraction_leaves_nothing_behind(tmp_path, monkeypatch):
    """Disk full in the middle of extracting: no folder a later run would trust, no temp."""
    _cifar_archive(tmp_path / "data", monkeypatch)
    root = tmp_path / "data"
    real = tarfile.TarFile.extractall

    def disk_full(self, path, members=None, **kwargs):
        real(self, path, members=members[:3], **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", disk_full)
    with pytest.raises(DataError, match="No space left"):
        build_datasets("cifar10", root)
    assert sorted(p.name for p in root.iterdir()) == [
        cifar.CIFAR10.archive,
        "train-labels-idx1-ubyte",
    ]
    monkeypatch.undo()
    trust_archive(monkeypatch, root / cifar.CIFAR10.archive)
    assert len(build_datasets("cifar10", root)[0]) == 30  # the next run extracts it whole


def test_install_archive_refuses_an_existing_incomplete_folder(tmp_path, monkeypatch):
    _cifar_archive(tmp_path / "data", monkeypatch)
    root = tmp_path / "data"
    (root / cifar.CIFAR10.folder).mkdir()
    with pytest.raises(DataError, match="already exists but is incomplete"):
        install_archive(root / cifar.CIFAR10.archive, root, cifar.CIFAR10.folder)


def test_event_frames_check_what_they_load(tmp_path):
    path = tmp_path / "cache" / "train" / "a.pt"
    path.parent.mkdir(parents=True)
    frames = EventFrames([path], [0], (2, 2, 4, 4))
    for bad, message in [
        ({"frames": 1}, "not a float tensor"),
        (torch.zeros(2, 2, 4, 4, dtype=torch.int64), "not a float tensor"),
        (torch.zeros(2, 2, 4, 5), r"shape \(2, 2, 4, 5\), expected \(2, 2, 4, 4\)"),
        (-torch.ones(2, 2, 4, 4), "negative"),
    ]:
        torch.save(bad, path)
        with pytest.raises(DataError, match=message):
            frames.load(0, None)
    torch.save(torch.ones(2, 2, 4, 4, dtype=torch.float16), path)
    assert frames.subset([0]).with_labels(torch.tensor([1]))[0][1] == 1


def test_worker_errors_stay_one_line(tmp_path):
    """A sample's error raised in a DataLoader worker keeps its own message, no traceback."""
    from spikedistill.data import DatasetInfo, make_loader

    files = [tmp_path / "cache" / "train" / f"{i}.pt" for i in range(2)]
    files[0].parent.mkdir(parents=True)
    torch.save(torch.ones(2, 2, 4, 4), files[0])
    torch.save(torch.full((2, 2, 4, 4), float("nan")), files[1])
    info = DatasetInfo(2, 2, (4, 4), (0.0, 0.0), (1.0, 1.0), time_steps=2)
    frames = EventFrames(files, [0, 1], (2, 2, 4, 4))
    loader = make_loader(frames, 2, train=False, info=info, num_workers=1)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert str(caught.value).startswith(f"{files[1]}: cached frames hold NaN"), caught.value
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
