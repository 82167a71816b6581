"""Event readers, frame integration and the DVS datasets, on event files written here in the
official formats (AEDAT 3.1 for DVS128 Gesture, jAER AEDAT 2 for CIFAR10-DVS)."""

import importlib
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedistill.data import build_datasets, make_loader
from spikedistill.data.aedat import make_events, read_aedat31, read_cifar10dvs_aedat
from spikedistill.data.dvs import CIFAR10DVS_CLASSES
from spikedistill.data.events import integrate_frames, segment_bounds
from spikedistill.data.transforms import random_hflip, random_roll
from spikedistill.errors import ConfigError, DataError


def random_events(n, seed=0, t0=1000, span=10**6, size=128):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + span, n))
    return make_events(t, rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(0, 2, n))


def write_aedat31(path, events, per_packet=50):
    """AEDAT 3.1: header, then polarity packets (and one special-event packet to skip); a
    packet holds events of one timestamp-overflow epoch only."""
    out = [b"#!AER-DAT3.1\r\n", b"#Format: RAW\r\n", b"#!END-HEADER\r\n"]
    out.append(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<II", 7, 5))
    t, x, y, p = (events[k].astype(np.int64) for k in "txyp")
    overflow = t >> 31
    starts = sorted({*range(0, len(t), per_packet), *np.flatnonzero(np.diff(overflow)) + 1})
    for start, end in zip(starts, [*starts[1:], len(t)], strict=True):
        sl = slice(start, end)
        over = int(overflow[start])
        n = len(t[sl])
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, over, n, n, n))
        data = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1
        words = np.stack([data, t[sl] & 0x7FFFFFFF], 1).astype("<u4")
        out.append(words.tobytes())
    path.write_bytes(b"".join(out))


def write_cifar10dvs_aedat(path, events):
    """jAER AEDAT 2: '#' header lines, then big-endian (address, timestamp) pairs."""
    x_raw = 127 - events["y"].astype(np.int64)  # the reader's orientation, inverted
    y_raw = 127 - events["x"].astype(np.int64)
    p_raw = 1 - events["p"].astype(np.int64)
    address = (y_raw << 8) | (x_raw << 1) | p_raw
    pairs = np.stack([address, events["t"]], 1).astype(">u4")
    path.write_bytes(b"#!AER-DAT2.0\r\n# cifar10-dvs test file\r\n" + pairs.tobytes())


def assert_same_events(a, b):
    for k in "txyp":
        np.testing.assert_array_equal(np.asarray(a[k], np.int64), np.asarray(b[k], np.int64), k)


def test_aedat31_round_trip_with_timestamp_overflow(tmp_path):
    ev = random_events(230, t0=(1 << 31) - 500_000)  # crosses the 31-bit wrap
    write_aedat31(tmp_path / "a.aedat", ev)
    assert_same_events(read_aedat31(tmp_path / "a.aedat"), ev)


def test_cifar10dvs_aedat_round_trip(tmp_path):
    ev = random_events(300, seed=1)
    write_cifar10dvs_aedat(tmp_path / "c.aedat", ev)
    assert_same_events(read_cifar10dvs_aedat(tmp_path / "c.aedat"), ev)


@pytest.fixture
def sj_datasets(monkeypatch):
    """SpikingJelly's event helpers (pure numpy). Its ``datasets`` package imports every
    dataset (h5py, torchvision, ...), so only the two modules are loaded, with stubs for the
    torchvision names they import at the top when torchvision is not installed."""
    spikingjelly = pytest.importorskip("spikingjelly")
    package = types.ModuleType("spikingjelly.datasets")
    package.__path__ = [str(Path(spikingjelly.__file__).parent / "datasets")]
    stubs = {"spikingjelly.datasets": package}
    try:
        import torchvision  # noqa: F401
    except ImportError:
        names = ["torchvision", "torchvision.transforms", "torchvision.datasets"]
        stubs |= {n: types.ModuleType(n) for n in [*names, "torchvision.datasets.utils"]}
        stubs["torchvision.datasets"].DatasetFolder = object
        for attr in ("check_integrity", "download_url", "extract_archive"):
            setattr(stubs["torchvision.datasets.utils"], attr, None)
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    loaded = ["spikingjelly.datasets.utils", "spikingjelly.datasets.cifar10_dvs"]
    try:
        yield tuple(importlib.import_module(name) for name in loaded)
    finally:
        for name in loaded:
            sys.modules.pop(name, None)


def test_readers_agree_with_spikingjelly(tmp_path, sj_datasets):
    sj_utils, cifar10_dvs = sj_datasets
    ev = random_events(120, seed=2)
    write_aedat31(tmp_path / "g.aedat", ev)
    assert_same_events(
        sj_utils.load_aedat_v3(str(tmp_path / "g.aedat")), read_aedat31(tmp_path / "g.aedat")
    )
    write_cifar10dvs_aedat(tmp_path / "c.aedat", ev)
    load = (
        getattr(cifar10_dvs, "_load_origin_data", None) or cifar10_dvs.CIFAR10DVS.load_origin_data
    )
    assert_same_events(load(str(tmp_path / "c.aedat")), read_cifar10dvs_aedat(tmp_path / "c.aedat"))


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_frames_agree_with_spikingjelly(split_by, sj_datasets):
    sj_utils, _ = sj_datasets
    ev = random_events(1001, seed=3, size=16)
    ours = integrate_frames(ev, 7, (16, 16), split_by)
    theirs = sj_utils.integrate_events_by_fixed_frames_number(ev, split_by, 7, 16, 16)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.sum() == 1001


def test_frames_by_hand():
    # 5 events on a 2x3 sensor; number split into 2 frames: [0, 2) and [2, 5)
    ev = make_events([0, 1, 2, 9, 10], [0, 2, 2, 1, 2], [0, 1, 1, 0, 1], [1, 0, 0, 1, 0])
    frames = integrate_frames(ev, 2, (2, 3), "number")
    expected = np.zeros((2, 2, 2, 3), np.float32)
    expected[0, 1, 0, 0] = 1  # t=0: p=1 at (y0, x0)
    expected[0, 0, 1, 2] = 1  # t=1: p=0 at (y1, x2)
    expected[1, 0, 1, 2] = 2  # t=2, t=10
    expected[1, 1, 0, 1] = 1  # t=9
    np.testing.assert_array_equal(frames, expected)
    # time split: dt = 10 // 2 = 5 -> [0, 5) holds t = 0, 1, 2, the rest goes last
    left, right = segment_bounds(ev["t"], 2, "time")
    assert left.tolist() == [0, 3] and right.tolist() == [3, 5]
    with pytest.raises(ConfigError, match="outside"):
        integrate_frames(ev, 2, (1, 3), "number")


def test_dvs_transforms_on_frames():
    x = torch.arange(2 * 3 * 2 * 4 * 4, dtype=torch.float32).view(2, 3, 2, 4, 4)
    g = torch.Generator().manual_seed(0)
    flipped = random_hflip(x, g, p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    rolled = random_roll(x, 1, torch.Generator().manual_seed(1))
    for i in range(2):  # each sample is a roll of itself, the same for all its frames
        matches = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if torch.equal(rolled[i], x[i].roll((dy, dx), dims=(-2, -1)))
        ]
        assert len(matches) == 1


def _fake_cifar10dvs(root, per_class=10):
    for label, name in enumerate(CIFAR10DVS_CLASSES):
        (root / "cifar10dvs" / name).mkdir(parents=True)
        for i in range(per_class):
            ev = random_events(200 + 10 * i, seed=100 * label + i)
            write_cifar10dvs_aedat(root / "cifar10dvs" / name / f"cifar10_{name}_{i}.aedat", ev)


def test_cifar10dvs_split_cache_and_frames(tmp_path, monkeypatch, capsys):
    _fake_cifar10dvs(tmp_path)
    train, test, info = build_datasets("cifar10dvs", tmp_path, frames=4, size=16)
    # off a terminal (pytest captures) the conversion says what it does, for batch logs
    assert "100 event files to frames (once: cached)" in capsys.readouterr().out
    assert (len(train), len(test)) == (90, 10)  # 9:1 per class
    assert sorted(test.labels.tolist()) == list(range(10))
    assert all(f.stem.endswith("_9") for f in test.files)  # the last recording of each class
    assert info.time_steps == 4 and info.in_channels == 2 and info.image_size == (16, 16)
    x, _ = test[0]
    assert x.shape == (4, 2, 16, 16) and x.dtype == torch.float32
    # resizing keeps the event count (antialiased bilinear preserves the mean)
    events = read_cifar10dvs_aedat(
        tmp_path / "cifar10dvs" / "airplane" / "cifar10_airplane_9.aedat"
    )
    assert x.sum().item() * (128 / 16) ** 2 == pytest.approx(len(events["t"]), rel=0.02)
    cache = tmp_path / "cifar10dvs" / "frames_T4_number_16x16"
    assert len(list(cache.rglob("*.pt"))) == 100
    # a second build reads the cache: no event file is opened
    monkeypatch.setattr("spikedistill.data.dvs.read_cifar10dvs_aedat", lambda p: 1 / 0)
    train2, _, _ = build_datasets("cifar10dvs", tmp_path, frames=4, size=16)
    assert torch.equal(train2[5][0], train[5][0])
    assert "event files" not in capsys.readouterr().out


def test_cifar10dvs_errors(tmp_path):
    with pytest.raises(DataError, match="CIFAR10-DVS not found"):
        build_datasets("cifar10dvs", tmp_path)
    folder = tmp_path / "cifar10dvs"
    folder.mkdir()
    for name in CIFAR10DVS_CLASSES:  # zips that are not the official ones
        (folder / f"{name}.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(DataError, match="md5"):
        build_datasets("cifar10dvs", tmp_path)
    with pytest.raises(ConfigError, match="split_by"):
        build_datasets("cifar10dvs", tmp_path, split_by="events")


def _fake_gesture(root):
    base = root / "DvsGesture"
    base.mkdir()
    trials = {"user01_lab": "train", "user02_led": "train", "user24_lab": "test"}
    for k, (trial, _) in enumerate(trials.items()):
        ev = random_events(3000, seed=k, t0=0, span=3_000_000)
        write_aedat31(base / f"{trial}.aedat", ev, per_packet=700)
        rows = ["class,startTime_usec,endTime_usec"]
        rows += [f"{c},{c * 500_000},{c * 500_000 + 400_000}" for c in (1, 2, 3, 5)]
        (base / f"{trial}_labels.csv").write_text("\n".join(rows) + "\n")
    for split in ("train", "test"):
        names = [f"{t}.aedat" for t, s in trials.items() if s == split]
        (base / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n")
    return base


def test_dvsgesture_samples_follow_the_label_rows(tmp_path):
    base = _fake_gesture(tmp_path)
    train, test, info = build_datasets("dvsgesture", tmp_path, frames=3, split_by="time")
    assert (len(train), len(test), info.num_classes) == (8, 4, 11)
    assert train.labels.tolist() == [0, 1, 2, 4] * 2
    ev = read_aedat31(base / "user24_lab.aedat")
    for i, c in enumerate((1, 2, 3, 5)):  # each sample holds exactly its window's events
        inside = ((ev["t"] >= c * 500_000) & (ev["t"] < c * 500_000 + 400_000)).sum()
        assert test[i][0].sum().item() == inside


def test_event_frames_train_end_to_end(tmp_path):
    """A spiking student distilled from an ANN teacher on DVS frames, with flip and roll."""
    from spikedistill.engine.config import load_config
    from spikedistill.engine.trainer import Trainer

    _fake_gesture(tmp_path)
    common = [
        "data.name=dvsgesture",
        f"data.root={tmp_path}",
        "data.options={frames: 3, size: 32}",
        "data.augment=[flip, roll]",
        "data.batch_size=4",
        "model.name=convnet3",
        "model.spiking=true",
        "model.options={width: 4}",
        "teacher.name=convnet3",
        "teacher.options={width: 4}",
        "distill.method=kd",
        "train.epochs=1",
    ]
    with pytest.raises(ConfigError, match=r"set model\.T=3"):
        Trainer(load_config(None, [*common, "model.T=4"]), tmp_path / "bad")
    trainer = Trainer(load_config(None, [*common, "model.T=3"]), tmp_path / "run")
    x, _ = next(iter(trainer.train_loader))
    assert x.shape == (3, 4, 2, 32, 32)  # time-first
    summary = trainer.fit()
    assert summary["history"][0]["test_samples"] == 4
    assert summary["history"][0]["train_kd"] >= 0
    loader = make_loader(trainer.test_set, 2, train=False, info=trainer.info)
    assert next(iter(loader))[0].shape == (3, 2, 2, 32, 32)
