"""Writing label GeoTIFFs and the building pre-annotation of a tile for the annotators.

Rasterisation uses the pixel-centre rule (``all_touched=False``, see the package docstring): labels must
not be inflated.  Footprints are repaired with ``make_valid`` and clipped to the tile; unusable ones are
dropped (machine input), not rejected.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from pipeline.atomic import atomic_path
from pipeline.constants import BUILDING, CLASS_NAMES, NUM_CLASSES
from pipeline.labels.annotations.grid import TileGrid, burn
from pipeline.raster.cog import apply_label_metadata
from pipeline.sources.footprints import polygonal, same_crs

#: Building pre-annotation vector properties.
BUILDING_PROPS = {"class": BUILDING, "class_name": CLASS_NAMES[BUILDING]}


def clip_footprints_counted(footprints: gpd.GeoDataFrame | None, grid: TileGrid
                            ) -> tuple[list[BaseGeometry], dict[str, int]]:
    """:func:`clip_footprints` and what it repaired and dropped for this tile: ``{"repaired_polygons": n,
    "dropped_polygons": n}``, counting the footprints that reach into the tile (by their outline's bounding
    box for unusable ones): invalid ones that ``make_valid`` repaired, and ones with nothing polygonal left
    (dropped).  Empty or missing geometries have no place and are not counted."""
    counts = {"repaired_polygons": 0, "dropped_polygons": 0}
    if footprints is None or len(footprints) == 0:
        return [], counts
    gdf = footprints
    if gdf.crs is not None and not same_crs(gdf.crs, grid.crs):
        gdf = gdf.to_crs(grid.crs)
    tile = grid.footprint
    out: list[BaseGeometry] = []
    for geom in gdf.geometry:
        g = polygonal(geom)
        if g is None:
            if geom is not None and not geom.is_empty and geom.envelope.intersects(tile):
                counts["dropped_polygons"] += 1
            continue
        if not g.intersects(tile):
            continue
        if not geom.is_valid:
            counts["repaired_polygons"] += 1
        g = polygonal(g.intersection(tile))
        if g is not None and g.area > 0:
            out.append(g)
    return out, counts


def clip_footprints(footprints: gpd.GeoDataFrame | None, grid: TileGrid) -> list[BaseGeometry]:
    """The building polygons of ``footprints`` in ``grid.crs``, repaired and clipped to the tile.

    Footprints without CRS are taken to be in ``grid.crs``.  Invalid polygons are repaired with
    ``make_valid``; geometries with nothing polygonal left, and polygons that do not reach into the
    tile (or only touch its edge), are dropped.  Order of the input rows is kept.
    """
    return clip_footprints_counted(footprints, grid)[0]


def rasterize_footprints(
    footprints: gpd.GeoDataFrame | None, grid: TileGrid, *, all_touched: bool = False
) -> np.ndarray:
    """A ``uint8`` ``(height, width)`` mask of ``grid``: 1 where a building is, 0 elsewhere.

    The footprints are reprojected to ``grid.crs`` (no CRS = already in it), repaired and clipped to
    the tile (:func:`clip_footprints`), then burnt with ``rasterio.features.rasterize``.
    ``all_touched=False`` (default): a pixel is building when its centre is inside a polygon --
    unbiased in area for buildings several pixels wide, but sub-pixel buildings may vanish.
    ``all_touched=True``: every pixel touched by an outline -- nothing vanishes but each building
    grows by ~half a pixel on every side (area bias ~ perimeter x gsd / 2).
    """
    geoms = clip_footprints(footprints, grid)
    return burn([(g, 1) for g in geoms], grid, all_touched=all_touched)


def write_label(array: np.ndarray, grid: TileGrid, path: str | Path) -> None:
    """Write a class-id array as a 1-band ``uint8`` GeoTIFF on ``grid``, atomically.

    DEFLATE-compressed; tiled with 256 x 256 blocks when both sides are at least 256 pixels, striped
    otherwise (small rasters gain nothing from tiling); no nodata value (0 is the class "unlabelled");
    the class palette and names are stored as in release tiles
    (:func:`pipeline.raster.cog.apply_label_metadata`) for viewing.  ``array`` must have ``grid.shape`` and
    integer values 0..8 (``ValueError`` otherwise).
    """
    arr = np.asarray(array)
    if arr.shape != grid.shape:
        raise ValueError(f"label array shape {arr.shape} differs from grid shape {grid.shape}")
    if arr.dtype.kind not in "ub" and not (arr.dtype.kind == "i" and (arr.size == 0 or arr.min() >= 0)):
        raise ValueError(f"label array dtype {arr.dtype} is not an unsigned integer type")
    if arr.size and int(arr.max()) > NUM_CLASSES:
        raise ValueError(f"label array has values above {NUM_CLASSES}: max {int(arr.max())}")
    arr = arr.astype(np.uint8, copy=False)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": RioCRS.from_user_input(grid.crs),
        "transform": grid.affine,
        "compress": "deflate",
    }
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr, 1)
            apply_label_metadata(dst)


def _crs_member(crs: str) -> dict[str, Any]:
    c = CRS.from_user_input(crs)
    auth = c.to_authority()
    name = f"urn:ogc:def:crs:{auth[0]}::{auth[1]}" if auth else c.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def class_polygons(label: np.ndarray, grid: TileGrid) -> list[tuple[BaseGeometry, dict[str, Any]]]:
    """The labelled pixels of ``label`` (on ``grid``) as polygons, one per 4-connected run of a class, in row
    order, each with ``class`` / ``class_name``: their pixel outlines, so that burning them back by the
    pixel-centre rule gives ``label`` again."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    return [(shape(g), {"class": int(v), "class_name": CLASS_NAMES[int(v)]})
            for g, v in shapes(label, mask=label > 0, transform=grid.affine, connectivity=4)]


def _write_geojson(features: Iterable[tuple[BaseGeometry, dict[str, Any]]], crs: str, path: Path) -> None:
    """Write polygons with their properties as a GeoJSON FeatureCollection with a ``crs`` member, atomically,
    deterministic."""
    feats = [
        {"type": "Feature", "id": i, "properties": dict(props), "geometry": mapping(g)}
        for i, (g, props) in enumerate(features)
    ]
    doc = {"type": "FeatureCollection", "crs": _crs_member(crs), "features": feats}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def _link_or_copy(src: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def export_preannotation(
    tile_name: str,
    grid: TileGrid,
    image_path: Path,
    footprints: gpd.GeoDataFrame | None,
    out_dir: Path,
    start: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write the building pre-annotation of one tile for the annotators, each file atomically:

    * ``out_dir/<tile_name>.tif``: 1-band uint8 GeoTIFF on ``grid`` (:func:`write_label`), 8 (building)
      where footprints cover the pixel centre, 0 elsewhere (= still to annotate);
    * ``out_dir/<tile_name>.geojson``: the repaired building polygons clipped to the tile, in
      ``grid.crs`` (declared in a ``crs`` member), properties ``class=8``, ``class_name="building"``;
      importable as is with :func:`import_annotation`;
    * ``out_dir/<tile_name>_image.tif``: a hard link to ``image_path`` (a copy across file systems).

    ``footprints=None`` (or empty) writes an all-0 label and an empty collection.  ``start`` (a class-id array
    on ``grid``: the classes a source labels, where it does) is the pre-annotation's start: its classes where it
    has one, the buildings elsewhere, and the GeoJSON holds every class's polygons (:func:`class_polygons`).
    Returns
    ``{"tile": tile_name, "buildings": <clipped polygons>, "building_pixels": <pixels of class 8>,
    "repaired_polygons": n, "dropped_polygons": n}`` (:func:`clip_footprints_counted`).
    Keep ``out_dir`` apart from the folder of finished annotations: :func:`find_annotation` refuses a
    tile with two annotation files.
    """
    out_dir = Path(out_dir)
    geoms, counts = clip_footprints_counted(footprints, grid)
    mask = burn([(g, BUILDING) for g in geoms], grid)
    features = [(g, BUILDING_PROPS) for g in geoms]
    if start is not None:
        mask = np.where(start > 0, start, mask).astype(np.uint8)
        features = class_polygons(mask, grid)
    write_label(mask, grid, out_dir / f"{tile_name}.tif")
    _write_geojson(features, grid.crs, out_dir / f"{tile_name}.geojson")
    _link_or_copy(Path(image_path), out_dir / f"{tile_name}_image.tif")
    return {"tile": tile_name, "buildings": len(geoms), "building_pixels": int((mask == BUILDING).sum()),
            **counts}
