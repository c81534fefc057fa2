"""Where each tile's 8-class label comes from, and the building pre-annotation of tiles still to label.

Policy, per tile, first match wins:

1. a completed annotation in the ``done`` folder named after the tile's stable key
   (``<source>~<scene id>~<tile id>``, :mod:`pipeline.labels.keys`; the legacy
   ``<source>-<scene id>-<tile id>`` name of the same tile is accepted too, both matched by the whole file
   stem), any format :func:`pipeline.labels.annotations.importer.import_annotation` reads):
   annotators' work overrides what a source shipped;
2. the source's own 8-class raster (``Scene.landcover``), warped by :func:`pipeline.labels.landcover.write_label_tiles`,
   unless it leaves more than :data:`MAX_UNLABELLED_SHARE` of the tile unlabelled (a source labelling only some
   classes): the tile is then pending, and that label starts its pre-annotation;
3. otherwise the tile is *pending*: it is listed, never released with an empty label, and (when selected)
   exported to the ``todo`` folder with its building footprints (and the source's partial label) as the
   starting point.

A bad annotation file is rejected with its reason and the tile falls back to 2 or 3; other tiles are
unaffected.  Image nodata pixels (the tile's internal mask) are always label 0.

An annotation that is not finished keeps the tile *pending*, with the reason in its record (and in the
release's ``pending.csv``), instead of releasing it (:func:`unfinished_reason`):

* it is the pre-annotation exported to ``todo/`` unchanged (the ``todo`` folder beside ``done``): a raster
  whose pixels, read onto the tile grid, equal the todo raster's, or a vector file whose set of geometries
  (normalised, coordinates rounded to 1 mm) equals the todo GeoJSON's -- compared by content, not bytes,
  so a re-saved copy counts as unedited;
* or more than :data:`MAX_UNLABELLED_SHARE` (50 %) of the tile's valid pixels are unlabelled (0).  OpenEarthMap
  labels leave only small unknown areas; a tile more than half unlabelled is an unfinished annotation far more
  often than a finished one (an unedited building pre-annotation is 82-97 % unlabelled), and holding it back
  costs little: it stays listed with its reason until the annotator completes it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.vrt import WarpedVRT
from shapely.geometry import shape

from pipeline.constants import NUM_CLASSES
from pipeline.errors import AnnotationRejected, PipelineInputError, SceneRejected
from pipeline.labels.annotations.export import export_preannotation, write_label
from pipeline.labels.annotations.grid import TileGrid
from pipeline.labels.annotations.importer import ANNOTATION_SUFFIXES, find_annotation, import_annotation
from pipeline.labels.keys import KEY_SEP, legacy_tile_key, scene_key_stem_matches, tile_key
from pipeline.raster.reading import open_raster, open_scene
from pipeline.scene import Georef, Scene
from pipeline.sources.footprints import load_footprints

__all__ = ["tile_key", "annotation_digest", "apply_annotations", "apply_annotations_contained", "export_todo"]


def _selector(prefix: str):
    """File-stem predicate of :func:`annotation_digest`: every stem for ``""``, else exactly the tile keys (new
    or legacy) of the scene that ``prefix`` = ``tile_key(source, scene_id, "")`` names."""
    if not prefix:
        return lambda stem: True
    parts = prefix.split(KEY_SEP)
    if len(parts) != 3 or parts[2] or not parts[0] or not parts[1]:
        raise ValueError(f"prefix {prefix!r} is not tile_key(source, scene_id, '')")
    return lambda stem: scene_key_stem_matches(stem, parts[0], parts[1])


def annotation_digest(done_dir: Path | None, prefix: str = "") -> str:
    """sha256 over the names and contents of the annotation files in ``done_dir`` ("" when there are none),
    so outputs that depend on them are rebuilt when they change.  ``prefix`` ``""``: every annotation file;
    ``tile_key(source, scene_id, "")``: exactly the files named by a key of one of that scene's tiles (whole
    stem, :func:`pipeline.labels.keys.scene_key_stem_matches`), never another scene's whose id starts alike."""
    if done_dir is None or not Path(done_dir).is_dir():
        return ""
    wanted = _selector(prefix)
    files = sorted(
        p for p in Path(done_dir).iterdir()
        if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES and wanted(p.stem)
    )
    if not files:
        return ""
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


#: Annotations with a larger share of unlabelled (0) valid pixels stay pending (module docstring).
MAX_UNLABELLED_SHARE = 0.5


def _geometry_set(path: Path) -> set[bytes] | None:
    import shapely

    try:
        gdf = gpd.read_file(path)
        geoms = [shapely.normalize(shapely.set_precision(g, 1e-3, mode="pointwise"))
                 for g in gdf.geometry if g is not None]
        return {shapely.to_wkb(g) for g in geoms if not g.is_empty}
    except Exception:  # noqa: BLE001  (an unreadable file cannot prove the annotation unedited)
        return None


def unfinished_reason(path: Path, data: np.ndarray, valid: np.ndarray, todo: list[Path]) -> str | None:
    """Why the imported annotation ``path`` (``data`` on the tile grid, ``valid`` its image's valid pixels)
    is not a finished label, or None (module docstring).  ``todo``: the tile's pre-annotation files that exist
    (``<key>.tif``, ``<key>.geojson``)."""
    suffix = path.suffix.lower()
    for t in todo:
        if suffix in (".geojson", ".json", ".gpkg") and t.suffix == ".geojson":
            same = _geometry_set(path)
            if same is not None and same == _geometry_set(t):
                return f"{path.name}: same geometries as its pre-annotation todo/{t.name} (unedited)"
        elif suffix in (".tif", ".tiff", ".png") and t.suffix == ".tif":
            with rasterio.open(t) as ds:
                pre = ds.read(1)
            if pre.shape == data.shape and np.array_equal(np.where(valid, pre, 0), np.where(valid, data, 0)):
                return f"{path.name}: same pixels as its pre-annotation todo/{t.name} (unedited)"
    share = unlabelled_share(data, valid)
    if share > MAX_UNLABELLED_SHARE:
        return f"{path.name}: {100 * share:.1f} % of the tile unlabelled (more than {100 * MAX_UNLABELLED_SHARE:.0f} %)"
    return None


def unlabelled_share(data: np.ndarray, valid: np.ndarray) -> float:
    """The share of a tile's valid pixels (``valid``) that ``data`` leaves unlabelled (0); 0.0 without any."""
    n_valid = int(valid.sum())
    return int(((data == 0) & valid).sum()) / n_valid if n_valid else 0.0


def _label_record(tile_id: str, data: np.ndarray, rel: str, origin: str, **extra: Any) -> dict[str, Any]:
    counts = np.bincount(data.ravel(), minlength=NUM_CLASSES + 1)
    return {
        "tile_id": tile_id, "status": "labelled", "label": rel, "origin": origin,
        "class_pixels": {str(k): int(counts[k]) for k in range(1, NUM_CLASSES + 1)},
        "unlabelled_pixels": int(counts[0]), **extra,
    }


def find_tile_annotation(scene: Scene, tile_id: str, done_dir: Path) -> Path | None:
    """The completed annotation of one tile in ``done_dir`` (named by its key, or by the key it had before keys
    used ``~``: the legacy name, also matched exactly), or None."""
    path = find_annotation(Path(done_dir), tile_key(scene.source, scene.scene_id, tile_id))
    return path if path is not None else find_annotation(Path(done_dir), legacy_tile_key(scene.source, scene.scene_id,
                                                                                          tile_id))


def apply_annotations(
    scene: Scene, tiles: list[dict], records: list[dict], out_dir: Path, done_dir: Path | None
) -> tuple[list[dict], list[dict]]:
    """Replace the label of every tile that has a completed annotation in ``done_dir``.

    ``records`` are the label records from the source's own labels (or pending ones).  Returns the new
    records and reject rows ``{"file", "stage": "annotation", "reason"}`` for annotation files that could
    not be imported (those tiles keep their previous record); ``file`` is relative to the annotation folder
    (``done/<key>.geojson``), like every path of ``rejects.csv``.  An unfinished annotation
    (:func:`unfinished_reason`) makes the tile pending with ``"reason"`` and ``"annotation"`` in its record.
    """
    by_id = {r["tile_id"]: dict(r, origin=r.get("origin", "source") if r["status"] == "labelled" else None)
             for r in records}
    rejects: list[dict] = []
    if done_dir is None or not Path(done_dir).is_dir():
        return [by_id[t["tile_id"]] for t in sorted(tiles, key=lambda t: t["tile_id"])], rejects
    for t in sorted(tiles, key=lambda t: t["tile_id"]):
        tid = t["tile_id"]
        key = tile_key(scene.source, scene.scene_id, tid)
        try:
            path = find_tile_annotation(scene, tid, Path(done_dir))
            if path is None:
                continue
            grid = TileGrid.from_tile_record(t)
            data, report = import_annotation(path, grid)
        except AnnotationRejected as exc:
            rejects.append({"file": _annotation_rel(exc.file, Path(done_dir)), "stage": "annotation",
                            "reason": exc.reason.replace(str(Path(done_dir).parent) + "/", "")})
            continue
        with rasterio.open(Path(out_dir) / t["image"]) as image_tile:
            valid = image_tile.dataset_mask() > 0
        data = data.astype(np.uint8)
        data[~valid] = 0
        todo_dir = Path(done_dir).parent / "todo"
        todo = [todo_dir / f"{stem}{sfx}" for stem in (key, path.stem) for sfx in (".tif", ".geojson")]
        reason = unfinished_reason(path, data, valid, [f for f in dict.fromkeys(todo) if f.is_file()])
        if reason is not None:
            by_id[tid] = {"tile_id": tid, "status": "pending", "label": None, "origin": None, "class_pixels": {},
                          "unlabelled_pixels": 0, "annotation": path.name, "reason": reason}
            continue
        rel = f"labels/{tid}.tif"
        write_label(data, grid, Path(out_dir) / rel)
        by_id[tid] = _label_record(tid, data, rel, "annotation", annotation=path.name,
                                   repaired_polygons=int(report.get("repaired_polygons", 0)))
    return [by_id[t["tile_id"]] for t in sorted(tiles, key=lambda t: t["tile_id"])], rejects


def apply_annotations_contained(scene: Scene, tiles: list[dict], records: list[dict], out_dir: Path,
                                done_dir: Path) -> tuple[list[dict], list[dict]]:
    """:func:`apply_annotations` in a forked child (:func:`pipeline.forked.contained`: annotation files are
    decoded by GDAL / OGR, native code); when one crashes it, again tile by tile, so that the file that did is
    that tile's reject (the tile keeps its record) and the others are imported."""
    from pipeline import forked

    try:
        return forked.contained(apply_annotations, scene, tiles, records, out_dir, done_dir, file=str(done_dir))
    except SceneRejected:
        pass
    by_id = {r["tile_id"]: r for r in records}
    out: list[dict] = []
    rejects: list[dict] = []
    for t in sorted(tiles, key=lambda t: t["tile_id"]):
        try:
            path = find_tile_annotation(scene, t["tile_id"], done_dir)
        except PipelineInputError:  # several files for one tile: apply_annotations names them
            path = None
        try:
            got, more = forked.contained(apply_annotations, scene, [t], [by_id[t["tile_id"]]], out_dir, done_dir,
                                         file=str(path or done_dir))
        except SceneRejected as exc:
            got, more = [by_id[t["tile_id"]]], [{"file": _annotation_rel(exc.file, Path(done_dir)),
                                                 "reason": exc.reason, "stage": "annotation"}]
        out.extend(got)
        rejects.extend(more)
    return out, rejects


def _annotation_rel(file: str, done_dir: Path) -> str:
    """An annotation file's path relative to the annotation folder (the parent of ``done/``)."""
    try:
        return Path(file).relative_to(done_dir.parent).as_posix()
    except ValueError:
        return Path(file).name


def mask_footprints(scene: Scene, grid: TileGrid) -> gpd.GeoDataFrame:
    """Building polygons of ``scene.building_mask`` (non-zero = building, on the image's pixel grid)
    on ``grid``: the mask is warped with nearest neighbour onto the tile and vectorised."""
    mask_file = scene.building_mask
    if mask_file is None:
        raise ValueError(f"scene {scene.key} has no building mask")
    with open_scene(scene) as img:
        georef = Georef(crs=img.crs.to_wkt(), transform=tuple(img.transform)[:6])
        size = (img.width, img.height)
    with open_raster(mask_file, georef=georef, bands=[1], keep_nodata=False, error=AnnotationRejected) as src:
        if (src.width, src.height) != size:
            raise AnnotationRejected(mask_file, f"building mask shape {src.width}x{src.height} differs "
                                                          f"from image {size[0]}x{size[1]}")
        with WarpedVRT(src, crs=grid.crs, transform=grid.affine, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, src_nodata=None, nodata=None) as vrt:
            mask = (vrt.read(1) > 0).astype(np.uint8)
    geoms = [shape(g) for g, v in shapes(mask, mask=mask.astype(bool), transform=grid.affine) if v == 1]
    return gpd.GeoDataFrame(geometry=geoms, crs=grid.crs)


def building_footprints(scene: Scene, grid: TileGrid) -> gpd.GeoDataFrame | None:
    """The source's buildings for one tile: vector footprints when the source has them, else its mask."""
    if scene.footprints:
        return load_footprints(scene)
    if scene.building_mask:
        return mask_footprints(scene, grid)
    return None


def export_todo(scene: Scene, tile: dict, image_path: Path, todo_dir: Path, *,
                crashed: str | None = None, partial: Path | None = None) -> dict[str, Any]:
    """Write the pre-annotation of one pending tile to ``todo_dir`` (GeoTIFF + GeoJSON + image): the source's
    classes where its label covers part of the tile (``partial``: that label on the tile's grid, the
    ``_partial_src`` of its pool record), and its buildings.

    Unusable source footprints (unreadable file, mask of another shape, ...) do not stop the export: the
    tile is exported without buildings and the record carries ``footprints_error`` (one line) and
    ``reject`` (a :data:`pipeline.dataset.pool.REJECT_COLUMNS` row for ``rejects.csv``).  ``crashed``: the
    reason of the scene's label reject when reading its source labels killed the process
    (:func:`pipeline.forked.contained`): the footprints are not read again (that reject is the row)."""
    grid = TileGrid.from_tile_record(tile)
    key = tile_key(scene.source, scene.scene_id, tile["tile_id"])
    start = None
    if partial is not None:
        with rasterio.open(partial) as ds:
            start = ds.read(1)
    if crashed is not None:
        return {**export_preannotation(key, grid, image_path, None, todo_dir, start), "footprints_error": crashed}
    try:
        footprints = building_footprints(scene, grid)
    except PipelineInputError as exc:
        result = export_preannotation(key, grid, image_path, None, todo_dir, start)
        return {**result, "footprints_error": f"{exc.file}: {exc.reason}",
                "reject": {"source": scene.source, "scene_id": scene.scene_id, "file": exc.file,
                           "stage": "footprints", "reason": exc.reason}}
    return export_preannotation(key, grid, image_path, footprints, todo_dir, start)
