"""Vector annotations (``.geojson`` / ``.json`` / ``.gpkg``): class attribute, CRS, repair, overlaps
(policies: the package docstring, "Vector annotations")."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline.constants import CLASS_NAMES, NUM_CLASSES
from pipeline.errors import AnnotationRejected
from pipeline.labels.annotations.grid import TileGrid, burn
from pipeline.sources.footprints import crs_string, repair_polygons, same_crs
from pipeline.sources.localfs import file_problem, vector_problem

#: Slack (in pixels) around the tile bounds for a vector file without CRS to be taken in the grid CRS.
NO_CRS_SLACK_PX = 1.0

#: Overlapping vector polygons: the class earlier in this list wins.
OVERLAP_PRIORITY: tuple[int, ...] = (8, 4, 6, 5, 3, 7, 2, 1)

#: Columns holding the class of a vector feature, in order of preference (compared case-insensitively).
CLASS_COLUMNS: tuple[str, ...] = ("class", "class_id", "class_name", "label")

#: OpenEarthMap code names of the classes (as in the OEM class list), besides :data:`CLASS_NAMES`.
OEM_CODE_NAMES: dict[str, int] = {
    "bareland": 1,
    "grass": 2,
    "pavement": 3,
    "road": 4,
    "tree": 5,
    "water": 6,
    "cropland": 7,
    "buildings": 8,
}



def _norm_name(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


#: Normalised class name -> id (release names and OEM code names).
NAME_TO_ID: dict[str, int] = {**{_norm_name(v): k for k, v in CLASS_NAMES.items()}, **OEM_CODE_NAMES}


def _shown(value: Any, limit: int = 24) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "(a huge number)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _class_id(value: Any) -> tuple[int | None, str | None]:
    """``(id, None)`` or ``(None, problem)`` for one class attribute value.  Never raises: NaN, ±inf,
    huge numbers, 5000-digit strings and non-ASCII digits are problems like any other bad value."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None, "no class value"
    if isinstance(value, (bool, np.bool_)):
        return None, f"class value {value!r} is not a class"
    if isinstance(value, (int, np.integer, float, np.floating)):
        number = float(value) if not isinstance(value, (int, np.integer)) else None
        if number is not None and not math.isfinite(number):
            return None, f"class id {_shown(value)} is not a finite number"
        if number is not None and not number.is_integer():
            return None, f"class id {_shown(value)} is not an integer"
        cid = int(value) if number is None or abs(number) < 1e18 else NUM_CLASSES + 1
    else:
        text = str(value).strip()
        digits = text.lstrip("+-")
        if digits.isascii() and digits.isdigit():
            cid = int(text) if len(digits) <= 18 else NUM_CLASSES + 1
        else:
            cid = NAME_TO_ID.get(_norm_name(text[:64]), -1)
            if cid < 0:
                return None, f"unknown class name {_shown(text, 40)}"
            return cid, None
    if not 1 <= cid <= NUM_CLASSES:
        return None, f"class id {_shown(value)} is not in 1..{NUM_CLASSES}"
    return cid, None


def _summarise(problems: dict[str, list[int]], limit: int = 10) -> str:
    parts = []
    for msg, rows in sorted(problems.items(), key=lambda kv: (kv[1][0], kv[0]))[:limit]:
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        parts.append(f"{msg} (feature{'s' if len(rows) > 1 else ''} {shown})")
    more = len(problems) - limit
    return "; ".join(parts) + (f"; and {more} more problems" if more > 0 else "")


def _geojson_declares_crs(path: Path) -> bool | None:
    """Whether a GeoJSON text has a top-level ``crs`` member (``None`` when it is not JSON)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return isinstance(doc, dict) and doc.get("crs") is not None


def _looks_lonlat(bounds: Sequence[float]) -> bool:
    minx, miny, maxx, maxy = bounds
    return -180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0


Shape = tuple[BaseGeometry, int, int]  # (polygon, class id, feature row)


#: Largest vector annotation file read (bytes), and most vertices it may hold.
MAX_VECTOR_BYTES = 256 * 1024 * 1024
MAX_VECTOR_VERTICES = 5_000_000


def _read_features(path: Path) -> tuple[gpd.GeoDataFrame, Any]:
    """The features of a vector file and its class column; AnnotationRejected when unreadable, empty,
    without a class column, over :data:`MAX_VECTOR_BYTES` or :data:`MAX_VECTOR_VERTICES`."""
    f = str(path)
    why = file_problem(path, MAX_VECTOR_BYTES, "the vector annotation limit") or vector_problem(path)
    if why is not None:
        raise AnnotationRejected(f, why)
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise several types for a bad file
        raise AnnotationRejected(f, f"unreadable vector file: {exc}") from exc
    if len(gdf) == 0:
        raise AnnotationRejected(f, "no features")
    vertices = int(shapely.get_num_coordinates(gdf.geometry.values).sum())
    if vertices > MAX_VECTOR_VERTICES:
        raise AnnotationRejected(f, f"{vertices} vertices, over the limit of {MAX_VECTOR_VERTICES}")
    cols = {str(c).lower(): c for c in gdf.columns if c != gdf.geometry.name}
    col = next((cols[c] for c in CLASS_COLUMNS if c in cols), None)
    if col is None:
        raise AnnotationRejected(
            f, "no class attribute (expected a column " + ", ".join(CLASS_COLUMNS)
            + "; found: " + (", ".join(sorted(map(str, cols.values()))) or "none") + ")")
    return gdf, col


def _feature_shapes(gdf: gpd.GeoDataFrame, col: Any, f: str) -> tuple[list[Shape], int]:
    """``(shapes, repaired)``: every feature's 2-D polygon and class id, invalid polygons repaired.  All
    problems are collected first, then one AnnotationRejected lists them."""
    problems: dict[str, list[int]] = {}
    shapes: list[Shape] = []
    repaired = 0
    geoms = list(gdf.geometry)
    polygons = [g if isinstance(g, (Polygon, MultiPolygon)) and not g.is_empty else None for g in geoms]
    reasons = {i: shapely.is_valid_reason(g) for i, g in enumerate(polygons) if g is not None and not g.is_valid}
    fixes = repair_polygons([polygons[i] for i in reasons], f) if reasons else []  # bounded in time
    fixed_of = dict(zip(reasons, fixes))
    for i, (geom, value) in enumerate(zip(geoms, gdf[col])):
        cid, problem = _class_id(value)
        if problem:
            problems.setdefault(problem, []).append(i)
        if geom is None or geom.is_empty:
            problems.setdefault("no geometry", []).append(i)
            continue
        if not isinstance(geom, (Polygon, MultiPolygon)):
            problems.setdefault(f"{geom.geom_type} is not a polygon", []).append(i)
            continue
        if i in reasons:
            why, fixed = reasons[i], fixed_of[i]
            if fixed is None or fixed.area <= 0:
                problems.setdefault(f"invalid polygon ({why}) has nothing polygonal left after make_valid",
                                    []).append(i)
                continue
            repaired += 1
            geom = fixed
        else:
            geom = shapely.force_2d(geom)
        if cid is not None:
            shapes.append((geom, cid, i))
    if problems:
        raise AnnotationRejected(f, _summarise(problems))
    return shapes, repaired


def _source_crs(path: Path, gdf: gpd.GeoDataFrame, bounds: tuple[float, ...], grid: TileGrid) -> tuple[Any, str]:
    """``(crs, crs_source)``: declared -> the file's (``"file"``); undeclared -> lon/lat by RFC 7946
    (``"rfc7946"``) or the tile's own coordinates (``"tile"``), else AnnotationRejected."""
    declared = gdf.crs is not None
    if path.suffix.lower() in (".geojson", ".json"):
        declared = bool(_geojson_declares_crs(path))
    if declared:
        return gdf.crs, "file"
    if path.suffix.lower() in (".geojson", ".json") and _looks_lonlat(bounds):
        return "EPSG:4326", "rfc7946"
    slack = NO_CRS_SLACK_PX * grid.pixel_size
    tminx, tminy, tmaxx, tmaxy = grid.bounds
    minx, miny, maxx, maxy = bounds
    if not (minx >= tminx - slack and miny >= tminy - slack and maxx <= tmaxx + slack and maxy <= tmaxy + slack):
        raise AnnotationRejected(
            str(path), f"no CRS and coordinates do not match the tile: file bounds {_fmt_bounds(bounds)}, "
            f"tile bounds {_fmt_bounds(grid.bounds)} in {grid.crs}")
    return grid.crs, "tile"


def _in_tile(shapes: list[Shape], src_crs: Any, bounds: tuple[float, ...], grid: TileGrid, f: str
             ) -> list[Shape]:
    """The shapes reprojected to the grid CRS that reach into the tile; AnnotationRejected when none does."""
    geoms = [g for g, _, _ in shapes]
    if not same_crs(src_crs, grid.crs):
        try:
            geoms = list(gpd.GeoSeries(geoms, crs=src_crs).to_crs(grid.crs))
        except Exception as exc:  # noqa: BLE001 - pyproj errors
            raise AnnotationRejected(f, f"cannot reproject from {crs_string(src_crs)} to {grid.crs}: {exc}") from exc
    tile = grid.footprint
    inside: list[Shape] = []
    # reprojection can (rarely) invalidate a polygon; repaired (bounded in time) so intersects() is reliable
    for g, (_, cid, i) in zip(repair_polygons(geoms, f), shapes):
        if g is not None and g.intersects(tile) and not g.touches(tile):
            inside.append((g, cid, i))
    if not inside:
        rb = tuple(float(v) for v in shapely.total_bounds(geoms)) if geoms else bounds
        raise AnnotationRejected(
            f, f"extent does not overlap the tile: file bounds {_fmt_bounds(rb)}, "
            f"tile bounds {_fmt_bounds(grid.bounds)} in {grid.crs}")
    return inside


def import_vector(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    """Burn a vector annotation onto ``grid`` (package docstring, "Vector annotations"): ``(labels, report)``."""
    f = str(path)
    gdf, col = _read_features(path)
    shapes, repaired = _feature_shapes(gdf, col, f)
    bounds = tuple(float(v) for v in shapely.total_bounds([g for g, _, _ in shapes]))
    src_crs, crs_source = _source_crs(path, gdf, bounds, grid)
    inside = _in_tile(shapes, src_crs, bounds, grid, f)
    # Overlaps: lowest priority burnt first, so higher priority classes overwrite it.
    rank = {c: r for r, c in enumerate(OVERLAP_PRIORITY)}
    ordered = sorted(inside, key=lambda s: (-rank[s[1]], s[2]))
    labels = burn([(g, cid) for g, cid, _ in ordered], grid)
    report = {
        "format": "vector",
        "repaired_polygons": repaired,
        "features": len(gdf),
        "outside_polygons": len(shapes) - len(inside),
        "class_attribute": str(col),
        "crs_source": crs_source,
    }
    return labels, report


def _fmt_bounds(b: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in b) + "]"
