"""Gather the per-scene records into the pool of releasable tiles, pending tiles and rejects.

Every tile keeps a stable key (``<source>~<scene id>~<tile id>``, :mod:`pipeline.labels.keys`); released
images are named ``<region>_<n>`` as in OpenEarthMap by :func:`name_images`.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rasterio.warp import transform_bounds

from pipeline.constants import CONTINENTS
from pipeline.dataset.ids import image_key
from pipeline.dataset.regions import locate
from pipeline.labels.keys import legacy_tile_key, split_tile_key, tile_key
from pipeline.scene import Scene

REJECT_COLUMNS = ("source", "scene_id", "file", "stage", "reason")
#: Why a tile is pending when its label record gives no reason: its source has no 8-class labels.
PENDING_REASON = "awaiting annotation (the source has no 8-class labels)"


def relative_to_root(file: str, root: str | None) -> str:
    """``file`` relative to its source's fetched root, so reports do not depend on where the data folder
    is (releases built in two places stay byte-identical): inside the root its path below it (a symlink
    judged by where it is, not where it points), the root itself its name, outside it a ``../`` path.
    A relative path below a relative root (a data folder given as ``data``, the default) loses the root's part;
    other relative paths (already relative to the root) are returned as they are."""
    if not root or not file:
        return str(file)
    if not Path(file).is_absolute():
        prefix = str(root).rstrip("/") + "/"
        return str(file)[len(prefix):] if not Path(root).is_absolute() and str(file).startswith(prefix) else str(file)
    pairs = ((Path(os.path.abspath(file)), Path(os.path.abspath(root))), (Path(file).resolve(), Path(root).resolve()))
    for f, r in pairs:
        if f == r:
            return r.name
        try:
            return str(f.relative_to(r))
        except ValueError:
            pass
    try:
        return os.path.relpath(os.path.abspath(file), os.path.abspath(root))
    except ValueError:
        return Path(file).name


def relative_reason(reason: str, root: str | None) -> str:
    """``reason`` with the source root's path left out, absolute or as given (GDAL quotes the whole path)."""
    if not root:
        return reason
    for r in dict.fromkeys((os.path.abspath(root), str(Path(root).resolve()), str(root))):  # absolute forms first
        reason = reason.replace(r.rstrip("/") + "/", "")
    return reason


def footprint_rejects(exported: Iterable[dict], provenance: dict[str, dict]) -> list[dict]:
    """``rejects.csv`` rows for the source footprints that the annotation export could not use (one per file
    and reason), with file paths relative to the source's fetched root like the other rejects."""
    rows = {}
    for e in exported:
        r = e.get("reject")
        if r:
            root = provenance.get(r["source"], {}).get("root")
            row = dict(r, file=relative_to_root(r["file"], root), reason=relative_reason(r["reason"], root))
            rows[tuple(row[k] for k in REJECT_COLUMNS)] = row
    return [rows[k] for k in sorted(rows)]


def assemble_pool(
    scenes: list[dict[str, Any]], *, catalog_rejects: Sequence[dict] = (), source_roots: dict[str, str] | None = None,
    image_sha256: Mapping[str, str] | None = None,
) -> dict[str, list]:
    """``scenes``: one dict per scene with keys ``scene`` (Scene), ``region_override`` (str|None),
    ``folder`` (Path of its work files) and the loaded ``plan``, ``tiles``, ``labels``, ``segments`` records.

    Returns ``{"tiles": [...], "rejects": [...]}``.  Every tile has its stable ``key``, ``status``
    (``labelled`` or ``pending``), region / country / continent, grid (crs, transform, width, height,
    bounds) and ``_image_src``; labelled tiles also carry the class and segment counts and ``_label_src``,
    pending ones ``pending_reason`` (the label record's ``reason``, else :data:`PENDING_REASON`) and, when the
    source's label covers part of the tile, ``_partial_src`` (its classes, the pre-annotation's start), tiles labelled
    or held back by an annotation ``repaired_polygons``.
    Files named in rejects are made relative to ``source_roots[source]`` (the fetched folder).
    ``image_sha256``: the checksum of each scene image file (by its path), given to its tiles with the file's
    relative path for :func:`pipeline.dataset.copies.drop_copies` (``_image_sha256``, ``_image_file``).
    """
    roots = source_roots or {}
    shas = image_sha256 or {}

    def _reject(scene: Scene, file: str, stage: str, reason: str) -> dict[str, str]:
        root = roots.get(scene.source)
        return {"source": scene.source, "scene_id": scene.scene_id, "file": relative_to_root(file, root),
                "stage": stage, "reason": relative_reason(reason, root)}

    tiles_out: list[dict] = []
    rejects: list[dict] = [
        dict(r, file=relative_to_root(r["file"], roots.get(r["source"])),
             reason=relative_reason(r["reason"], roots.get(r["source"]))) for r in catalog_rejects
    ]
    for item in sorted(scenes, key=lambda it: (it["scene"].source, it["scene"].scene_id)):
        scene: Scene = item["scene"]
        plan = item["plan"]
        if plan["status"] != "ok":
            rejects.append(_reject(scene, plan.get("file", scene.image), plan.get("stage", "prepare"), plan["reason"]))
            continue
        tiled = item["tiles"]
        stage_rejects = ([tiled["reject"]] if tiled.get("reject") else []) + list(item["labels"].get("rejects", []))
        for rec in stage_rejects:
            rejects.append(_reject(scene, rec["file"], rec["stage"], rec["reason"]))
        for d in tiled["dropped"]:
            rejects.append(_reject(scene, f"{scene.image}#{d['tile_id']}", "tile", d["reason"]))
        if not tiled["tiles"]:
            continue
        lon, lat = plan["center_lonlat"]
        loc = locate(lon, lat, region_hint=item.get("region_override") or scene.region_hint)
        if loc.continent not in CONTINENTS:  # Antarctica: planned and tiled (UPS South), but not released
            rejects.append(_reject(scene, scene.image, "locate", outside_continents(loc.continent, lon, lat)))
            continue
        labels = {r["tile_id"]: r for r in item["labels"]["labels"]}
        segments = {r["tile_id"]: r for r in item["segments"]["segments"]}
        folder = Path(item["folder"])
        for tile in tiled["tiles"]:
            rec = {
                "key": tile_key(scene.source, scene.scene_id, tile["tile_id"]),
                "region": loc.region, "country": loc.country, "country_code": loc.country_code,
                "continent": loc.continent, "source": scene.source, "source_kind": scene.kind,
                "source_scene_id": scene.scene_id, "tile": tile["tile_id"],
                "license": scene.license, "attribution": scene.attribution,
                "native_gsd": round(float(plan["native"]["gsd"]), 4), "native_crs": plan["native"]["crs"],
                "crs": tile["crs"], "gsd": float(tile["gsd"]), "transform": list(tile["transform"]),
                "width": int(tile["window"][2]), "height": int(tile["window"][3]),
                "bounds": list(tile["bounds"]),
                "bounds_lonlat": [round(v, 7) for v in
                                  transform_bounds(tile["crs"], "EPSG:4326", *tile["bounds"], densify_pts=21)],
                "acquired": scene.acquired,
                **({"upstream_split": scene.extra["upstream_split"]} if (scene.extra or {}).get("upstream_split")
                   else {}),
                "_image_src": str(folder / tile["image"]),
                **_label_fields(labels.get(tile["tile_id"]), segments.get(tile["tile_id"]), folder),
            }
            if shas.get(scene.image):
                rec["_image_sha256"] = shas[scene.image]
                rec["_image_file"] = relative_to_root(scene.image, roots.get(scene.source))
            tiles_out.append(rec)
    return merge_pools([{"tiles": tiles_out, "rejects": rejects}])


def _label_fields(lab: dict | None, seg: dict | None, folder: Path) -> dict[str, Any]:
    """A tile's ``status`` and what its label record (``lab``: None when the scene has no labels) and segment
    counts (``seg``) add to its pool record (:func:`assemble_pool`)."""
    labelled = lab is not None and lab["status"] == "labelled"
    out: dict[str, Any] = {"status": "labelled" if labelled else "pending"}
    if not labelled:
        out["pending_reason"] = (lab or {}).get("reason") or PENDING_REASON
        if lab is not None and lab.get("partial"):  # the source's classes, the start of its pre-annotation
            out["_partial_src"] = str(folder / lab["partial"])
    if lab is not None and lab.get("origin") == "annotation":
        out["repaired_polygons"] = int(lab.get("repaired_polygons", 0))
    if labelled:
        assert lab is not None and seg is not None
        out.update({
            "class_pixels": lab["class_pixels"], "unlabelled_pixels": int(lab["unlabelled_pixels"]),
            "segments": seg["segments"], "edge_segments": seg["edge_segments"],
            "segments_total": int(seg["total"]), "label_origin": lab.get("origin", "source"),
            "_label_src": str(folder / lab["label"]),
        })
    return out


def outside_continents(continent: str, lon: float, lat: float) -> str:
    """The reject reason of a scene whose centre lies outside the six continents a release covers
    (:data:`pipeline.constants.CONTINENTS`, the manifest's ``continent`` values): Antarctica, or a place whose
    country has no continent in the offline gazetteer (``Unknown``)."""
    where = "a country of unknown continent" if continent == "Unknown" else continent
    return (f"located in {where} (centre {lon:.4f}, {lat:.4f}): a release covers the six inhabited continents "
            f"({', '.join(CONTINENTS)})")


def unmatched_annotations(names: Iterable[str], tiles: Iterable[Mapping[str, Any]],
                          sources: Collection[str]) -> list[dict[str, str]]:
    """``rejects.csv`` rows (stage ``annotation``, file ``done/<name>``) for the completed annotation files
    ``names`` that name no tile of the pool ``tiles`` by its key or legacy key (:mod:`pipeline.labels.keys`), so an
    annotation that a build cannot use is said, not silently ignored: after a source is renamed or disabled
    (``sources``: the enabled ones), its scene is rejected or renamed, or the file is misnamed."""
    names = list(names)
    if not names:
        return []
    used: set[str] = set()
    scenes: dict[str, set[str]] = defaultdict(set)
    for t in tiles:
        used.update((tile_key(t["source"], t["source_scene_id"], t["tile"]),
                     legacy_tile_key(t["source"], t["source_scene_id"], t["tile"])))
        scenes[t["source"]].add(t["source_scene_id"])
    out = []
    for name in names:
        stem = Path(name).stem
        if stem in used:
            continue
        parts = split_tile_key(stem)
        if parts is None:
            why = "its name is no tile key (<source>~<scene>~<tile>) of this build"
        elif parts[0] not in sources:
            why = f"no enabled source is named {parts[0]!r} (renamed or disabled: its tiles have other keys now)"
        elif parts[1] not in scenes[parts[0]]:
            why = f"source {parts[0]!r} has no tile of scene {parts[1]!r} in this build"
        else:
            why = f"scene {parts[1]!r} of {parts[0]!r} has no tile {parts[2]!r} in this build"
        out.append({"source": parts[0] if parts else "", "scene_id": parts[1] if parts else "",
                    "file": f"done/{name}", "stage": "annotation", "reason": f"not used: {why}"})
    return out


def merge_pools(parts: Iterable[Mapping[str, list]]) -> dict[str, list]:
    """One pool of the pools ``parts`` (e.g. one per source): tiles in key order, rejects in (source, scene,
    stage, file) order, so merging the pools of parts of the scenes equals assembling all the scenes at once."""
    parts = list(parts)
    tiles = sorted((t for p in parts for t in p["tiles"]), key=lambda t: t["key"])
    rejects = sorted((r for p in parts for r in p["rejects"]),
                     key=lambda r: (r["source"], r["scene_id"], r["stage"], r["file"]))
    return {"tiles": tiles, "rejects": rejects}


def selected_pending(tiles: Iterable[dict], chosen: Collection[str]) -> list[dict]:
    """The pool ``tiles`` awaiting annotation whose key is in the selection ``chosen`` (in pool order): what the
    annotation todo exports and the release lists in ``pending.csv``."""
    return [t for t in tiles if t["status"] == "pending" and t["key"] in chosen]


def name_images(tiles: list[dict], previous: Mapping[str, str] | None = None) -> list[dict]:
    """Give each tile its release id ``<region>_<n>``.  Returns new records sorted by (region, n).

    Without ``previous`` the tiles of a region are numbered from 1 in the order of (source, scene id, tile
    id).  ``previous`` maps stable keys (:func:`pipeline.dataset.ids.image_key`) to the ids of an earlier
    release: a tile whose key is there keeps that id when the id is ``<its region>_<n>``; the other tiles
    of the region get the next numbers after the highest ``n`` the earlier release used in that region
    (so an id never comes back for a different image), in (source, scene id, tile id) order."""
    previous = dict(previous or {})
    used: dict[str, int] = defaultdict(int)
    for pid in previous.values():
        region, _, n = str(pid).rpartition("_")
        if n.isdigit():
            used[region] = max(used[region], int(n))
    by_region: dict[str, list[dict]] = defaultdict(list)
    for t in tiles:
        by_region[t["region"]].append(dict(t))
    images: list[dict] = []
    for region in sorted(by_region):
        ims = sorted(by_region[region], key=lambda im: (im["source"], im["source_scene_id"], im["tile"]))
        taken: set[int] = set()
        fresh = []
        for im in ims:
            region_of, _, n = previous.get(image_key(im), "").rpartition("_")
            if region_of == region and n.isdigit() and int(n) not in taken:
                im["id"] = f"{region}_{int(n)}"
                taken.add(int(n))
            else:
                fresh.append(im)
        nxt = max([used.get(region, 0), *taken])
        for im in fresh:
            nxt += 1
            im["id"] = f"{region}_{nxt}"
        ims.sort(key=lambda im: int(im["id"].rpartition("_")[2]))
        images.extend(ims)
    return images
