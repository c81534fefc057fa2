"""What one scene's per-scene outputs are keyed by: the ``scene_inputs`` parameter of its four tasks.

A scene's outputs are made from its catalog record (georeference, GSD, the paths of its image, land cover,
building mask and footprints) and the bytes of those files, and from nothing else of its source: so that is
what keys them, and code that only decides how a source is fetched or catalogued (every module the fetch and
catalog stages import, a library they use) reruns those stages without redoing a scene whose record and files
come out the same.  Two kinds of scene are keyed so (:class:`SceneKeys`, made once per source by
:func:`scene_keys`):

* read in place from a local folder: the record (paths relative to the folder, whose own place is left out: a
  folder moved or mounted elsewhere keeps its scenes' work) with the path, size and modification time of each of
  its files and of the side-car files GDAL would read beside its rasters (nothing read: a file added to the
  folder redoes the new scene's work only);
* downloaded (or generated) into the source's raw folder: the record (paths relative to the raw folder's
  ``files/``) with the SHA-256 that the fetch record gives each of those files.

Both leave out what only labels a source's images (licence, attribution, region hint: the pool and release take
them from the catalog and the entry), and what only tells how one fetch went (a STAC scene's ``transferred``
bytes: 0 when a fetch reused the file, as one into a raw folder started from an earlier one does), and start
from the digest of the source's entry without those labels (:func:`pipeline.sources.object_store.source_digest`).
A scene with a file outside that folder, or one the fetch record does not list, falls back to the source's
catalog digest and its scene id: it is redone whenever the source is fetched or catalogued anew.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.sources.options import TERMS

#: The files of a scene (its catalog record's keys).
SCENE_FILES = ("image", "landcover", "building_mask", "footprints")


def _h(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SceneKeys:
    """How the scenes of one source are keyed (module docstring): ``catalog``, the fallback; ``folder`` the folder
    whose scenes are keyed by their own files (None: none), ``base`` the source's part of their keys;
    ``checksums`` (absolute path -> SHA-256) for a downloaded source, None for one read in place (stamps)."""

    catalog: str
    folder: str | None = None
    base: str = ""
    checksums: Mapping[str, str] | None = field(default=None, compare=False)


def fetched_checksums(record_path: Path) -> dict[str, str]:
    """Absolute path -> SHA-256 of every file a source's fetch record lists ({} when it cannot be read)."""
    try:
        record = atomic.read_record(record_path)
    except (OSError, ValueError):
        return {}
    root, files = record.get("root"), record.get("files")
    if not isinstance(root, str) or not isinstance(files, list):
        return {}
    return {os.path.join(root, f["path"]): f["sha256"] for f in files
            if isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)}


def scene_digest(keys: SceneKeys, scene: Any) -> str:
    """12 hex digits over what one scene's per-scene outputs are made from (module docstring)."""
    fallback = _h("scene", keys.catalog, scene.scene_id)
    folder = keys.folder
    if folder is None or not os.path.abspath(scene.image).startswith(folder.rstrip("/") + "/"):
        return fallback
    record = {k: v for k, v in scene.to_dict().items() if k not in (*TERMS, "region_hint")}
    extra = record.get("extra") or {}
    if "upstream_split" in extra:  # labels the scene's images, not their pixels
        extra = record["extra"] = {k: v for k, v in extra.items() if k != "upstream_split"}
    if isinstance(extra.get("stac"), dict) and "transferred" in extra["stac"]:  # how the fetch went (module doc)
        record["extra"] = {**extra, "stac": {k: v for k, v in extra["stac"].items() if k != "transferred"}}
    stamps: list[list] = []
    for key in SCENE_FILES:
        if record.get(key):
            path, record[key] = record[key], _below(record[key], folder)
            stamped = _file_stamps(key, path, folder, keys.checksums, rasters=key != "footprints")
            if stamped is None:
                return fallback
            stamps += stamped
    mosaic = _mosaic_stamps(record, folder, keys.checksums)
    if mosaic is None:
        return fallback
    return _h("scene", keys.base, record, stamps + mosaic)


def _file_stamps(label: str, path: str, folder: str, checksums: Mapping[str, str] | None, *,
                 rasters: bool) -> list[list] | None:
    """``[label, *stamp]`` of one of a scene's files and, for a raster (``rasters``), those of the side-car files
    GDAL would read beside it; None when one cannot be stamped (the scene's key falls back)."""
    from pipeline.sources.localfs import sidecars

    stamp = _stamp(path, checksums)
    if stamp is None:
        return None
    out = [[label, *stamp]]
    for name in sidecars(path) if rasters else []:
        if os.path.lexists(name):
            stamp = _stamp(name, checksums)
            if stamp is None:
                return None
            out.append([_below(name, folder), *stamp])
    return out


def _mosaic_stamps(record: dict, folder: str, checksums: Mapping[str, str] | None) -> list[list] | None:
    """The stamps of a mosaic's chips (:mod:`pipeline.sources.mosaic`), their paths in ``record`` made relative to
    ``folder`` as the scene's own are; [] for another scene, None when a chip cannot be stamped (the fallback)."""
    mosaic = (record.get("extra") or {}).get("mosaic")
    if not mosaic:
        return []
    chips, stamps = [], []
    for chip in mosaic["chips"]:
        chip = dict(chip)
        for key in SCENE_FILES:  # a chip has no building mask (pipeline.sources.mosaic.chip_of)
            if chip.get(key):
                rel = _below(chip[key], folder)
                stamped = _file_stamps(rel, chip[key], folder, checksums, rasters=key != "footprints")
                if stamped is None:
                    return None
                chip[key] = rel
                stamps += stamped
        chips.append(chip)
    record["extra"] = {**record["extra"], "mosaic": {**mosaic, "chips": chips}}
    return stamps


def _stamp(path: str, checksums: Mapping[str, str] | None) -> list | None:
    """``[size, mtime_ns]`` of ``path`` (read in place), or ``[sha256]`` from ``checksums`` (None: not listed)."""
    from pipeline.sources.localfs import size_time

    if checksums is None:
        return list(size_time(path))
    sha = checksums.get(os.path.abspath(path))
    return [sha] if sha else None


def _below(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` when it lies there (a moved folder keeps its scenes' keys), else as given."""
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, folder) if absolute.startswith(folder.rstrip("/") + "/") else path
