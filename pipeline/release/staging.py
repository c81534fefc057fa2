"""Stage a release's per-image files ahead of its manifest, and hand them over to the release (no Luigi here).

A release's tiles, STAC items, index and viewer thumbnails depend on the split alone, not on the statistics, so
the build places them in their own task while the statistics are computed (with two workers both are busy),
into a stage folder that the release task then takes over by renaming: no file is linked or written twice.

* ``<stage>/release/<region>/images|labels/<id>.tif``: the tiles, placed as :mod:`pipeline.release.writer` would
  (through the tile cache: a hard link of an unchanged cache entry, else converted once);
* ``<stage>/release/stac/items/<id>.json``, ``<stage>/release/index.parquet`` and ``index.gpkg``: the images'
  STAC items (an unchanged image's is a hard link of the previous release's item) and index; the release task
  adds the STAC collection, which also describes the sources;
* ``<stage>/thumbs/``: the viewer's thumbnails of those tiles (when the release has a viewer): kept from an
  earlier viewer of this release or the previous release's, else made.  A thumbnail that cannot be made here
  is left to the viewer, which is written after validation (so an unreadable tile is reported by validation,
  naming the file, before the viewer would fail on it);
* the stage record (beside the folder, ``<stage>.json``, :func:`stage_release`'s result), compact: the sha256 of
  each image's two tiles, the tiles *not* placed as links of unchanged cache entries, the STAC items written
  rather than linked, thumbnail counts; :func:`unpack_stage` gives the records with the split, whose fields it
  does not repeat (5,000 records: 0.3 s of JSON written, and read again by the release task, saved).

:func:`take_stage` removes the record first (the stage is incomplete from then on: a build that fails later
stages again), then renames the staged tree into the release folder being written.
"""
from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.dataset.ids import natural_key
from pipeline.release.manifest import class_table
from pipeline.release.stac import ITEMS_DIR
from pipeline.release.tilecache import TileCache, place_tile

RELEASE = "release"
THUMBS = "thumbs"
KINDS = ("image", "label")


def image_record(image: dict, sha256: Sequence[str] | None = None) -> dict:
    """The manifest record of split record ``image``: its fields but the work ones (``_...``) and its release
    files ``<region>/images|labels/<id>.tif``, with ``sha256`` (of the image and the label) when given."""
    rec = {k: v for k, v in image.items() if not k.startswith("_")}
    name = f"{rec['id']}.tif"
    rec["image"] = f"{rec['region']}/images/{name}"
    rec["label"] = f"{rec['region']}/labels/{name}"
    if sha256 is not None:
        rec["sha256_image"], rec["sha256_label"] = sha256
    return rec


def place_images(out: Path, images: list[dict], cache: TileCache | None,
                 linked: dict[str, str] | None) -> list[dict]:
    """The manifest records of ``images`` (:func:`image_record`) with their files placed under ``out`` and their
    sha256; ``linked`` receives release-relative path -> sha256 of the tiles placed as hard links of
    unchanged tile-cache entries (what :func:`pipeline.release.tilecache.linked_sha` confirms)."""
    records = []
    placed: dict[str, str] = {}
    root = os.fspath(out)
    for im in images:
        rec = image_record(im)
        for kind in KINDS:
            dst = f"{root}/{rec[kind]}"  # a string, not a Path: 10,000 tiles a release
            rec[f"sha256_{kind}"] = (cache.place(im[f"_{kind}_src"], dst, kind=kind, linked=placed) if cache
                                     else place_tile(im[f"_{kind}_src"], dst, kind=kind))
        records.append(rec)
    if linked is not None:
        prefix = len(root) + 1  # every key is <root>/<release-relative path>
        linked.update({p[prefix:]: sha for p, sha in placed.items()})
    return records


def stage_release(folder: Path, *, release: str, code_release: str, images: list[dict],
                  sources: list[dict[str, Any]], tile_cache: Path | None, previous: tuple[Path, dict[str, Any]] | None,
                  thumbs_from: Sequence[Path] | None) -> dict[str, Any]:
    """Fill the new folder ``folder`` (module docstring) with the tiles of ``images`` (split records carrying
    ``_image_src`` / ``_label_src`` work files), their STAC items and GeoParquet index, and, unless
    ``thumbs_from`` is None, their thumbnails (reused from those thumbnail folders when there).  ``sources``:
    the release's sources (their ``acquired_range`` goes into the items).  ``tile_cache``: the tile cache folder
    (None: every tile converted here); its index is saved under ``release`` and looked up under the previous
    release's first (:class:`pipeline.release.tilecache.TileCache`).  ``previous``: (folder, manifest) of the
    release this one continues; its STAC items are reused when it was written by the same code (its
    ``code_versions.release`` is ``code_release``; :func:`pipeline.release.stac.write_items`).  Returns the
    stage record: ``records``, ``linked``, ``stac_items`` and ``reused_items`` (release-relative), ``index`` (files),
    ``thumbs`` (counts and the wall and CPU seconds spent on them, or None)."""
    from pipeline.release.geoparquet import write_index
    from pipeline.release.manifest import SCHEMA_VERSION, manifest_images, manifest_sources
    from pipeline.release.stac import write_items
    from pipeline.release.validate.incremental import valid_images
    from pipeline.release.viewer import thumbs
    from pipeline.release.viewer.site import class_colors, image_jobs

    folder.mkdir(parents=True)
    prev_manifest = previous[1] if previous is not None else None
    cache = TileCache(tile_cache, (prev_manifest or {}).get("release") or None) if tile_cache is not None else None
    linked: dict[str, str] = {}
    out = folder / RELEASE
    records = place_images(out, images, cache, linked)
    if cache is not None:
        cache.save(release)
    plain = manifest_images(records)
    same_code = valid_images(prev_manifest, {"schema_version": SCHEMA_VERSION, "created_with": {
        "code_versions": {"release": code_release}}})
    reused: set[str] = set()
    items = write_items(out, plain, sources=manifest_sources(sources), previous=previous if same_code else None,
                        reused=reused)
    index = write_index(out, plain)
    counts: dict[str, float] | None = None
    if thumbs_from is not None:
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        made = thumbs.provide(image_jobs(out, records), folder / THUMBS,
                              colors=class_colors({"classes": class_table()}), reuse=list(thumbs_from),
                              skip_errors=True)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        counts = {**made, "seconds": time.perf_counter() - t0,
                  "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}
    return {"sha256": {r["id"]: [r["sha256_image"], r["sha256_label"]] for r in records},
            "copied": sorted(r[k] for r in records for k in KINDS if r[k] not in linked),
            "fresh_items": sorted(_item_id(rel) for rel in items if rel not in reused),
            "index": index, "thumbs": counts}


def _item_id(rel: str) -> str:
    return rel[len(ITEMS_DIR) + 1:-len(".json")]


def unpack_stage(staged: dict[str, Any], images: list[dict]) -> dict[str, Any]:
    """What the stage record ``staged`` (:func:`stage_release`'s, compact: no field of a split record repeated)
    says about the split records ``images`` it was made from: ``records`` (:func:`image_record` with the staged
    sha256, in the order of ``images``), ``linked`` (release-relative path -> sha256 of the tiles placed as
    hard links of unchanged tile-cache entries), ``stac_items`` (release-relative, natural id order) and
    ``reused_items`` (those linked from the previous release's items), besides the record's own ``index`` and
    ``thumbs``."""
    shas = staged["sha256"]
    records = [image_record(im, shas[im["id"]]) for im in images]
    copied = set(staged["copied"])
    linked = {r[k]: r[f"sha256_{k}"] for r in records for k in KINDS if r[k] not in copied}
    items = [f"{ITEMS_DIR}/{i}.json" for i in sorted((r["id"] for r in records), key=natural_key)]
    fresh = {f"{ITEMS_DIR}/{i}.json" for i in staged["fresh_items"]}
    return {**staged, "records": records, "linked": linked, "stac_items": items,
            "reused_items": [i for i in items if i not in fresh]}


def stage_folder(record: Path) -> Path:
    """The stage folder of the stage record ``record`` (``<stage>.json`` -> ``<stage>``)."""
    return record.with_suffix("")


def take_stage(record: Path, out: Path) -> Path:
    """Move the staged tiles of the stage whose record is ``record`` to ``out`` (the release folder being
    written; it must not exist), after removing the record.  Returns the staged thumbnail folder (it may be
    missing); the caller removes the emptied stage folder (:func:`drop_stage`)."""
    folder = stage_folder(record)
    record.unlink()
    try:
        os.replace(folder / RELEASE, out)
    except OSError:  # another file system
        shutil.copytree(folder / RELEASE, out)
    return folder / THUMBS


def drop_stage(record: Path) -> None:
    """Remove what is left of a stage (its record and folder)."""
    record.unlink(missing_ok=True)
    shutil.rmtree(stage_folder(record), ignore_errors=True)
