"""Safe, bounded extraction of downloaded archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz).

Every member is validated before anything is written: absolute paths, ``..`` components that escape
the target, symbolic and hard links, devices and fifos are refused with
``FetchError(archive, "entry '../evil' escapes the target folder")``.  Members are then written (as
plain files and folders, never via the archive library's own extract) into a temporary folder beside
the target, which is renamed into place at the end; a failed extraction leaves no partial target.

Limits (:class:`pipeline.limits.Limits`; ``LimitExceeded`` names the key), checked on what the archive
*declares* before anything is written, then again on the bytes actually written:

* ``archive_max_entries``: a zip's entry count is read from its end record before its central directory
  is parsed; a tar's headers are counted as they are read.
* ``archive_max_bytes``: the sum of the declared member sizes, and the bytes written.
* ``archive_max_ratio``: an entry over 1 MiB whose size is more than this many times what it can have
  taken in the archive (a zip entry: its compressed size; a tar entry: the compressed bytes left in the
  file when its header is read, a lower bound on its ratio), so a 1000x bomb is refused at its header,
  without decompressing it.
"""
from __future__ import annotations

import functools
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO
from zlib import error as zlib_error

from pipeline.errors import FetchError, LimitExceeded
from pipeline.limits import DEFAULT_LIMITS, Limits, MiB, human_bytes

#: Entries up to this size are not held to ``archive_max_ratio`` (tiny files compress absurdly well).
RATIO_FLOOR_BYTES = 1 * MiB
#: Read-ahead of a decompressor: compressed bytes it may have consumed beyond the header just read.
READ_AHEAD_BYTES = 256 * 1024
#: Longest member name accepted.
MAX_NAME_CHARS = 4096

#: File name endings recognised as archives, longest first.
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")


def is_archive(path: str | Path) -> bool:
    """Whether ``path``'s name ends in one of :data:`ARCHIVE_SUFFIXES`."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _safe_name(archive: Path, name: str) -> str:
    """Validate a member name and return it normalised (posix, relative); '' for the archive root."""
    if "\x00" in name:
        raise FetchError(archive, f"entry {name!r} has a NUL byte in its name")
    if len(name) > MAX_NAME_CHARS:
        raise FetchError(archive, f"entry name of {len(name)} characters is too long")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":" and unified[0].isalpha()):
        raise FetchError(archive, f"entry '{name}' is an absolute path")
    norm = posixpath.normpath(unified)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        raise FetchError(archive, f"entry '{name}' escapes the target folder")
    return norm


Member = tuple[str, bool, Callable[[], IO[bytes]]]  # (safe relative name, is a folder, opener)


class _Tally:
    """What an archive declares, held to the limits as members are listed."""

    def __init__(self, archive: Path, limits: Limits):
        self.archive, self.limits = archive, limits
        self.entries = 0
        self.total = 0
        self.raw: IO[bytes] | None = None  # a compressed tar's file: its position = compressed bytes consumed

    def fail(self, reason: str) -> LimitExceeded:
        return LimitExceeded(self.archive, reason)

    def count(self, n: int = 1) -> None:
        self.entries += n
        if self.entries > self.limits.archive_max_entries:
            raise self.fail(f"more than archive_max_entries ({self.limits.archive_max_entries}) entries")

    def add(self, name: str, size: int, room: int) -> None:
        """An entry of ``size`` bytes that took at most ``room`` bytes of the archive."""
        self.total += max(size, 0)
        if self.total > self.limits.archive_max_bytes:
            raise self.fail(f"uncompressed size over archive_max_bytes ({human_bytes(self.limits.archive_max_bytes)})"
                            f" at entry '{name}'")
        ratio = size / max(room, 1)
        if size > RATIO_FLOOR_BYTES and ratio > self.limits.archive_max_ratio:
            raise self.fail(f"entry '{name}' expands {ratio:.0f}x ({human_bytes(size)}), over archive_max_ratio "
                            f"({self.limits.archive_max_ratio:g}x): a decompression bomb?")


def _zip_entry_count(archive: Path) -> int | None:
    """The entry count a zip's end-of-central-directory record declares (``None`` if it cannot be read)."""
    try:
        with open(archive, "rb") as fh:
            end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # noqa: SLF001 - stable since Python 2
        return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]
    except (AttributeError, OSError, IndexError, TypeError, ValueError):
        return None


def _zip_members(archive: Path, zf: zipfile.ZipFile, tally: _Tally) -> list[Member]:
    out: list[Member] = []
    for info in zf.infolist():
        tally.count()
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise FetchError(archive, f"entry '{info.filename}' is a symbolic link")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise FetchError(archive, f"entry '{info.filename}' is a device, fifo or socket")
        rel = _safe_name(archive, info.filename)
        tally.add(info.filename, info.file_size, info.compress_size)
        out.append((rel, info.is_dir(), functools.partial(zf.open, info)))
    return out


def _tar_open(archive: Path, tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    fh = tf.extractfile(member)
    if fh is None:
        raise FetchError(archive, f"entry '{member.name}' cannot be read")
    return fh


def _tar_members(archive: Path, tf: tarfile.TarFile, raw: IO[bytes], tally: _Tally) -> list[Member]:
    """The members of ``tf`` read header by header (``raw``: the archive file under the decompressor)."""
    out: list[Member] = []
    size = archive.stat().st_size
    while True:
        member = tf.next()
        if member is None:
            break
        tally.count()
        if member.issym():
            raise FetchError(archive, f"entry '{member.name}' is a symbolic link")
        if member.islnk():
            raise FetchError(archive, f"entry '{member.name}' is a hard link")
        if not (member.isfile() or member.isdir()):
            raise FetchError(archive, f"entry '{member.name}' is a device, fifo or other special file")
        rel = _safe_name(archive, member.name)
        tally.add(member.name, member.size if member.isfile() else 0, size - raw.tell() + READ_AHEAD_BYTES)
        out.append((rel, member.isdir(), functools.partial(_tar_open, archive, tf, member)))
    return out


def _open_members(archive: Path, raw: IO[bytes], tally: _Tally) -> tuple[zipfile.ZipFile | tarfile.TarFile,
                                                                          list[Member]]:
    name = archive.name.lower()
    if name.endswith(".zip"):
        declared = _zip_entry_count(archive)
        if declared is not None:
            tally.count(declared)
            tally.entries = 0
        zf = zipfile.ZipFile(raw)
        return zf, _zip_members(archive, zf, tally)
    if is_archive(archive):
        tf = tarfile.open(fileobj=raw, mode="r:*")
        tally.raw = raw
        return tf, _tar_members(archive, tf, raw, tally)
    raise FetchError(archive, "unsupported archive format (expected .zip, .tar, .tar.gz, .tgz or .tar.bz2)")


def _copy(archive: Path, rel: str, opener: Callable[[], IO[bytes]], out: Path, tally: _Tally, written: list[int]
          ) -> None:
    """Stream one member to ``out``, counting the bytes against ``archive_max_bytes`` as they are written."""
    with opener() as src, open(out, "wb") as dst:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            written[0] += len(block)
            if written[0] > tally.limits.archive_max_bytes:
                raise tally.fail(f"more than archive_max_bytes ({human_bytes(tally.limits.archive_max_bytes)}) "
                                 f"written at entry '{rel}'")
            if tally.raw is not None and written[0] > 64 * RATIO_FLOOR_BYTES:
                ratio = written[0] / max(tally.raw.tell(), 1)
                if ratio > tally.limits.archive_max_ratio:
                    raise tally.fail(f"expands {ratio:.0f}x by entry '{rel}', over archive_max_ratio "
                                     f"({tally.limits.archive_max_ratio:g}x): a decompression bomb?")
            dst.write(block)


def _write_members(archive: Path, members: list[Member], tmp: Path, tally: _Tally) -> list[str]:
    """Write the members into ``tmp``; returns the relative names of the files written."""
    root = tmp.resolve()
    written: list[str] = []
    count = [0]
    for rel, is_dir, opener in members:
        if not rel:
            continue
        out = tmp / rel
        # belt and braces: the resolved path must stay inside the temporary folder
        if not str(out.resolve()).startswith(str(root) + os.sep):
            raise FetchError(archive, f"entry '{rel}' escapes the target folder")
        try:
            if is_dir:
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            _copy(archive, rel, opener, out, tally, count)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib_error) as exc:
            raise FetchError(archive, f"cannot extract entry '{rel}': {exc}") from exc
        written.append(rel)
    return written


def _merge(archive: Path, tmp: Path, target: Path, written: list[str], members: list[Member]) -> None:
    """Move the extracted files into an existing ``target``: every file replaces the same-named one."""
    for rel in written:
        dest_file = target / rel
        here = target
        for part in Path(rel).parts[:-1]:
            here = here / part
            if here.is_symlink():
                raise FetchError(archive, f"cannot extract '{rel}': {here} is a symbolic link")
            if here.exists() and not here.is_dir():
                here.unlink()
        dest_file.parent.mkdir(parents=True, exist_ok=True)
        if dest_file.is_dir() and not dest_file.is_symlink():
            shutil.rmtree(dest_file)
        os.replace(tmp / rel, dest_file)
    for rel, is_dir, _ in members:
        if rel and is_dir:
            (target / rel).mkdir(parents=True, exist_ok=True)


def extract_archive(archive: Path, target: Path, *, limits: Limits | None = None) -> list[Path]:
    """Safely extract ``archive`` into ``target`` and return the extracted files (sorted).

    All members are validated first (see the module docstring), the limits of ``limits`` (default
    :data:`pipeline.limits.DEFAULT_LIMITS`) included; nothing is written if one is unsafe.
    Extraction goes to a temporary folder beside ``target``.  If ``target`` does not exist the
    temporary folder is renamed onto it in one step.  If it exists (e.g. a source folder that also
    holds ``downloads/`` or another archive's files), the extracted files are moved in one by one,
    replacing same-named files and keeping everything else (archives sharing a top folder merge).
    Raises ``FetchError(archive, reason)`` for unsafe members, unreadable or corrupt archives,
    ``LimitExceeded`` for an archive over a limit.
    """
    archive = Path(archive)
    target = Path(target)
    if not archive.is_file():
        raise FetchError(archive, "archive not found")
    tally = _Tally(archive, limits or DEFAULT_LIMITS)
    with open(archive, "rb") as raw:
        try:
            handle, members = _open_members(archive, raw, tally)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib_error) as exc:
            raise FetchError(archive, f"cannot open archive: {exc}") from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            with handle:
                written = _write_members(archive, members, tmp, tally)
            if not target.exists():
                os.replace(tmp, target)
            else:
                _merge(archive, tmp, target, written, members)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted({target / rel for rel in written})
