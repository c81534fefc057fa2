"""What a data folder holds that no build of the current settings uses (``python -m pipeline prune``).

Outputs are named by digests of what made them (code and library versions, settings, the sources' entries), so
every code change, library upgrade, setting or source edit leaves the outputs it supersedes behind: at
OpenEarthMap's size a tiling change leaves a full copy of every scene's tiles. :func:`superseded` lists them,
given the outputs the build of the chosen settings uses (its whole task graph, complete tasks included:
``tasks.prune``), in the folders that hold keyed outputs only:

* ``raw/<source>-<digest>/`` and ``catalog/<source>-<digest>.json`` of other entries (or of sources no longer
  listed);
* ``work/scenes/<source>/<scene>/`` entries (``plan-*``, ``tiles-*``, ``labels-*``, ``segments-*``) of other code,
  settings or annotations, and the folders of scenes and sources no build of these settings has;
* ``work/dataset/`` records and ``work/release-stage/`` stages of other builds;
* temporaries (``.tmp-*``) an interrupted build left in those folders or in ``releases/``, once older than
  :data:`TEMP_AGE` seconds (a younger one may belong to a build that is running).

* the release tile cache's COGs that no release holds any more (a deleted release's: no other hard link), with
  their records, and the indexes of releases that are gone; deleting a release frees its tiles' space only once
  these go, as the cache keeps a link of each.

Never touched: ``releases/`` (but their old temporaries), the release history, the annotation folders, hash
caches and lock files.  Releases hold hard links, not references, so removing a
work copy of a released tile removes no byte of a release (and frees no space: :func:`freed_bytes` counts
files with no other link only).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

#: A temporary at least this old (seconds since its last change) belongs to no running build.
TEMP_AGE = 3600
#: Folders under the data folder whose entries are keyed outputs, as (folder, kind).
KEYED = (("raw", "raw folder"), ("catalog", "catalog"), ("work/dataset", "dataset record"),
         ("work/release-stage", "release stage"))


def _is_old_temp(path: Path, now: float) -> bool:
    try:
        return path.name.startswith(".tmp-") and now - path.lstat().st_mtime >= TEMP_AGE
    except OSError:
        return False


def _kept(path: Path, needed: set[Path], ancestors: set[Path]) -> bool:
    """Whether ``path`` is an output the build uses, holds one, or lies inside one."""
    return path in needed or path in ancestors or any(p in needed for p in path.parents)


def superseded(data: Path, needed: Iterable[str | Path], now: float | None = None) -> list[tuple[str, Path]]:
    """``[(kind, path)]``: what under ``data`` no build of the settings whose outputs are ``needed`` uses
    (module docstring), sorted by path."""
    now = time.time() if now is None else now
    data = Path(os.path.abspath(data))
    keep = {Path(os.path.abspath(p)) for p in needed}
    ancestors = {a for p in keep for a in p.parents}
    out: list[tuple[str, Path]] = []

    def visit(folder: Path, kind: str) -> None:
        for entry in _entries(folder):
            if _is_old_temp(entry, now):
                out.append(("temporary", entry))
            elif not entry.name.startswith(".tmp-") and not _kept(entry, keep, ancestors):
                out.append((kind, entry))

    for folder, kind in KEYED:
        visit(data / folder, kind)
    for source in _entries(data / "work" / "scenes"):
        if not _kept(source, keep, ancestors):
            out.append(("scene outputs", source))
            continue
        for scene in _entries(source):
            if _kept(scene, keep, ancestors):
                visit(scene, "scene output")
            else:
                out.append(("scene outputs", scene))
    out += [("temporary", e) for e in _entries(data / "releases") if _is_old_temp(e, now)]
    out += _unreleased_tiles(data / "work" / "release-tiles", data / "releases")
    return sorted(out, key=lambda kp: str(kp[1]))


def _unreleased_tiles(cache: Path, releases: Path) -> list[tuple[str, Path]]:
    """Entries of the release tile cache (:mod:`pipeline.release.tilecache`) that no release holds any more: a
    COG with no other hard link (its release was deleted; the next release that ships the tile makes it again)
    with its record, and the index of a release that is gone."""
    out: list[tuple[str, Path]] = []
    for kind in ("image", "label"):
        for cog in _entries(cache / kind):
            try:
                alone = cog.suffix == ".tif" and cog.lstat().st_nlink == 1
            except OSError:
                continue
            if alone:
                out += [("unreleased tile", cog)] + [("unreleased tile", r) for r in [cog.with_suffix(".json")]
                                                      if r.exists()]
    names = {hashlib.sha256(p.name.encode()).hexdigest()[:16] for p in _entries(releases)
             if (p / "manifest.json").is_file()}
    out += [("tile index", p) for p in _entries(cache / "index") if p.suffix == ".json" and p.stem not in names]
    return out


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def freed_bytes(path: Path) -> int:
    """Bytes removing ``path`` frees: its files that have no other hard link (a tile linked into a release
    frees nothing)."""
    def size(p: Path) -> int:
        try:
            st = p.lstat()
        except OSError:
            return 0
        return st.st_size if st.st_nlink == 1 else 0

    if path.is_symlink() or not path.is_dir():
        return size(path)
    return sum(size(Path(root) / f) for root, _, files in os.walk(path) for f in files)


def remove(path: Path) -> None:
    """Remove ``path`` (a file, link or folder); one that is already gone is no error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def held_locks(locks: Path) -> list[Path]:
    """The task lock files under ``locks`` that a process holds now (a build is running)."""
    held = []
    for path in _entries(locks):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return held

