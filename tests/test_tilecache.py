"""Release tiles converted and hashed once per work tile (pipeline.release.tilecache)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline import atomic
from pipeline.raster.cog import follows_policy
from pipeline.release import tilecache


def _tile(path, value: int) -> None:
    data = np.full((3, 64, 64), value, np.uint8)
    with atomic.atomic_path(path) as tmp, rasterio.open(
            tmp, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633",
            transform=from_origin(500000, 5000000, 0.3, 0.3)) as ds:
        ds.write(data)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_work_tile_is_converted_and_hashed_once(tmp_path, monkeypatch):
    src, cache = tmp_path / "work" / "t.tif", tmp_path / "cache"
    src.parent.mkdir()
    _tile(src, 10)
    first = tmp_path / "r1" / "a.tif"
    sha = tilecache.place_tile(src, first, kind="image", cache=cache)
    assert sha == _sha(first) and follows_policy(first, kind="image")

    calls = []
    monkeypatch.setattr(tilecache, "place_cog", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(tilecache, "sha256_file", lambda p: calls.append(p) or _sha(p))
    second = tmp_path / "r2" / "a.tif"
    assert tilecache.place_tile(src, second, kind="image", cache=cache) == sha
    assert calls == [] and second.stat().st_ino == first.stat().st_ino  # a hard link, nothing recomputed
    monkeypatch.undo()

    _tile(src, 200)  # a new version of the work tile (written atomically: a new inode)
    third = tmp_path / "r3" / "a.tif"
    new_sha = tilecache.place_tile(src, third, kind="image", cache=cache)
    assert new_sha == _sha(third) != sha
    assert _sha(first) == sha  # the earlier release is untouched (its link keeps the old COG)
    with rasterio.open(third) as ds:
        assert int(ds.read(1).max()) == 200


def test_without_a_cache_the_tile_is_placed_and_hashed(tmp_path):
    src = tmp_path / "t.tif"
    _tile(src, 3)
    dst = tmp_path / "r" / "a.tif"
    assert tilecache.place_tile(src, dst, kind="image") == _sha(dst)


def test_linked_sha_trusts_only_an_unchanged_link_of_the_cached_cog(tmp_path):
    """The checksum the incremental release check relies on: given for a hard link of the cache's COG, never for
    a copy, a file changed in place (same size) or after the work tile changed."""
    import os
    import shutil

    src, cache = tmp_path / "work" / "t.tif", tmp_path / "cache"
    src.parent.mkdir()
    _tile(src, 10)
    linked, copied = tmp_path / "r1" / "a.tif", tmp_path / "r1" / "copy.tif"
    sha = tilecache.place_tile(src, linked, kind="image", cache=cache)
    shutil.copyfile(linked, copied)
    assert tilecache.linked_sha(src, linked, kind="image", cache=cache) == sha == _sha(copied)
    assert tilecache.linked_sha(src, copied, kind="image", cache=cache) is None  # same bytes, not the same file
    assert tilecache.linked_sha(src, linked, kind="label", cache=cache) is None  # no such entry

    size = linked.stat().st_size
    with open(linked, "r+b") as fh:  # changed in place, same size: the cache's COG itself changes
        fh.seek(size - 1)
        last = fh.read(1)
        fh.seek(size - 1)
        fh.write(bytes([last[0] ^ 0xFF]))
    os.utime(linked, ns=(linked.stat().st_atime_ns, linked.stat().st_mtime_ns + 1))  # whatever the clock's grain
    assert linked.stat().st_size == size and _sha(linked) != sha
    assert tilecache.linked_sha(src, linked, kind="image", cache=cache) is None

    fresh = tmp_path / "r2" / "a.tif"
    new_sha = tilecache.place_tile(src, fresh, kind="image", cache=cache)  # the stale entry is remade
    assert new_sha == _sha(fresh) and tilecache.linked_sha(src, fresh, kind="image", cache=cache) == new_sha
    _tile(src, 99)  # the work tile changes: the entry no longer vouches for anything
    assert tilecache.linked_sha(src, fresh, kind="image", cache=cache) is None


def test_placing_reports_exactly_the_links_linked_sha_confirms(tmp_path, monkeypatch):
    """The release build takes the tiles it may trust from the placement itself (``linked``) instead of reading
    every cache record again: the same answer as :func:`linked_sha` right after, for a fresh entry, a reused one
    and a copy (another file system: no link, not reported)."""
    src, cache = tmp_path / "work" / "t.tif", tmp_path / "cache"
    src.parent.mkdir()
    _tile(src, 10)
    linked: dict[str, str] = {}
    first, second = tmp_path / "r1" / "a.tif", tmp_path / "r2" / "a.tif"
    for dst in (first, second):  # made into the cache, then reused
        sha = tilecache.place_tile(src, dst, kind="image", cache=cache, linked=linked)
        assert linked[str(dst)] == sha == tilecache.linked_sha(src, dst, kind="image", cache=cache)

    def no_link(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(tilecache.os, "link", no_link)
    copy = tmp_path / "r3" / "a.tif"
    assert tilecache.place_tile(src, copy, kind="image", cache=cache, linked=linked) == _sha(copy)
    assert str(copy) not in linked and tilecache.linked_sha(src, copy, kind="image", cache=cache) is None


def test_a_symlinked_work_folder_shares_the_cache_entry(tmp_path):
    """The cache key is the work tile's resolved path (each folder resolved once per process): a tile reached
    through a symlinked folder is the same entry, converted and hashed once."""
    src = tmp_path / "work" / "t.tif"
    src.parent.mkdir()
    _tile(src, 7)
    (tmp_path / "alias").symlink_to(tmp_path / "work")
    cache = tmp_path / "cache"
    a = tilecache.place_tile(src, tmp_path / "r1" / "a.tif", kind="image", cache=cache)
    b = tilecache.place_tile(tmp_path / "alias" / "t.tif", tmp_path / "r2" / "a.tif", kind="image", cache=cache)
    assert a == b and len(list((cache / "image").glob("*.tif"))) == 1
    assert (tmp_path / "r1" / "a.tif").stat().st_ino == (tmp_path / "r2" / "a.tif").stat().st_ino


def test_a_release_places_the_tiles_of_the_previous_release_from_its_index(tmp_path, monkeypatch):
    """The next release looks tiles up in the index the previous one left (no per-tile record read); a tile
    whose work file changed since, or a malformed index entry, is looked up in the cache as without an index."""
    src, other, cache = tmp_path / "work" / "t.tif", tmp_path / "work" / "u.tif", tmp_path / "cache"
    src.parent.mkdir()
    _tile(src, 10)
    _tile(other, 11)
    first = tilecache.TileCache(cache)
    shas = {p: first.place(p, tmp_path / "r1" / p.name, kind="image") for p in (src, other)}
    first.save("r1")
    second = tilecache.TileCache(cache, "r1")
    real = tilecache._cached
    monkeypatch.setattr(tilecache, "_cached", lambda *a: pytest.fail("looked up outside the index"))
    linked: dict[str, str] = {}
    assert second.place(src, tmp_path / "r2" / "t.tif", kind="image", linked=linked) == shas[src]
    assert linked == {str(tmp_path / "r2" / "t.tif"): shas[src]}
    monkeypatch.setattr(tilecache, "_cached", real)
    second.known[f"image\0{other}"] = {**second.known[f"image\0{other}"], "key": "../../escape"}
    _tile(src, 12)  # rewritten: a new inode, so the index entry is stale
    got = {p: second.place(p, tmp_path / "r2b" / p.name, kind="image") for p in (src, other)}
    assert got == {src: _sha(tmp_path / "r2b" / "t.tif"), other: shas[other]} and got[src] != shas[src]
