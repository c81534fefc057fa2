"""Safe extraction of downloaded archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2).

Every member is validated before anything is written: absolute paths, ``..`` components that escape
the target, symbolic and hard links, devices and fifos are refused with
``FetchError(archive, "entry '../evil' escapes the target folder")``.  Members are then written (as
plain files and folders, never via the archive library's own extract) into a temporary folder beside
the target, which is renamed into place at the end; a failed extraction leaves no partial target.
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

from pipeline.errors import FetchError

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


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[Member]:
    out: list[Member] = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise FetchError(archive, f"entry '{info.filename}' is a symbolic link")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise FetchError(archive, f"entry '{info.filename}' is a device, fifo or socket")
        rel = _safe_name(archive, info.filename)
        out.append((rel, info.is_dir(), functools.partial(zf.open, info)))
    return out


def _tar_open(archive: Path, tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    fh = tf.extractfile(member)
    if fh is None:
        raise FetchError(archive, f"entry '{member.name}' cannot be read")
    return fh


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[Member]:
    out: list[Member] = []
    for member in tf.getmembers():
        if member.issym():
            raise FetchError(archive, f"entry '{member.name}' is a symbolic link")
        if member.islnk():
            raise FetchError(archive, f"entry '{member.name}' is a hard link")
        if not (member.isfile() or member.isdir()):
            raise FetchError(archive, f"entry '{member.name}' is a device, fifo or other special file")
        rel = _safe_name(archive, member.name)

        out.append((rel, member.isdir(), functools.partial(_tar_open, archive, tf, member)))
    return out


def _open_members(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return zipfile.ZipFile(archive)
    if is_archive(archive):
        return tarfile.open(archive, "r:*")
    raise FetchError(archive, "unsupported archive format (expected .zip, .tar, .tar.gz, .tgz or .tar.bz2)")


def extract_archive(archive: Path, target: Path) -> list[Path]:
    """Safely extract ``archive`` into ``target`` and return the extracted files (sorted).

    All members are validated first (see the module docstring); nothing is written if one is unsafe.
    Extraction goes to a temporary folder beside ``target``.  If ``target`` does not exist the
    temporary folder is renamed onto it in one step.  If it exists (e.g. a source folder that also
    holds ``downloads/`` or another archive's files), the extracted files are moved in one by one,
    replacing same-named files and keeping everything else (archives sharing a top folder merge).
    Raises ``FetchError(archive, reason)`` for unsafe members, unreadable or corrupt archives.
    """
    archive = Path(archive)
    target = Path(target)
    if not archive.is_file():
        raise FetchError(archive, "archive not found")
    try:
        handle = _open_members(archive)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FetchError(archive, f"cannot open archive: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        with handle:
            try:
                if isinstance(handle, zipfile.ZipFile):
                    members = _zip_members(archive, handle)
                else:
                    members = _tar_members(archive, handle)
            except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
                raise FetchError(archive, f"corrupt archive: {exc}") from exc
            root = tmp.resolve()
            written: list[str] = []
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
                    with opener() as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
                    raise FetchError(archive, f"cannot extract entry '{rel}': {exc}") from exc
                written.append(rel)
        if not target.exists():
            os.replace(tmp, target)
        else:
            # merge: every extracted file replaces the same-named file, other files stay
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted({target / rel for rel in written})
