"""Write a release directory in the OpenEarthMap layout from the split pool (no Luigi here)."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.dataset.pool import PENDING_REASON, REJECT_COLUMNS
from pipeline.dataset.stats.area import recorded_groups
from pipeline.errors import EmptyRelease
from pipeline.release.card import CARD, release_card
from pipeline.release.changes import changes_markdown, release_changes
from pipeline.release.geoparquet import write_index
from pipeline.release.manifest import (
    SCHEMA_VERSION,
    build_manifest,
    file_entries,
    write_split_files,
    write_uda_files,
)
from pipeline.release.stac import write_collection, write_stac
from pipeline.release.staging import place_images, unpack_stage
from pipeline.release.summary import release_summary
from pipeline.release.tilecache import TileCache
from pipeline.release.torchgeo import zone_lines, zone_section
from pipeline.release.validate.incremental import valid_images

#: ``pending.csv``: one selected tile awaiting annotation per row; ``reason`` says why (no 8-class labels in
#: its source, or an unfinished annotation in ``done/``).
PENDING_COLUMNS = ("key", "region", "source", "source_scene_id", "tile", "todo", "reason")
#: Recorded as ``created_with.tile_format``: release tiles are Cloud-Optimized GeoTIFFs (pipeline.raster.cog).
TILE_FORMAT = "COG"


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def empty_release_reason(sources: list[dict[str, Any]], rejects: list[dict], pending: list[dict]) -> str:
    """Why a release has no image, in one line: no source, or what happened to the scenes (first rejects)."""
    if not sources:
        return "no enabled source (set 'enabled: true' on a source in the sources file)"
    shown = "; ".join(f"{r.get('source')}/{r.get('file')}: {r.get('reason')}" for r in rejects[:3])
    more = f" (+{len(rejects) - 3} more)" if len(rejects) > 3 else ""
    todo = " (their pre-annotations are in the annotation todo folder)" if pending else ""
    return (f"no tile passed from {len(sources)} source(s): {len(rejects)} rejects, {len(pending)} tiles pending "
            f"annotation{todo}" + (f"; {shown}{more}" if shown else ""))


def write_release(
    out: Path, *, release: str, images: list[dict], rejects: list[dict], pending: list[dict],
    split_infos: list[dict], stats_dir: Path, created_with: dict[str, Any], sources: list[dict[str, Any]],
    provenance: dict[str, dict], extra: dict[str, Any] | None = None,
    previous_manifest: dict[str, Any] | None = None, uda: dict[str, Any] | None = None,
    tile_cache: Path | None = None, previous_dir: Path | None = None, linked: dict[str, str] | None = None,
    reused_items: set[str] | None = None, staged: dict | None = None, retired: list[dict] | None = None,
) -> dict:
    """Fill the (empty or new) folder ``out`` with images, labels, split files, rejects, pending tiles,
    per-source provenance (every fetched file with URL, size, sha256, licence), statistics, the release card
    ``README.md`` (:mod:`pipeline.release.card`) and ``manifest.json`` (written last).  ``images`` carry their id
    and split and ``_image_src`` / ``_label_src`` work files; ``extra`` adds top-level manifest sections (e.g. the
    selection record).  ``pending`` rows (pool tiles) may carry ``pending_reason`` (``pending.csv``'s ``reason``)
    and the pre-annotation export's ``footprints_repaired`` / ``footprints_dropped``, counted in the manifest's
    ``summary`` (:mod:`pipeline.release.summary`).
    ``previous_manifest`` (the manifest of the release this one continues, or None) is recorded as
    ``previous_release`` and compared in ``stats/changes.json`` / ``stats/changes.md``
    (:mod:`pipeline.release.changes`; everything is *added* without one); ``retired`` (the images of its lineage
    this release does not ship, :func:`pipeline.dataset.history.retired_images`) is the manifest's ``retired``.  ``uda``
    (:func:`pipeline.dataset.splits.uda.uda_section`) becomes the manifest's ``uda`` section and its split files
    ``uda/*.txt`` (:func:`pipeline.release.manifest.uda_lines`); ``zones/<epsg>.txt`` list the images per UTM
    zone (the manifest's ``zones`` section, :mod:`pipeline.release.torchgeo`).  Images and labels are written as
    Cloud-Optimized GeoTIFFs (:func:`pipeline.raster.cog.place_cog`: converted, or linked when the work tile
    already is one; ``created_with.tile_format`` ``COG``); a STAC catalog
    (``stac/``, :mod:`pipeline.release.stac`) and a GeoParquet index (``index.parquet``,
    :mod:`pipeline.release.geoparquet`) of the manifest's images are listed in ``files``.  With ``tile_cache`` (a
    folder) each work tile is converted and hashed once for all releases (:mod:`pipeline.release.tilecache`).
    ``previous_dir``: the folder of ``previous_manifest``'s release, whose STAC items of unchanged images are
    reused when it was written by the same code (:func:`pipeline.release.stac.write_stac`).  ``linked`` (a dict)
    receives release-relative path -> sha256 of the tiles placed as hard links of unchanged tile-cache entries
    (what :func:`pipeline.release.tilecache.linked_sha` confirms for each right after); ``reused_items`` (a set)
    receives the STAC item files linked from the previous release's items (``write_stac``'s ``reused``).
    ``staged``: the record of a stage whose tiles are already in ``out`` (:mod:`pipeline.release.staging`): its
    records, links, STAC items and index are taken, nothing is placed (``images``, ``tile_cache`` and
    ``previous_dir`` are then not used).
    Returns the manifest.
    A release without images is refused: :class:`pipeline.errors.EmptyRelease` (nothing is written)."""
    if not images:
        raise EmptyRelease(release, empty_release_reason(sources, rejects, pending))
    out.mkdir(parents=True, exist_ok=True)
    previous_release = (previous_manifest or {}).get("release") or None
    staged = unpack_stage(staged, images) if staged is not None else None
    records = _records(out, release, images, staged, tile_cache, previous_release, linked)
    write_split_files(out, records)
    atomic.write_text(out / "rejects.csv", _csv(rejects, REJECT_COLUMNS))
    pending = [dict(p, reason=p.get("pending_reason") or PENDING_REASON) for p in pending]
    atomic.write_text(out / "pending.csv", _csv(pending, PENDING_COLUMNS))
    for name, record in sorted(provenance.items()):
        atomic.write_json(out / "provenance" / f"{name}.json", {k: v for k, v in record.items() if k != "root"})
    shutil.copytree(stats_dir, out / "stats")
    manifest = build_manifest(
        release=release, created_with={**created_with, "tile_format": TILE_FORMAT}, sources=sources, images=records,
        splits_info=split_infos,
        previous_release=previous_release, uda=uda, retired=retired,
        valid_images=valid_images(previous_manifest, {"schema_version": SCHEMA_VERSION, "created_with": created_with}),
        summary=release_summary(records, pending=pending, groups=recorded_groups(records),
                                annotation_repairs=sum(int(im.get("repaired_polygons", 0)) for im in images)),
    )
    changes = release_changes(previous_manifest, manifest)
    atomic.write_json(out / "stats" / "changes.json", changes)
    atomic.write_text(out / "stats" / "changes.md", changes_markdown(changes))
    uda_files = write_uda_files(out, records, uda) if uda is not None else []
    zone_files = zone_lines(records)  # per-UTM-zone lists for torchgeo (pipeline.release.torchgeo)
    for rel, lines in zone_files.items():
        atomic.write_text(out / rel, "".join(f"{line}\n" for line in lines))
    reused = reused_items if reused_items is not None else set()
    catalog_files = _catalogs(out, manifest, staged, previous_dir, previous_manifest, reused)
    atomic.write_text(out / CARD, release_card(manifest))
    extra_files = ([CARD, "train.txt", "val.txt", "test.txt", "rejects.csv", "pending.csv"] + uda_files
                   + list(zone_files) + catalog_files)
    extra_files += sorted(
        str(p.relative_to(out)) for d in ("stats", "provenance") for p in (out / d).rglob("*") if p.is_file()
    )
    manifest.update(extra or {})
    manifest["zones"] = zone_section(records)
    before = {e["path"]: e for e in (previous_manifest or {}).get("files") or []
              if isinstance(e, dict) and e.get("path") in reused}  # linked from the previous release
    manifest["files"] = file_entries(out, extra_files, known=before)
    atomic.write_json(out / "manifest.json", manifest)
    return manifest


def _records(out: Path, release: str, images: list[dict], staged: dict | None, tile_cache: Path | None,
             previous_release: str | None, linked: dict[str, str] | None) -> list[dict]:
    """The manifest records of ``images``, their tiles placed (or the stage's, already in ``out``)."""
    if staged is not None:
        if linked is not None:
            linked.update(staged["linked"])
        return staged["records"]
    cache = TileCache(tile_cache, previous_release) if tile_cache is not None else None
    records = place_images(out, images, cache, linked)
    if cache is not None:
        cache.save(release)
    return records


def _catalogs(out: Path, manifest: dict, staged: dict | None, previous_dir: Path | None,
              previous_manifest: dict | None, reused_items: set[str]) -> list[str]:
    """Write the STAC catalog and the GeoParquet index (with a stage, only the STAC collection: the items and
    the index were written with the tiles); returns their release-relative files."""
    if staged is not None:
        reused_items.update(staged["reused_items"])
        return [write_collection(out, manifest["images"], release=manifest["release"], sources=manifest["sources"]),
                *staged["stac_items"], *staged["index"]]
    reuse = (previous_dir, previous_manifest) if previous_dir is not None and previous_manifest is not None \
        and valid_images(previous_manifest, manifest) else None  # written by the same code
    files = write_stac(out, manifest["images"], release=manifest["release"], sources=manifest["sources"],
                       previous=reuse, reused=reused_items)
    return [*files, *write_index(out, manifest["images"])]
