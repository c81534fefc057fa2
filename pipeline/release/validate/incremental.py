"""Incremental validation of a release that continues a previous one (the build's check, never ``validate``'s).

A release folder is published only after :func:`pipeline.release.validate.report.validate_release` found no
problem in it, so every file of the previous release was checked in full.  When the new release ships an
image record whose files are provably the same bytes as a record of the previous release, the checks that
depend only on those bytes and on the record's fields give the same answer, and the build does not repeat
them.  :func:`release_trust` decides which records and STAC items are trusted; a :class:`Trust` passed to
:func:`~pipeline.release.validate.report.validate_report` skips, for those only:

* check 4 (hash, raster read, grid, pixel counts) and the COG check of 11 for a trusted record;
* its part of the JSON-Schema check 2 (records are validated one by one as members of ``images``), and so is
  every ``files`` entry equal to one of the previous manifest's (checked there by the same code and schema);
* reading a trusted STAC item again (its schema, id, collection and assets): it is the previous release's
  validated item (the same bytes, or equal but for the release-specific values) of an equal record, whose
  files are this release's trusted files at the same paths; that the file exists is still checked, and so
  are the existence and size of its ``files`` entry, which is not hashed again when it equals the previous
  manifest's entry for that item and the file is the previous release's bytes (the writer's hard link, whose
  entry it took from the previous manifest: :func:`~pipeline.release.manifest.file_entries`'s ``known``).

A record ``id`` is trusted when all of these hold:

1. the previous manifest has the same ``schema_version`` and was checked by the same code
   (``created_with.code_versions.release`` equal);
2. the previous manifest has a record with that id that is equal to the new one, field for field (same
   sha256 of both files, grid, class counts, split, paths, ...);
3. both files of the new record are known to have the sha256 the record states without reading them:
   ``verified`` (release-relative path -> sha256) holds only files that are hard links of a tile-cache COG
   unchanged since the cache hashed it (:func:`pipeline.release.tilecache.linked_sha`: same inode, size
   and mtime).  A changed, copied or replaced file is not in ``verified``, so it is checked in full.

A STAC item of a trusted record is trusted when its JSON equals the previous release's item of that id up to
the release-specific values (the ``collection`` id and its links' titles, which must be strings): compared
here, or known from the build, which wrote it as the previous item with those values replaced.  The links
of the new collection that equal links of the previous release's collection are not schema-checked again (the
schemas constrain links one by one); the rest of the collection is.

Everything else always runs in full: consistency, stray rasters, every other ``files`` entry hashed, split files,
split audit, UDA, zones, changes, the collection and ``index.parquet``.  ``python -m pipeline validate``
passes no trust and checks every file.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import compact_json
from pipeline.release.stac import COLLECTION, ITEMS_DIR
from pipeline.release.validate.stac import link_key


@dataclass(frozen=True)
class Trust:
    """What a build's validation may skip (module docstring): image ids and release-relative STAC item files."""

    records: frozenset[str] = field(default_factory=frozenset)
    stac_items: frozenset[str] = field(default_factory=frozenset)
    #: the previous release's collection links (canonical JSON, :func:`~pipeline.release.validate.stac.link_key`)
    collection_links: frozenset[str] = field(default_factory=frozenset)
    #: the previous release's ``files`` entries (:func:`file_key`): an equal entry follows the schema
    file_entries: frozenset[str] = field(default_factory=frozenset)
    #: trusted STAC item files that are the previous release's bytes (hard links the writer made, or compared)
    same_bytes: frozenset[str] = field(default_factory=frozenset)


def file_key(entry: Any) -> str:
    """A manifest ``files`` entry as canonical JSON (how known-valid entries are named)."""
    return compact_json(entry)


def _checker(manifest: Mapping[str, Any]) -> tuple[Any, Any]:
    created = manifest.get("created_with")
    codes = created.get("code_versions") if isinstance(created, dict) else None
    return manifest.get("schema_version"), codes.get("release") if isinstance(codes, dict) else None


def valid_images(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The image records of the validated ``previous`` manifest when it was checked by the code that checks
    ``current`` (condition 1; ``current`` needs only ``schema_version`` and ``created_with``), else ``[]``."""
    if not previous or _checker(current) != _checker(previous) or _checker(previous)[1] is None:
        return []
    return [r for r in previous.get("images") or [] if isinstance(r, dict)]


def trusted_records(manifest: Mapping[str, Any], previous: Mapping[str, Any] | None,
                    verified: Mapping[str, str]) -> frozenset[str]:
    """Ids of the image records of ``manifest`` that conditions 1-3 of the module docstring trust."""
    before = {r.get("id"): r for r in valid_images(previous, manifest)}
    out = set()
    for rec in manifest.get("images") or []:
        if not isinstance(rec, dict) or before.get(rec.get("id")) != rec:
            continue
        files = ((rec.get("image"), rec.get("sha256_image")), (rec.get("label"), rec.get("sha256_label")))
        if all(isinstance(rel, str) and isinstance(sha, str) and verified.get(rel) == sha for rel, sha in files):
            out.add(str(rec["id"]))
    return frozenset(out)


def _item_core(item: Any) -> Any:
    """An item's JSON without its release-specific values (None when they are not strings)."""
    if not isinstance(item, dict) or not isinstance(item.get("collection"), str):
        return None
    links = []
    for link in item.get("links") or []:
        if not isinstance(link, dict) or not isinstance(link.get("title", ""), str):
            return None
        links.append({**link, "title": None})
    return {**item, "collection": None, "links": links}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def trusted_items(root: Path, previous_root: Path, ids: frozenset[str]) -> frozenset[str]:
    """Release-relative STAC item files of records ``ids`` equal to the previous release's up to the
    release-specific values."""
    out = set()
    for i in ids:
        rel = f"{ITEMS_DIR}/{i}.json"
        core = _item_core(_read_json(root / rel))
        if core is not None and core == _item_core(_read_json(previous_root / rel)):
            out.add(rel)
    return frozenset(out)


def release_trust(root: Path, previous_root: Path | None, previous: Mapping[str, Any] | None,
                  verified: Mapping[str, str], items: Collection[str] | None = None,
                  manifest: Mapping[str, Any] | None = None) -> Trust:
    """The :class:`Trust` of the release in ``root`` (manifest written) continuing the validated release in
    ``previous_root`` whose manifest is ``previous`` (None: nothing is trusted); ``verified``: condition 3 of
    the module docstring.  ``items``: the release-relative STAC item files the writer hard-linked from the previous
    release's item files (:func:`pipeline.release.stac.write_stac`'s ``reused``: the same files), trusted for
    trusted records without reading them again; None: compared here.  ``manifest``: the release's manifest as
    the caller parsed it from ``root`` (default: read here)."""
    if manifest is None:
        manifest = _read_json(Path(root) / "manifest.json")
    if previous_root is None or not previous or not isinstance(manifest, dict):
        return Trust()
    ids = trusted_records(manifest, previous, verified)
    collection = _read_json(Path(previous_root) / COLLECTION) if ids else None
    links = collection.get("links") if isinstance(collection, dict) else None
    if items is None:
        stac_items = trusted_items(Path(root), Path(previous_root), ids)
        same = frozenset(rel for rel in stac_items if _same_bytes(Path(root) / rel, Path(previous_root) / rel))
    else:
        stac_items = same = frozenset(items) & {f"{ITEMS_DIR}/{i}.json" for i in ids}
    files = previous.get("files") if valid_images(previous, manifest) else None
    return Trust(records=ids, stac_items=stac_items, same_bytes=same,
                 file_entries=frozenset(map(file_key, files)) if isinstance(files, list) else frozenset(),
                 collection_links=frozenset(link_key(x) for x in links) if isinstance(links, list) else frozenset())
