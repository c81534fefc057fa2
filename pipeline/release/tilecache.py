"""Release tiles made once per work tile and reused by every release that ships it (no Luigi here).

:func:`place_tile` puts the COG of a work tile into a release as :func:`pipeline.raster.cog.place_cog` does, and
returns its sha256; with a cache folder it first looks the work tile up there:

* entry ``<cache>/<kind>/<key>.tif`` (the COG) and ``<key>.json`` (the record), ``key`` = 24 hex digits of
  SHA-256 over the kind and the work tile's absolute path;
* the record holds the work tile's ``(inode, size, mtime_ns)``, the cached COG's, and the COG's sha256.  The
  entry is used only when both files still have exactly those: pipeline outputs are never rewritten in place
  (a new version is a new file renamed over the old one: a new inode), so an unchanged work tile is the same
  tile, and its COG and checksum are reused: the release gets a hard link and the recorded sha256;
* otherwise the COG is made (converted or linked) into the cache, hashed once, the record written (both
  atomically), and linked into the release.

So a rebuild that adds a source converts and hashes only the new tiles.  Across file systems the release gets
a copy, hashed again.

A release build also leaves ``<cache>/index/<digest>.json`` (16 hex digits of SHA-256 over the release name):
the records of every tile it placed, keyed by kind and work tile path.  The next release (:class:`TileCache`
opened with that release's name) looks its tiles up there first, with the same two stamp checks, instead of
reading one small record per tile (10,000 reads and path resolutions for a 5,000-image release); an entry whose
stamps no longer match, or that is malformed, is looked up as above.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from pipeline import atomic
from pipeline.raster.cog import place_cog
from pipeline.release.manifest import sha256_file


def _stamp(path: str | Path) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _link(src: str | Path, dst: str | Path) -> bool:
    """Hard-link ``src`` to ``dst``; False when that is impossible (another file system: a copy is made)."""
    try:
        os.link(src, dst)
        return True
    except FileNotFoundError:  # the folder is made by the first tile placed in it, not checked for every tile
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass
    except OSError:
        pass
    with atomic.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return False


def cached_tile(src: Path, kind: str, cache: Path) -> tuple[Path, str]:
    """The cached COG of work tile ``src`` and its sha256, made when missing or stale (module docstring)."""
    cog, rec = _cached(src, kind, cache)
    return cog, str(rec["sha256"])


def _cached(src: Path, kind: str, cache: Path) -> tuple[Path, dict]:
    """:func:`cached_tile`'s COG and its record (with the entry's ``key``)."""
    cog, record = _cache_paths(src, kind, cache)
    source = _stamp(src)
    try:
        rec = json.loads(record.read_text())
        if rec["source"] == source and rec["cog"] == _stamp(cog):
            return cog, {**rec, "key": cog.stem}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with atomic.atomic_path(cog) as tmp:  # a fresh COG under a temporary name, renamed over a stale one
        place_cog(src, tmp, kind=kind)
    rec = {"path": str(src), "source": source, "cog": _stamp(cog), "sha256": sha256_file(cog)}
    atomic.write_json(record, rec)
    return cog, {**rec, "key": cog.stem}


def _cache_paths(src: Path, kind: str, cache: Path) -> tuple[Path, Path]:
    key = hashlib.sha256(f"{kind}\0{_resolved(src)}".encode()).hexdigest()[:24]
    return cache / kind / f"{key}.tif", cache / kind / f"{key}.json"


def _resolved(path: Path) -> Path:
    """``path.resolve()``, resolving each folder once (a release places thousands of tiles of a few hundred
    scene folders); a tile that is itself a symlink is resolved whole."""
    return path.resolve() if path.is_symlink() else _resolved_folder(os.path.abspath(path.parent)) / path.name


@functools.lru_cache(maxsize=4096)
def _resolved_folder(folder: str) -> Path:
    return Path(folder).resolve()


def linked_sha(src: str | Path, dst: str | Path, *, kind: str, cache: str | Path) -> str | None:
    """The sha256 the cache recorded for work tile ``src`` when ``dst`` is still exactly that cache entry's COG
    (the same ``(inode, size, mtime_ns)`` as when it was hashed: a hard link of it, unchanged since) and
    ``src`` is unchanged too; None otherwise (no entry, a stale one, a copy or a file changed since).
    No file is read but the small record: this is what lets a release trust a linked tile's checksum."""
    src, dst = Path(src), Path(dst)
    _, record = _cache_paths(src, kind, Path(cache))
    try:
        rec = json.loads(record.read_text())
        if rec["source"] == _stamp(src) and rec["cog"] == _stamp(dst):
            return str(rec["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


_KEY = re.compile(r"[0-9a-f]{24}")


class TileCache:
    """The tile cache folder of one release build: :meth:`place` is :func:`place_tile`, looking tiles up first in
    the index the release ``previous`` left (module docstring); :meth:`save` leaves this release's index."""

    def __init__(self, folder: str | Path, previous: str | None = None):
        self.folder = Path(folder)
        self.root = os.fspath(self.folder)
        self.known: dict[str, dict] = self._load(previous) if previous else {}
        self.placed: dict[str, dict] = {}

    def _index(self, release: str) -> Path:
        return self.folder / "index" / f"{hashlib.sha256(release.encode()).hexdigest()[:16]}.json"

    def _load(self, release: str) -> dict[str, dict]:
        try:
            data = atomic.read_record(self._index(release))
            return data["tiles"] if data.get("release") == release and isinstance(data.get("tiles"), dict) else {}
        except (OSError, ValueError, AttributeError):
            return {}

    def _hit(self, name: str, src: str, kind: str) -> tuple[str, dict] | None:
        rec = self.known.get(name)
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) \
                or not _KEY.fullmatch(str(rec.get("key"))):
            return None
        cog = f"{self.root}/{kind}/{rec['key']}.tif"  # strings, not Paths: 10,000 tiles a release
        try:
            return (cog, rec) if rec.get("source") == _stamp(src) and rec.get("cog") == _stamp(cog) else None
        except OSError:
            return None

    def place(self, src: str | Path, dst: str | Path, *, kind: str, linked: dict[str, str] | None = None) -> str:
        """:func:`place_tile` through this cache."""
        src, dst = os.fspath(src), os.fspath(dst)
        name = f"{kind}\0{src}"
        hit = self._hit(name, src, kind)
        cog, rec = hit if hit is not None else _cached(Path(src), kind, self.folder)
        self.placed[name] = rec
        if not _link(cog, dst):
            return sha256_file(dst)
        if linked is not None:
            linked[str(dst)] = str(rec["sha256"])
        return str(rec["sha256"])

    def save(self, release: str) -> None:
        """Leave the index of the tiles placed so far, for the next release (compact JSON, atomically)."""
        target = self._index(release)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_record(target, {"release": release, "tiles": self.placed})


def place_tile(src: str | Path, dst: str | Path, *, kind: str, cache: str | Path | None = None,
               linked: dict[str, str] | None = None) -> str:
    """Put the COG of work tile ``src`` at ``dst`` (through ``cache`` when given); its sha256.  ``linked``: when
    ``dst`` is a hard link of the cache entry (what :func:`linked_sha` would confirm), ``linked[str(dst)]`` is
    set to the sha256 (so a release need not read every record again to know which tiles it can trust)."""
    src, dst = Path(src), Path(dst)
    if cache is None:
        place_cog(src, dst, kind=kind)
        return sha256_file(dst)
    return TileCache(cache).place(src, dst, kind=kind, linked=linked)
