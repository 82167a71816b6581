"""Downloading with checksum verification, and tar/zip extraction that cannot escape its folder."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ..errors import ConfigError, DataError
from ..files import replaced_atomically
from .paths import ENV_VAR

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def file_checksum(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (``algorithm``: any ``hashlib`` name, e.g. md5, sha256)."""
    digest = _new_hash(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot read file for checksum: {e}") from e
    return digest.hexdigest()


def verify_checksum(
    path: str | os.PathLike[str], md5: str | None = None, sha256: str | None = None
) -> None:
    """Raise ``DataError`` (expected vs actual) unless the file matches every checksum given."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_checksum(path, algorithm)
        if actual.lower() != expected.lower():
            raise DataError(
                f"{path}: {algorithm} checksum mismatch: expected {expected.lower()}, "
                f"got {actual} (corrupt or different file)"
            )


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to the file ``dest`` (or into ``dest`` if it is an existing folder).

    The data goes to a temporary file next to the target, is checked against ``md5``/``sha256``
    and only then moved into place; on any failure nothing is left behind and ``DataError``
    says what went wrong (checksum expected vs actual, or how to place the file by hand).
    """
    target = Path(dest)
    if target.is_dir():
        target = target / posixpath.basename(urllib.request.urlparse(url).path)
    with replaced_atomically(target, suffix=".part") as tmp:
        log.info("downloading %s to %s", url, target)
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                while chunk := r.read(_CHUNK):
                    out.write(chunk)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as e:
            raise DataError(
                f"could not download {url}: {e}. Without network access, fetch the file by "
                f"other means and place it at {target} (or set {ENV_VAR} / the data root to "
                "the folder that holds it)."
            ) from e
        try:
            verify_checksum(tmp, md5=md5, sha256=sha256)
        except DataError as e:
            raise DataError(f"download of {url} failed verification: {e}") from None
    return target


def safe_extract_tar(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, within: str | None = None
) -> Path:
    """Extract a (possibly compressed) tar archive into ``dest`` and nowhere else.

    Every member is checked before anything is written; ``DataError`` is raised for absolute
    paths, ``..`` components, links whose target leaves ``dest`` (or goes through another link
    in the archive), device or fifo members and, with ``within``, any member (or link target)
    outside the top folder ``within/``.
    """
    dest_path = Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(members, archive, within)
            dest_path.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: defence in depth
                tar.extractall(dest_path, members=members, filter="data")
            else:  # pragma: no cover - old Python; every member was checked above
                tar.extractall(dest_path, members=members)
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"{archive}: corrupt or unsafe tar archive: {e}") from e
    except OSError as e:
        raise DataError(f"{archive}: cannot extract into {dest_path}: {e}") from e
    return dest_path


def safe_extract_zip(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, within: str | None = None
) -> Path:
    """Extract a zip archive into ``dest`` and nowhere else: every name is checked first
    (no absolute paths, no ``..``, no symlink entries, with ``within`` nothing outside the
    top folder ``within/``), then the files are written."""
    dest_path = Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                what = f"{archive}: member {info.filename!r}"
                name = info.filename.replace("\\", "/")
                _check_name(name, what)
                _check_within(_resolve(name, (), set(), what), within, what)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DataError(f"{what} is a symlink")
            dest_path.mkdir(parents=True, exist_ok=True)
            zf.extractall(dest_path, members=infos)
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{archive}: corrupt zip archive: {e}") from e
    except OSError as e:
        raise DataError(f"{archive}: cannot extract into {dest_path}: {e}") from e
    return dest_path


def install_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    top: str,
    *,
    md5: str | None = None,
    required: tuple[str, ...] = (),
) -> Path:
    """Extract ``archive`` (tar or ``.zip``), whose members must all lie in the folder ``top/``,
    to ``dest / top``, all or nothing; returns that folder.

    The archive is checked against ``md5`` first, then extracted into a temporary folder inside
    ``dest`` and moved into place only once complete (every file of ``required``, relative to
    ``top``, present): an interrupted extraction (disk full, killed run) never leaves a folder
    that a later run would trust. ``DataError`` if ``dest / top`` already exists.
    """
    dest_path, target = Path(dest), Path(dest) / top
    if target.exists():
        raise DataError(
            f"{target} already exists but is incomplete (an interrupted extraction?); "
            f"delete it to extract {archive} again"
        )
    if md5 is not None:
        verify_checksum(archive, md5=md5)
    extract = safe_extract_zip if str(archive).lower().endswith(".zip") else safe_extract_tar
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest_path, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise DataError(f"{archive}: cannot extract into {dest_path}: {e}") from e
    try:
        extract(archive, tmp, within=top)
        missing = [f for f in required if not (tmp / top / f).is_file()]
        if missing or not (tmp / top).is_dir():
            raise DataError(
                f"{archive}: incomplete archive, no {top}/{missing[0] if missing else ''} "
                "(a truncated download? delete it and get it again)"
            )
        _move_into_place(tmp / top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _move_into_place(src: Path, target: Path) -> None:
    try:
        os.rename(src, target)
    except OSError as e:
        if not target.is_dir():  # else another process installed the same archive meanwhile
            raise DataError(f"cannot move the extracted {src.name}/ to {target}: {e}") from e


def _new_hash(algorithm: str) -> hashlib._Hash:
    try:
        return hashlib.new(algorithm, usedforsecurity=False)
    except (ValueError, TypeError):
        valid = ", ".join(sorted(hashlib.algorithms_guaranteed))
        raise ConfigError(f"unknown checksum algorithm {algorithm!r}; valid: {valid}") from None


def _resolve(path: str, base: tuple[str, ...], links: set[str], what: str) -> tuple[str, ...]:
    """Resolve the relative posix ``path`` from folder ``base`` without touching the disk;
    refuse leaving the extraction folder and passing through a symlink member."""
    parts = list(base)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if parts and "/".join(parts) in links:
            raise DataError(f"{what} goes through the symlink member {'/'.join(parts)!r}")
        if part == "..":
            if not parts:
                raise DataError(f"{what} leaves the extraction folder")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def _is_absolute(name: str) -> bool:
    return name.startswith("/") or (len(name) > 1 and name[1] == ":")  # posix or drive letter


def _check_name(name: str, what: str) -> None:
    """Refuse an archive member name that is absolute or climbs with ``..``."""
    if _is_absolute(name):
        raise DataError(f"{what} has an absolute path")
    if ".." in name.split("/"):
        raise DataError(f"{what} has a '..' component")


def _check_within(parts: tuple[str, ...], within: str | None, what: str) -> None:
    """Refuse a resolved member path outside the top folder ``within`` (when given)."""
    if within is not None and (not parts or parts[0] != within):
        raise DataError(
            f"{what} lies outside {within}/ (an archive may only hold that folder; "
            "refusing to write anything)"
        )


def _check_members(
    members: list[tarfile.TarInfo], archive: str | os.PathLike[str], within: str | None = None
) -> None:
    names = {m.name: m.name.replace("\\", "/") for m in members}
    links = {
        "/".join(p for p in names[m.name].split("/") if p not in ("", "."))
        for m in members
        if m.issym()
    }
    for m in members:
        what = f"{archive}: member {m.name!r}"
        name = names[m.name]
        _check_name(name, what)
        if m.ischr() or m.isblk() or m.isfifo():
            raise DataError(f"{what} is a device or fifo")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DataError(f"{what} has an unsupported type {m.type!r}")
        parts = _resolve(name, (), links, what)
        _check_within(parts, within, what)
        if m.issym() or m.islnk():
            kind = "symlink" if m.issym() else "hard link"
            target = m.linkname.replace("\\", "/")
            if _is_absolute(target):
                raise DataError(f"{what} is a {kind} to the absolute path {m.linkname!r}")
            base = parts[:-1] if m.issym() else ()  # hard link targets are archive paths
            link_what = f"{what} ({kind} to {m.linkname!r})"
            _check_within(_resolve(target, base, links, link_what), within, link_what)
