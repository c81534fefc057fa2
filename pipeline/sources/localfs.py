"""Reading files a source controls, without ever blocking or reading forever.

A local folder (or an extracted archive) may hold symbolic links, FIFOs, devices and pseudo-files: a
``scene.tif`` linking to ``/proc/self/pagemap`` reports 0 bytes and never ends, a FIFO blocks the reader
until someone writes to it, ``/dev/zero`` is endless.  Policies (:func:`file_problem`):

* a file must be a *regular* file, directly or through symbolic links that resolve (no loop) to a target
  outside the pseudo file systems ``/proc``, ``/sys`` and ``/dev``;
* of at most ``local_file_max_bytes`` (:class:`pipeline.limits.Limits`);
* reading stops at the size the file had when it was checked: a file that has more bytes than that (a
  pseudo-file, or one still being written) is refused (:func:`sha256_bounded`, :func:`read_bounded`).

Symbolic links to folders are not followed when a folder is walked (:func:`walk_files`).

**Formats.**  GDAL and OGR recognise a file by its content, not its name, and some formats are recipes
that open other files or URLs (a ``scene.tif`` holding VRT XML can read ``/etc/shadow``; one holding a
``<GDAL_WMS>`` document fetches ``http://169.254.169.254/``).  Rasters a source supplies are therefore opened
with the drivers :data:`RASTER_DRIVERS` only, and vector files must look like what their name says
(:func:`vector_problem`: GeoJSON text, a GeoPackage / SQLite database) before OGR sees them; a vector
file that mentions PROJ's file-reading keys (``+init``, ``nadgrids``, ...: a CRS that makes PROJ read
``/dev/zero``) is refused too (:data:`PROJ_FILE_TOKENS`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import FetchError, PipelineInputError
from pipeline.limits import DEFAULT_LIMITS, Limits, human_sizes

#: The only GDAL drivers a raster supplied by a source is opened with, by the file's first bytes
#: (:func:`raster_driver`; ``rasterio.open(..., driver=...)`` then allows no other).
RASTER_DRIVERS: dict[bytes, str] = {b"II*\x00": "GTiff", b"MM\x00*": "GTiff", b"II+\x00": "GTiff",
                                    b"MM\x00+": "GTiff", b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG"}
#: The first bytes of a GeoPackage (an SQLite 3 database).
SQLITE_MAGIC = b"SQLite format 3\x00"

#: Text in a CRS definition that makes PROJ open files (an init file, a grid): never in a vector a source sends.
PROJ_FILE_TOKENS: tuple[bytes, ...] = (b"init=", b"nadgrids", b"geoidgrids", b"+proj=pipeline", b"hgridshift",
                                       b"vgridshift")

#: Pseudo file systems: nothing under them is a data file.
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")

_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))


def file_kind(mode: int) -> str:
    """``"regular file"``, ``"FIFO"``, ``"character device"``, ... for an ``st_mode``."""
    if stat.S_ISREG(mode):
        return "regular file"
    return next((name for test, name in _KINDS if test(mode)), "special file")


def is_pseudo(path: str | Path) -> bool:
    """Whether ``path`` (resolved) lies in ``/proc``, ``/sys`` or ``/dev``."""
    text = str(path)
    return any(text == root or text.startswith(root + "/") for root in PSEUDO_ROOTS)


def file_problem(path: str | Path, max_bytes: int | None = None, what: str = "local_file_max_bytes") -> str | None:
    """``None`` when ``path`` is a regular file (or a symlink to one outside the pseudo file systems) of at
    most ``max_bytes`` (default ``local_file_max_bytes``; ``what`` names the limit); else a short reason."""
    path = Path(path)
    limit = DEFAULT_LIMITS.local_file_max_bytes if max_bytes is None else max_bytes
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = path.resolve(strict=True)
            st = target.stat()
        except (OSError, RuntimeError):
            return "is a broken or looping symbolic link"
        if is_pseudo(target):  # named as the link says (the resolved path may hold a process id)
            return f"is a symbolic link to {os.readlink(path)[:200]}, a pseudo-file"
        link = "is a symbolic link to a "
    if not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        return f"{link}{kind}, not a regular file" if link else f"is a {kind}, not a regular file"
    if st.st_size > limit:
        shown, most = human_sizes(st.st_size, limit)
        return f"is {shown}, over {what} ({most})"
    return None


def check_file(path: str | Path, max_bytes: int | None = None, error: type[PipelineInputError] = FetchError) -> int:
    """Raise ``error(path, reason)`` when :func:`file_problem` finds one; returns the file's size."""
    why = file_problem(path, max_bytes)
    if why is not None:
        raise error(str(path), why)
    return os.stat(path).st_size


def _chunks(path: Path, size: int, error: type[PipelineInputError], chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of ``path``, refusing more than ``size`` of them (opened non-blocking: never waits)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise error(str(path), "is not a regular file")
        done = 0
        while True:
            block = fh.read(min(chunk, size - done + 1))
            if not block:
                return
            done += len(block)
            if done > size:
                raise error(str(path), f"has more than the {size} bytes it reported (a pseudo-file, or still "
                                       "being written)")
            yield block


def sha256_bounded(path: str | Path, max_bytes: int | None = None,
                   error: type[PipelineInputError] = FetchError) -> tuple[str, int]:
    """``(sha256 hex, bytes)`` of a checked file (:func:`check_file`), read no further than its size."""
    size = check_file(path, max_bytes, error)
    sha = hashlib.sha256()
    n = 0
    for block in _chunks(Path(path), size, error):
        sha.update(block)
        n += len(block)
    return sha.hexdigest(), n


def sha256_remembered(path: str | Path, max_bytes: int | None, known: dict[str, list],
                      seen: dict[str, list], key: str | None = None) -> tuple[str, int]:
    """:func:`sha256_bounded` of ``path``, unless ``known`` (``key``, default the path -> ``[size, mtime_ns,
    inode, sha256]`` from an earlier fetch) has the file as it is now: then that digest, nothing read.  The file
    is checked (:func:`check_file`: kind, limit) either way; ``seen`` gets its entry.  The same trust as the
    stamp a local folder is keyed by (:func:`location_stamp`) and the annotation index's: a file rewritten keeps
    neither its size, its modification time and its inode (a folder moved on its file system keeps all three:
    keyed by the path relative to the folder, its files are not read again)."""
    size = check_file(path, max_bytes, FetchError)
    st = os.stat(path)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    name = key if key is not None else str(path)
    hit = known.get(name)
    if isinstance(hit, list) and len(hit) == 4 and hit[:3] == stamp and isinstance(hit[3], str):
        sha, n = hit[3], size
    else:
        sha, n = sha256_bounded(path, max_bytes)
    seen[name] = [*stamp, sha]
    return sha, n


def read_bounded(path: str | Path, max_bytes: int, error: type[PipelineInputError] = FetchError,
                 what: str = "sidecar_max_bytes") -> bytes:
    """The bytes of a side-car file that must be read whole (JSON), at most ``max_bytes`` (the limit
    ``what``); ``error(path, reason)`` for a special file, a pseudo-file or a file over the limit."""
    path = Path(path)
    why = file_problem(path, None)
    if why is not None:
        raise error(str(path), why)
    size = path.stat().st_size
    if size > max_bytes:
        shown, most = human_sizes(size, max_bytes)
        raise error(str(path), f"is {shown}, over {what} ({most})")
    return b"".join(_chunks(path, size, error))


def walk_files(root: Path, limits: Limits | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(files, skipped)`` below the folder ``root``, sorted: regular files (or good symlinks to them, see
    :func:`file_problem`) outside hidden folders, and ``(path, reason)`` for everything left out that is not
    a folder (special files, bad symlinks, files over the limit, symlinks to folders: not followed)."""
    lim = limits or DEFAULT_LIMITS
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                skipped.append((here / name, "is a symbolic link to a folder (not followed)"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            why = file_problem(here / name, lim.local_file_max_bytes)
            (skipped.append((here / name, why)) if why else files.append(here / name))
    return sorted(files), sorted(skipped)


def raster_driver(path: str | Path) -> str | None:
    """``"GTiff"``, ``"PNG"`` or ``"JPEG"`` when the file starts like one (TIFF, BigTIFF, PNG, JPEG), else
    ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    return RASTER_DRIVERS.get(head) or RASTER_DRIVERS.get(head[:3])


def vector_problem(path: str | Path) -> str | None:
    """``None`` when ``path`` looks like the vector format its name says (``.geojson``/``.json``: JSON text
    starting with ``{``; ``.gpkg``: an SQLite database), else why not (no other format is opened)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        if not head.startswith(SQLITE_MAGIC):
            return "is not a GeoPackage (no SQLite header)"
    elif suffix in (".geojson", ".json"):
        if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b""):
            return "is not GeoJSON (does not start with '{')"
    else:
        return f"unsupported vector format {suffix or '(no extension)'!r}"
    token = _proj_file_token(path)
    return f"mentions {token!r} (a CRS that makes PROJ read files)" if token else None


def _proj_file_token(path: Path, chunk: int = 1 << 20) -> str | None:
    """The first of :data:`PROJ_FILE_TOKENS` found in the file (read in overlapping chunks), or None; the
    built-in null grid (``nadgrids=@null``, in GDAL's WKT of Web Mercator) is no file."""
    keep = max(len(t) for t in PROJ_FILE_TOKENS)
    tail = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                return None
            text = (tail + block).replace(b"nadgrids=@null", b"")
            for token in PROJ_FILE_TOKENS:
                if token in text:
                    return token.decode()
            tail = text[-keep:]


def location_stamp(location: str | Path) -> str:
    """12 hex digits over what a local source's files are now, from their metadata alone: the path, size and
    modification time (ns) of every file :func:`walk_files` finds below the folder ``location`` (or of the file
    ``location``), and the path and reason of every entry it leaves out (a FIFO, a link to a pseudo-file: by
    kind, as a link to ``/proc/self/pagemap`` has a new time at every look).  A file edited, replaced, added,
    removed or renamed changes it; nothing is read, so the root of every build can take it (a local folder is
    read in place, not copied: without this, a changed file would be released as the pixels and checksums of
    the file it replaced).  No size limit applies here: the stamp says what is there, the fetch what is used."""
    root = Path(os.path.expanduser(str(location))).absolute()
    unlimited = dataclasses.replace(DEFAULT_LIMITS, local_file_max_bytes=1 << 62)
    if root.is_dir():
        files, skipped = walk_files(root, unlimited)
    else:
        why = file_problem(root, unlimited.local_file_max_bytes)
        files, skipped = ([], [(root, why)]) if why else ([root], [])
        root = root.parent
    rows = [(p.relative_to(root).as_posix(), *size_time(p)) for p in files]
    rows += [(p.relative_to(root).as_posix(), why, 0, 0) for p, why in skipped]
    return hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:12]


def size_time(path: str | Path) -> tuple[str, int, int]:
    """``("", size, mtime_ns)`` of a file (its link target's), ``("unreadable", 0, 0)`` when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return "unreadable", 0, 0
    return "", st.st_size, st.st_mtime_ns


def sidecars(path: str) -> list[str]:
    """The files GDAL reads beside the raster ``path`` when they exist: an external mask or overviews, auxiliary
    metadata, a world file, a MapInfo TAB or .prj georeference (both cases of the extension)."""
    stem, ext = os.path.splitext(path)
    e = ext[1:].lower()
    names = [f"{path}.aux.xml", f"{path}.msk", f"{path}.ovr", f"{path}.aux", f"{stem}.aux"]
    for suffix in {f"{e[:1]}{e[-1:]}w", f"{e}w", "wld", "tab", "prj"} if e else {"wld", "tab", "prj"}:
        names += [f"{stem}.{suffix}", f"{stem}.{suffix.upper()}"]
    return sorted(set(names))
