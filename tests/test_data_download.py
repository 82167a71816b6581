import hashlib
import io
import tarfile

import pytest

from spikedistill.data import download_url, file_checksum, safe_extract_tar, verify_checksum
from spikedistill.errors import ConfigError, DataError

PAYLOAD = b"spikedistill test payload\n" * 100


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_checksums(source):
    assert file_checksum(source, "md5") == hashlib.md5(PAYLOAD).hexdigest()
    assert file_checksum(source, "sha256") == hashlib.sha256(PAYLOAD).hexdigest()
    verify_checksum(source, md5=hashlib.md5(PAYLOAD).hexdigest().upper())
    with pytest.raises(DataError, match=r"expected 0+, got"):
        verify_checksum(source, sha256="0" * 64)
    with pytest.raises(ConfigError, match="unknown checksum algorithm"):
        file_checksum(source, "nope")


def test_download_file_url_with_right_checksum(tmp_path, source):
    dest = tmp_path / "out" / "payload.bin"
    got = download_url(
        source.as_uri(),
        dest,
        md5=hashlib.md5(PAYLOAD).hexdigest(),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["payload.bin"]  # no temp file left


def test_download_into_existing_folder_uses_url_name(tmp_path, source):
    (tmp_path / "dir").mkdir()
    assert download_url(source.as_uri(), tmp_path / "dir") == tmp_path / "dir" / "payload.bin"


def test_download_checksum_mismatch_leaves_nothing(tmp_path, source):
    dest = tmp_path / "out" / "payload.bin"
    with pytest.raises(DataError, match=r"md5 checksum mismatch: expected f+, got [0-9a-f]{32}"):
        download_url(source.as_uri(), dest, md5="f" * 32)
    assert list(dest.parent.iterdir()) == []


def test_download_failure_explains_manual_placement(tmp_path):
    dest = tmp_path / "out" / "x.tar.gz"
    with pytest.raises(DataError, match="place it at") as info:
        download_url((tmp_path / "missing.tar.gz").as_uri(), dest)
    assert str(dest) in str(info.value)
    assert list(dest.parent.iterdir()) == []


def _tar(path, members):
    """members: (TarInfo fields dict, data or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    return ({"name": name}, data)


def test_safe_extract_normal_archive(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            ({"name": "d", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
            _file("d/a.txt", b"hello"),
            ({"name": "d/link", "type": tarfile.SYMTYPE, "linkname": "a.txt"}, None),
            ({"name": "d/hard", "type": tarfile.LNKTYPE, "linkname": "d/a.txt"}, None),
        ],
    )
    dest = tmp_path / "dest"
    safe_extract_tar(archive, dest)
    assert (dest / "d" / "a.txt").read_bytes() == b"hello"
    assert (dest / "d" / "link").read_bytes() == b"hello"
    assert (dest / "d" / "hard").read_bytes() == b"hello"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("ok.txt"), _file("../evil")], "'..'"),
        ([_file("ok.txt"), _file("d/../../evil")], "'..'"),
        ([_file("ok.txt"), _file("/tmp/evil_absolute")], "absolute"),
        (
            [_file("ok.txt"), ({"name": "s", "type": tarfile.SYMTYPE, "linkname": "../.."}, None)],
            "leaves",
        ),
        (
            [({"name": "s", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
            "absolute",
        ),
        (
            [({"name": "d/s", "type": tarfile.SYMTYPE, "linkname": "../../x"}, None)],
            "leaves",
        ),
        (  # a symlink to "." that a second symlink then climbs out of
            [
                ({"name": "a", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                ({"name": "a/b", "type": tarfile.SYMTYPE, "linkname": "../evil"}, None),
            ],
            "symlink",
        ),
        (
            [({"name": "h", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None)],
            "leaves",
        ),
        ([({"name": "dev", "type": tarfile.CHRTYPE}, None)], "device or fifo"),
        ([({"name": "fifo", "type": tarfile.FIFOTYPE}, None)], "device or fifo"),
    ],
)
def test_safe_extract_refuses_escapes_and_extracts_nothing(tmp_path, members, message):
    archive = _tar(tmp_path / "evil.tar.gz", [(dict(f), d) for f, d in members])
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(DataError, match=message):
        safe_extract_tar(archive, dest)
    assert not dest.exists() or list(dest.iterdir()) == []
    outside = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert outside <= {"evil.tar.gz", "a", "a/b", "a/b/dest"}


def test_safe_extract_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(DataError):
        safe_extract_tar(bad, tmp_path / "dest")


def _zip(path, entries):
    """``entries``: (name, data, unix mode or None)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_safe_extract_zip(tmp_path):
    from spikedistill.data.download import safe_extract_zip

    good = _zip(tmp_path / "good.zip", [("cls/a.aedat", b"abc", None), ("b.txt", b"x", None)])
    dest = safe_extract_zip(good, tmp_path / "out")
    assert (dest / "cls" / "a.aedat").read_bytes() == b"abc"
    bad = [
        ([("ok.txt", b"x", None), ("../evil", b"x", None)], "'..'"),
        ([("/tmp/evil_abs", b"x", None)], "absolute"),
        ([("ok.txt", b"x", None), ("link", b"/etc/passwd", 0o120777)], "symlink"),
    ]
    for k, (entries, message) in enumerate(bad):
        target = tmp_path / f"bad{k}"
        with pytest.raises(DataError, match=message):
            safe_extract_zip(_zip(tmp_path / f"bad{k}.zip", entries), target)
        assert not target.exists()  # nothing was written
    (tmp_path / "corrupt.zip").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="corrupt zip"):
        safe_extract_zip(tmp_path / "corrupt.zip", tmp_path / "c")


def test_within_refuses_members_outside_the_top_folder(tmp_path):
    from spikedistill.data.download import safe_extract_zip

    ok = [({"name": "top", "type": tarfile.DIRTYPE, "mode": 0o755}, None), _file("top/a", b"a")]
    safe_extract_tar(_tar(tmp_path / "ok.tar.gz", ok), tmp_path / "ok", within="top")
    assert (tmp_path / "ok" / "top" / "a").read_bytes() == b"a"
    for k, extra in enumerate(
        [
            _file("other"),
            _file("./top/../other"),
            ({"name": "top/s", "type": tarfile.SYMTYPE, "linkname": "../other"}, None),
            ({"name": "top/h", "type": tarfile.LNKTYPE, "linkname": "other"}, None),
        ]
    ):
        archive = _tar(tmp_path / f"bad{k}.tar.gz", [_file("top/a"), (dict(extra[0]), extra[1])])
        with pytest.raises(DataError, match=r"outside top/|'\.\.'"):
            safe_extract_tar(archive, tmp_path / f"bad{k}", within="top")
        assert not (tmp_path / f"bad{k}").exists()
    bad_zip = _zip(tmp_path / "z.zip", [("top/a", b"a", None), ("other", b"x", None)])
    with pytest.raises(DataError, match="outside top/"):
        safe_extract_zip(bad_zip, tmp_path / "z", within="top")
    assert not (tmp_path / "z").exists()
