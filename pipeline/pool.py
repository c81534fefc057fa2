"""Gather the per-scene records into the pool of releasable tiles, pending tiles and rejects.

Naming policy (OpenEarthMap): a tile's id is ``<region>_<n>``; within a region, tiles are numbered from 1
in the order (source, scene id, tile id), so the same inputs always give the same names.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from rasterio.warp import transform_bounds

from pipeline.regions import locate
from pipeline.scene import Scene

REJECT_COLUMNS = ("source", "scene_id", "file", "stage", "reason")


def relative_to_root(file: str, root: str | None) -> str:
    """``file`` relative to its source's fetched root when it lies inside it, so reports do not depend on
    where the data folder is (releases built in two places stay byte-identical)."""
    if root:
        try:
            return str(Path(file).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(file)


def assemble_pool(
    scenes: list[dict[str, Any]], *, catalog_rejects: list[dict] = (), source_roots: dict[str, str] | None = None
) -> dict[str, list]:
    """``scenes``: one dict per scene with keys ``scene`` (Scene), ``region_override`` (str|None),
    ``folder`` (Path of its work files) and the loaded ``plan``, ``tiles``, ``labels``, ``segments`` records.

    Returns ``{"images": [...], "pending": [...], "rejects": [...]}``; images carry every manifest field
    except the release paths, split and checksums, plus ``_image_src``/``_label_src`` (work files).
    Files named in rejects are made relative to ``source_roots[source]`` (the fetched folder).
    """
    roots = source_roots or {}

    def _reject(scene: Scene, file: str, stage: str, reason: str) -> dict[str, str]:
        return {"source": scene.source, "scene_id": scene.scene_id,
                "file": relative_to_root(file, roots.get(scene.source)), "stage": stage, "reason": reason}

    images: list[dict] = []
    pending: list[dict] = []
    rejects: list[dict] = [
        dict(r, file=relative_to_root(r["file"], roots.get(r["source"]))) for r in catalog_rejects
    ]
    for item in sorted(scenes, key=lambda it: (it["scene"].source, it["scene"].scene_id)):
        scene: Scene = item["scene"]
        plan = item["plan"]
        if plan["status"] != "ok":
            rejects.append(_reject(scene, plan.get("file", scene.image), plan.get("stage", "prepare"), plan["reason"]))
            continue
        tiled = item["tiles"]
        for stage_rec in (tiled.get("reject"), item["labels"].get("reject")):
            if stage_rec:
                rejects.append(_reject(scene, stage_rec["file"], stage_rec["stage"], stage_rec["reason"]))
        for d in tiled["dropped"]:
            rejects.append(_reject(scene, f"{scene.image}#{d['tile_id']}", "tile", d["reason"]))
        if not tiled["tiles"]:
            continue
        lon, lat = plan["center_lonlat"]
        loc = locate(lon, lat, region_hint=item.get("region_override") or scene.region_hint)
        labels = {r["tile_id"]: r for r in item["labels"]["labels"]}
        segments = {r["tile_id"]: r for r in item["segments"]["segments"]}
        folder = Path(item["folder"])
        for tile in tiled["tiles"]:
            lab = labels.get(tile["tile_id"])
            common = {
                "region": loc.region, "country": loc.country, "country_code": loc.country_code,
                "continent": loc.continent, "source": scene.source, "source_kind": scene.kind,
                "source_scene_id": scene.scene_id, "tile": tile["tile_id"],
            }
            if lab is None or lab["status"] != "labelled":
                pending.append({**common, "reason": "no completed 8-class annotation"})
                continue
            seg = segments[tile["tile_id"]]
            images.append({
                **common,
                "license": scene.license, "attribution": scene.attribution,
                "native_gsd": round(float(plan["native"]["gsd"]), 4), "native_crs": plan["native"]["crs"],
                "crs": tile["crs"], "gsd": float(tile["gsd"]), "transform": list(tile["transform"]),
                "width": int(tile["window"][2]), "height": int(tile["window"][3]),
                "bounds": list(tile["bounds"]),
                "bounds_lonlat": [round(v, 7) for v in transform_bounds(tile["crs"], "EPSG:4326", *tile["bounds"], densify_pts=21)],
                "class_pixels": lab["class_pixels"], "unlabelled_pixels": int(lab["unlabelled_pixels"]),
                "segments": seg["segments"], "edge_segments": seg["edge_segments"], "segments_total": int(seg["total"]),
                "acquired": scene.acquired,
                "_image_src": str(folder / tile["image"]), "_label_src": str(folder / lab["label"]),
            })
    by_region: dict[str, list[dict]] = defaultdict(list)
    for im in images:
        by_region[im["region"]].append(im)
    for region, ims in by_region.items():
        ims.sort(key=lambda im: (im["source"], im["source_scene_id"], im["tile"]))
        for n, im in enumerate(ims, start=1):
            im["id"] = f"{region}_{n}"
    images.sort(key=lambda im: (im["region"], int(im["id"].rsplit("_", 1)[1])))
    pending.sort(key=lambda p: (p["source"], p["source_scene_id"], p["tile"]))
    rejects.sort(key=lambda r: (r["source"], r["scene_id"], r["stage"], r["file"]))
    return {"images": images, "pending": pending, "rejects": rejects}
