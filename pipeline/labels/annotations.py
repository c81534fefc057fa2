"""Building pre-annotations for annotators, and import of their finished land-cover annotations.

Everything here works on one *tile grid* (:class:`TileGrid`: CRS, affine transform, width, height), i.e.
the grid of one tile record of ``tiles.json``.  Pure functions, no Luigi.

Policies
--------

Rasterisation (footprints and vector annotations)
    ``all_touched=False``: a pixel takes a polygon's class when the pixel *centre* lies inside the
    polygon (GDAL's default rule).  For buildings at 0.3-0.5 m this is area-unbiased for large
    polygons (edge pixels half in / half out cancel on average), but polygons narrower than about one
    pixel can vanish or fragment (a 0.4 m wide shed, a thin wall).  ``all_touched=True`` instead burns
    every pixel the outline touches: nothing vanishes, but every building grows by about half a pixel
    on each side, an area bias of about ``perimeter * gsd / 2`` (a 10 x 10 m building at 0.3 m gains
    about 6 m2, +6 %), and neighbouring buildings merge.  Labels must not be inflated, so the pipeline
    uses the centre rule; ``rasterize_footprints`` offers ``all_touched`` for callers that prefer recall.

Repair
    Invalid polygons (self-intersections such as a bow-tie, ring crossings) are repaired with
    ``shapely.make_valid`` and only the polygonal parts of the result are kept; each repaired feature is
    counted in the report's ``repaired_polygons``.  A feature with nothing polygonal left after repair,
    an empty or missing geometry, or a non-polygonal geometry (point, line) rejects the whole file.
    Footprints (input to the pre-annotation) are repaired the same way, but unusable ones are dropped
    rather than rejected: they are machine input, not an annotator's work.

Vector annotations (``.geojson``/``.json``/``.gpkg``)
    The class attribute is the first of the columns ``class``, ``class_id``, ``class_name``, ``label``
    (column names compared case-insensitively) that the file has.  A value may be an integer id 1..8
    (ints, integral floats or digit strings) or a class name: a release name (``building``,
    ``developed space``/``developed_space``, ...) or an OpenEarthMap code name (``Bareland``, ``Grass``,
    ``Pavement``, ``Road``, ``Tree``, ``Water``, ``Cropland``, ``buildings``), case-insensitive, ``_``/``-``
    read as spaces.  Unknown names, ids outside 1..8 and missing values reject the file, naming them.
    CRS: a file that declares one is reprojected to the grid CRS.  A GeoJSON without a ``crs`` member is
    lon/lat WGS 84 by RFC 7946 when its coordinates are valid lon/lat; otherwise (and for a GeoPackage
    with an undefined SRS) the file has *no CRS*, and its coordinates are taken in the grid CRS only when
    they all fall inside the tile bounds (one pixel of slack), else the file is rejected
    ("no CRS and coordinates do not match the tile").  Polygons that do not intersect the tile are
    dropped and counted (``outside_polygons``) -- a file may cover several tiles -- but a file none of
    whose polygons intersects the tile is rejected ("extent does not overlap the tile").
    Overlaps are resolved by a fixed class priority, independent of feature order (editors reorder
    features freely): building > road > water > tree > developed space > agriculture land > rangeland
    > bareland (:data:`OVERLAP_PRIORITY`); small, thin objects win over the large background polygons
    they are usually drawn on top of.  Pixels no polygon covers are 0 (unlabelled).

Raster annotations (``.tif``/``.tiff``/``.png``)
    One band = *index* raster of class ids 0..8 (a TIFF colour table is ignored; pixels equal to the
    file's declared nodata read as 0); any other value rejects the file, naming the values and their
    pixel counts.  A one-band PNG with a colour palette is expanded through its palette and treated as
    a palette raster (paint programs order palettes arbitrarily).  Three bands (RGB) or four (RGBA) =
    *palette* raster in :data:`pipeline.scene.CLASS_COLORS`, black ``#000000`` = 0 unlabelled.
    Colour matching is **exact** (no tolerance): PNG and TIFF are lossless, so a correctly painted
    label has exact colours; off colours come from anti-aliased brushes, resampling or JPEG round
    trips, and they sit on class boundaries, where a nearest-colour guess is wrong as often as right.
    Any other colour rejects the file, naming each colour (``#RRGGBB``) and its pixel count.  With an
    alpha band, alpha 0 means unlabelled whatever the colour, alpha 255 is matched, other alpha values
    reject the file.  JPEG is not accepted.
    Alignment: a raster with a CRS must be on the tile grid: the same CRS, scale/rotation coefficients
    equal within 1e-6 relative (:data:`REL_TOL`), and the tile origin on a whole source pixel (within
    1e-3 pixel, :data:`PIXEL_TOL`) such that the tile window lies inside the raster; that window is
    read.  Otherwise "grid does not align".  A raster without CRS (a plain PNG, a TIFF without
    georeference) takes the tile grid only when its shape equals the tile shape exactly, else
    "shape WxH differs from tile WxH" (width x height).

Every bad annotation raises :class:`pipeline.errors.AnnotationRejected` ``(file, reason)``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from pipeline.atomic import atomic_path
from pipeline.errors import AnnotationRejected
from pipeline.sources.footprints import crs_string, polygonal
from pipeline.scene import BUILDING, CLASS_COLORS, CLASS_NAMES, NUM_CLASSES, UNLABELLED

#: Relative tolerance on the scale/rotation coefficients when comparing a raster's grid to the tile's.
REL_TOL = 1e-6
#: How far (in pixels) the tile origin may be from a whole source pixel and still count as aligned.
PIXEL_TOL = 1e-3
#: Slack (in pixels) around the tile bounds for a vector file without CRS to be taken in the grid CRS.
NO_CRS_SLACK_PX = 1.0

#: Overlapping vector polygons: the class earlier in this list wins.
OVERLAP_PRIORITY: tuple[int, ...] = (8, 4, 6, 5, 3, 7, 2, 1)

#: Columns holding the class of a vector feature, in order of preference (compared case-insensitively).
CLASS_COLUMNS: tuple[str, ...] = ("class", "class_id", "class_name", "label")

#: Annotation file suffixes, in the order :func:`find_annotation` lists them.
ANNOTATION_SUFFIXES: tuple[str, ...] = (".geojson", ".gpkg", ".tif", ".tiff", ".png")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg")
RASTER_SUFFIXES = (".tif", ".tiff", ".png")

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

#: Building pre-annotation vector properties.
BUILDING_PROPS = {"class": BUILDING, "class_name": CLASS_NAMES[BUILDING]}


def _norm_name(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


#: Normalised class name -> id (release names and OEM code names).
NAME_TO_ID: dict[str, int] = {**{_norm_name(v): k for k, v in CLASS_NAMES.items()}, **OEM_CODE_NAMES}


# --------------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class TileGrid:
    """The pixel grid of one tile: ``crs`` (any string pyproj/rasterio accept, e.g. ``"EPSG:32633"``),
    ``transform`` (rasterio's affine coefficients a, b, c, d, e, f: pixel (col, row) -> CRS x, y of
    the pixel's upper-left corner), ``width`` and ``height`` in pixels."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def __post_init__(self) -> None:
        if len(self.transform) != 6:
            raise ValueError(f"transform needs 6 coefficients, got {len(self.transform)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"tile shape must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_tile_record(cls, rec: dict[str, Any]) -> "TileGrid":
        """The grid of a ``tiles.json`` record: ``crs``, ``transform`` (first 6 coefficients) and the
        width/height from ``window`` = ``[col_off, row_off, width, height]``."""
        t = tuple(float(v) for v in list(rec["transform"])[:6])
        w, h = rec["window"][2:4]
        return cls(crs=str(rec["crs"]), transform=t, width=int(w), height=int(h))  # type: ignore[arg-type]

    @classmethod
    def from_raster(cls, path: str | Path) -> "TileGrid":
        """The grid of an existing georeferenced raster (e.g. a tile image)."""
        with rasterio.open(path) as src:
            if src.crs is None:
                raise ValueError(f"{path}: raster has no CRS")
            return cls(crs=crs_string(src.crs.to_wkt()), transform=tuple(src.transform)[:6],  # type: ignore[arg-type]
                       width=src.width, height=src.height)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, numpy order."""
        return (self.height, self.width)

    @property
    def footprint(self) -> Polygon:
        """The tile's outline in its CRS (exact also for rotated transforms)."""
        a = self.affine
        w, h = self.width, self.height
        corners = [_apply(a, 0, 0), _apply(a, w, 0), _apply(a, w, h), _apply(a, 0, h)]
        return Polygon(corners)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the tile in its CRS."""
        return tuple(float(v) for v in self.footprint.bounds)  # type: ignore[return-value]

    @property
    def pixel_size(self) -> float:
        """Length of a pixel side in CRS units (of the first axis)."""
        a, b = self.transform[0], self.transform[1]
        return math.hypot(a, self.transform[3]) or math.hypot(b, self.transform[4])


def _apply(t: Affine, col: float, row: float) -> tuple[float, float]:
    """``t`` applied to (col, row), written out (affine's ``*`` on tuples is being deprecated)."""
    return (t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f)


def _same_crs(a: Any, b: Any) -> bool:
    """Whether two CRS definitions are the same (axis order ignored; CRS84 == EPSG:4326)."""
    if isinstance(a, RioCRS):
        a = a.to_wkt()
    if isinstance(b, RioCRS):
        b = b.to_wkt()
    ca, cb = CRS.from_user_input(a), CRS.from_user_input(b)
    if ca.equals(cb, ignore_axis_order=True):
        return True
    return {ca.to_string(), cb.to_string()} <= {"EPSG:4326", "OGC:CRS84"}


# ------------------------------------------------------------------------------------- footprints
def clip_footprints(footprints: Optional[gpd.GeoDataFrame], grid: TileGrid) -> list[BaseGeometry]:
    """The building polygons of ``footprints`` in ``grid.crs``, repaired and clipped to the tile.

    Footprints without CRS are taken to be in ``grid.crs``.  Invalid polygons are repaired with
    ``make_valid``; geometries with nothing polygonal left, and polygons that do not reach into the
    tile (or only touch its edge), are dropped.  Order of the input rows is kept.
    """
    if footprints is None or len(footprints) == 0:
        return []
    gdf = footprints
    if gdf.crs is not None and not _same_crs(gdf.crs, grid.crs):
        gdf = gdf.to_crs(grid.crs)
    tile = grid.footprint
    out: list[BaseGeometry] = []
    for geom in gdf.geometry:
        g = polygonal(geom)
        if g is None or not g.intersects(tile):
            continue
        g = polygonal(g.intersection(tile))
        if g is not None and g.area > 0:
            out.append(g)
    return out


def rasterize_footprints(
    footprints: Optional[gpd.GeoDataFrame], grid: TileGrid, *, all_touched: bool = False
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
    return _burn([(g, 1) for g in geoms], grid, all_touched=all_touched)


def _burn(shapes: Sequence[tuple[BaseGeometry, int]], grid: TileGrid, *, all_touched: bool = False) -> np.ndarray:
    if not shapes:
        return np.zeros(grid.shape, dtype=np.uint8)
    return rasterio.features.rasterize(
        [(mapping(g), int(v)) for g, v in shapes],
        out_shape=grid.shape,
        transform=grid.affine,
        fill=UNLABELLED,
        all_touched=all_touched,
        dtype="uint8",
    )


# --------------------------------------------------------------------------------------- writing
def _colormap() -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (0, 0, 0, 255) for i in range(256)}
    for k, (r, g, b) in CLASS_COLORS.items():
        cmap[k] = (r, g, b, 255)
    return cmap


def write_label(array: np.ndarray, grid: TileGrid, path: str | Path) -> None:
    """Write a class-id array as a 1-band ``uint8`` GeoTIFF on ``grid``, atomically.

    DEFLATE-compressed; tiled with 256 x 256 blocks when both sides are at least 256 pixels, striped
    otherwise (small rasters gain nothing from tiling); no nodata value (0 is the class "unlabelled");
    the class palette is stored as colour table for viewing.  ``array`` must have ``grid.shape`` and
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
            dst.write_colormap(1, _colormap())


def _crs_member(crs: str) -> dict[str, Any]:
    c = CRS.from_user_input(crs)
    auth = c.to_authority()
    name = f"urn:ogc:def:crs:{auth[0]}::{auth[1]}" if auth else c.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _write_geojson(geoms: Iterable[BaseGeometry], crs: str, props: dict[str, Any], path: Path) -> None:
    """Write polygons as a GeoJSON FeatureCollection with a ``crs`` member, atomically, deterministic."""
    feats = [
        {"type": "Feature", "id": i, "properties": dict(props), "geometry": mapping(g)}
        for i, g in enumerate(geoms)
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
    footprints: Optional[gpd.GeoDataFrame],
    out_dir: Path,
) -> dict[str, Any]:
    """Write the building pre-annotation of one tile for the annotators, each file atomically:

    * ``out_dir/<tile_name>.tif``: 1-band uint8 GeoTIFF on ``grid`` (:func:`write_label`), 8 (building)
      where footprints cover the pixel centre, 0 elsewhere (= still to annotate);
    * ``out_dir/<tile_name>.geojson``: the repaired building polygons clipped to the tile, in
      ``grid.crs`` (declared in a ``crs`` member), properties ``class=8``, ``class_name="building"``;
      importable as is with :func:`import_annotation`;
    * ``out_dir/<tile_name>_image.tif``: a hard link to ``image_path`` (a copy across file systems).

    ``footprints=None`` (or empty) writes an all-0 label and an empty collection.  Returns
    ``{"tile": tile_name, "buildings": <clipped polygons>, "building_pixels": <pixels of class 8>}``.
    Keep ``out_dir`` apart from the folder of finished annotations: :func:`find_annotation` refuses a
    tile with two annotation files.
    """
    out_dir = Path(out_dir)
    geoms = clip_footprints(footprints, grid)
    mask = _burn([(g, BUILDING) for g in geoms], grid)
    write_label(mask, grid, out_dir / f"{tile_name}.tif")
    _write_geojson(geoms, grid.crs, BUILDING_PROPS, out_dir / f"{tile_name}.geojson")
    _link_or_copy(Path(image_path), out_dir / f"{tile_name}_image.tif")
    return {"tile": tile_name, "buildings": len(geoms), "building_pixels": int((mask == BUILDING).sum())}


# --------------------------------------------------------------------------------------- finding
def find_annotation(done_dir: Path, tile_name: str) -> Optional[Path]:
    """The finished annotation of ``tile_name`` in ``done_dir``: ``<tile_name>`` + one of
    :data:`ANNOTATION_SUFFIXES` (suffix case-insensitive), or ``None`` when there is none (or no folder).

    Two or more candidates raise AnnotationRejected ``"several annotation files: ..."`` listing them
    in the order ``.geojson, .gpkg, .tif, .tiff, .png`` (then by name) -- which one the annotator meant
    is not guessed.
    """
    done_dir = Path(done_dir)
    if not done_dir.is_dir():
        return None
    rank = {s: i for i, s in enumerate(ANNOTATION_SUFFIXES)}
    found = sorted(
        (p for p in done_dir.iterdir()
         if p.is_file() and p.stem == tile_name and p.suffix.lower() in rank),
        key=lambda p: (rank[p.suffix.lower()], p.name),
    )
    if not found:
        return None
    if len(found) > 1:
        raise AnnotationRejected(str(done_dir / tile_name),
                                 "several annotation files: " + ", ".join(p.name for p in found))
    return found[0]


# -------------------------------------------------------------------------------------- importing
def _class_stats(arr: np.ndarray) -> dict[str, Any]:
    counts = np.bincount(arr.ravel(), minlength=NUM_CLASSES + 1)
    return {
        "class_pixels": {str(k): int(counts[k]) for k in range(1, NUM_CLASSES + 1)},
        "unlabelled_pixels": int(counts[UNLABELLED]),
    }


def import_annotation(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a finished annotation onto ``grid``: ``(labels, report)``.

    ``labels`` is a ``uint8`` ``(height, width)`` array of class ids 0..8 (0 = unlabelled).  ``report``
    has ``format`` (``"vector"``, ``"index"`` or ``"palette"``), ``repaired_polygons``, ``class_pixels``
    ``{"1": n, ... "8": n}``, ``unlabelled_pixels`` and format details (vector: ``features``,
    ``outside_polygons``, ``class_attribute``, ``crs_source`` in ``"file"``/``"rfc7946"``/``"tile"``;
    raster: ``georeferenced``, ``window`` = ``[col_off, row_off, width, height]`` read, or ``None``).
    Formats and policies: see the module docstring.  Raises AnnotationRejected(path, reason).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise AnnotationRejected(str(path), "file does not exist")
    if suffix in VECTOR_SUFFIXES:
        labels, report = _import_vector(path, grid)
    elif suffix in RASTER_SUFFIXES:
        labels, report = _import_raster(path, grid)
    else:
        raise AnnotationRejected(
            str(path), f"unknown annotation format {suffix or '(no extension)'!r}: expected one of "
            + ", ".join(VECTOR_SUFFIXES + RASTER_SUFFIXES))
    report.update(_class_stats(labels))
    return labels, report


# vector ------------------------------------------------------------------------------------------
def _class_id(value: Any) -> tuple[Optional[int], Optional[str]]:
    """``(id, None)`` or ``(None, problem)`` for one class attribute value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, "no class value"
    if isinstance(value, (bool, np.bool_)):
        return None, f"class value {value!r} is not a class"
    if isinstance(value, (int, np.integer, float, np.floating)):
        if float(value) != int(value):
            return None, f"class id {value!r} is not an integer"
        cid = int(value)
    else:
        text = str(value).strip()
        if text.lstrip("+-").isdigit():
            cid = int(text)
        else:
            cid = NAME_TO_ID.get(_norm_name(text), -1)
            if cid < 0:
                return None, f"unknown class name {text!r}"
            return cid, None
    if not 1 <= cid <= NUM_CLASSES:
        return None, f"class id {cid} is not in 1..{NUM_CLASSES}"
    return cid, None


def _summarise(problems: dict[str, list[int]], limit: int = 10) -> str:
    parts = []
    for msg, rows in sorted(problems.items(), key=lambda kv: (kv[1][0], kv[0]))[:limit]:
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        parts.append(f"{msg} (feature{'s' if len(rows) > 1 else ''} {shown})")
    more = len(problems) - limit
    return "; ".join(parts) + (f"; and {more} more problems" if more > 0 else "")


def _geojson_declares_crs(path: Path) -> Optional[bool]:
    """Whether a GeoJSON text has a top-level ``crs`` member (``None`` when it is not JSON)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return isinstance(doc, dict) and doc.get("crs") is not None


def _looks_lonlat(bounds: Sequence[float]) -> bool:
    minx, miny, maxx, maxy = bounds
    return -180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0


def _import_vector(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    f = str(path)
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise several types for a bad file
        raise AnnotationRejected(f, f"unreadable vector file: {exc}") from exc
    if len(gdf) == 0:
        raise AnnotationRejected(f, "no features")
    cols = {str(c).lower(): c for c in gdf.columns if c != gdf.geometry.name}
    col = next((cols[c] for c in CLASS_COLUMNS if c in cols), None)
    if col is None:
        raise AnnotationRejected(
            f, "no class attribute (expected a column " + ", ".join(CLASS_COLUMNS)
            + "; found: " + (", ".join(sorted(map(str, cols.values()))) or "none") + ")")

    # Geometry and class of every feature; collect all problems before rejecting.
    problems: dict[str, list[int]] = {}
    shapes: list[tuple[BaseGeometry, int, int]] = []  # (geometry, class id, row)
    repaired = 0
    for i, (geom, value) in enumerate(zip(gdf.geometry, gdf[col])):
        cid, problem = _class_id(value)
        if problem:
            problems.setdefault(problem, []).append(i)
        if geom is None or geom.is_empty:
            problems.setdefault("no geometry", []).append(i)
            continue
        if not isinstance(geom, (Polygon, MultiPolygon)):
            problems.setdefault(f"{geom.geom_type} is not a polygon", []).append(i)
            continue
        if not geom.is_valid:
            why = shapely.is_valid_reason(geom)
            fixed = polygonal(geom)
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

    # CRS: declared -> reproject; undeclared -> lon/lat (RFC 7946) or the tile's own coordinates.
    bounds = tuple(float(v) for v in shapely.total_bounds([g for g, _, _ in shapes]))
    declared = gdf.crs is not None
    if path.suffix.lower() in (".geojson", ".json"):
        declared = bool(_geojson_declares_crs(path))
    if declared:
        src_crs, crs_source = gdf.crs, "file"
    elif path.suffix.lower() in (".geojson", ".json") and _looks_lonlat(bounds):
        src_crs, crs_source = "EPSG:4326", "rfc7946"
    else:
        slack = NO_CRS_SLACK_PX * grid.pixel_size
        tminx, tminy, tmaxx, tmaxy = grid.bounds
        minx, miny, maxx, maxy = bounds
        if not (minx >= tminx - slack and miny >= tminy - slack and maxx <= tmaxx + slack and maxy <= tmaxy + slack):
            raise AnnotationRejected(
                f, f"no CRS and coordinates do not match the tile: file bounds {_fmt_bounds(bounds)}, "
                f"tile bounds {_fmt_bounds(grid.bounds)} in {grid.crs}")
        src_crs, crs_source = grid.crs, "tile"
    geoms = [g for g, _, _ in shapes]
    if not _same_crs(src_crs, grid.crs):
        try:
            geoms = list(gpd.GeoSeries(geoms, crs=src_crs).to_crs(grid.crs))
        except Exception as exc:  # noqa: BLE001 - pyproj errors
            raise AnnotationRejected(f, f"cannot reproject from {crs_string(src_crs)} to {grid.crs}: {exc}") from exc

    tile = grid.footprint
    inside: list[tuple[BaseGeometry, int, int]] = []
    for g, (_, cid, i) in zip(geoms, shapes):
        g = polygonal(g)  # reprojection can (rarely) invalidate a polygon; repair so intersects() is reliable
        if g is not None and g.intersects(tile) and not g.touches(tile):
            inside.append((g, cid, i))
    if not inside:
        rb = tuple(float(v) for v in shapely.total_bounds(geoms)) if geoms else bounds
        raise AnnotationRejected(
            f, f"extent does not overlap the tile: file bounds {_fmt_bounds(rb)}, "
            f"tile bounds {_fmt_bounds(grid.bounds)} in {grid.crs}")

    # Overlaps: lowest priority burnt first, so higher priority classes overwrite it.
    rank = {c: r for r, c in enumerate(OVERLAP_PRIORITY)}
    ordered = sorted(inside, key=lambda s: (-rank[s[1]], s[2]))
    labels = _burn([(g, cid) for g, cid, _ in ordered], grid)
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


# raster ------------------------------------------------------------------------------------------
def _aligned_window(src: rasterio.io.DatasetReader, grid: TileGrid, f: str) -> Window:
    """The window of ``src`` that is exactly the tile, or AnnotationRejected "grid does not align"."""
    if not _same_crs(src.crs.to_wkt(), grid.crs):
        raise AnnotationRejected(
            f, f"grid does not align: CRS {crs_string(src.crs.to_wkt())} differs from tile CRS {grid.crs}")
    st, gt = src.transform, grid.affine
    scale = max(abs(gt.a), abs(gt.b), abs(gt.d), abs(gt.e))
    for name in ("a", "b", "d", "e"):
        if abs(getattr(st, name) - getattr(gt, name)) > REL_TOL * scale:
            raise AnnotationRejected(
                f, f"grid does not align: pixel size/rotation ({st.a:.9g}, {st.b:.9g}, {st.d:.9g}, {st.e:.9g}) "
                f"differs from the tile's ({gt.a:.9g}, {gt.b:.9g}, {gt.d:.9g}, {gt.e:.9g})")
    col, row = _apply(~st, gt.c, gt.f)
    rc, rr = round(col), round(row)
    if abs(col - rc) > PIXEL_TOL or abs(row - rr) > PIXEL_TOL:
        raise AnnotationRejected(
            f, f"grid does not align: the tile origin falls at source pixel ({col:.4f}, {row:.4f}), "
            "not on a whole pixel")
    if rc < 0 or rr < 0 or rc + grid.width > src.width or rr + grid.height > src.height:
        raise AnnotationRejected(
            f, f"grid does not align: the tile window [{rc}, {rr}, {grid.width}, {grid.height}] is not inside "
            f"the {src.width}x{src.height} raster")
    return Window(rc, rr, grid.width, grid.height)


def _hexes(codes: np.ndarray, counts: np.ndarray, limit: int = 10) -> str:
    order = sorted(range(len(codes)), key=lambda k: (-int(counts[k]), int(codes[k])))
    parts = [f"#{int(codes[k]):06X} ({int(counts[k])} px)" for k in order[:limit]]
    more = len(order) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _palette_to_ids(rgb: np.ndarray, alpha: Optional[np.ndarray], f: str) -> np.ndarray:
    """Exact colour match of a ``(3, h, w)`` uint8 array to the class colours (black = 0)."""
    codes = (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2].astype(np.uint32)
    if alpha is not None:
        semi = (alpha != 0) & (alpha != 255)
        if semi.any():
            raise AnnotationRejected(f, f"{int(semi.sum())} semi-transparent pixels (alpha not 0 or 255)")
        codes = np.where(alpha == 0, np.uint32(0), codes)
    known = {0: UNLABELLED, **{(r << 16) | (g << 8) | b: k for k, (r, g, b) in CLASS_COLORS.items()}}
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    bad = np.array([int(c) not in known for c in uniq], dtype=bool)
    if bad.any():
        raise AnnotationRejected(f, "unknown colours (not a class colour or black): " + _hexes(uniq[bad], counts[bad]))
    lut = np.array([known[int(c)] for c in uniq], dtype=np.uint8)
    return lut[inverse.reshape(codes.shape)]


def _index_to_ids(band: np.ndarray, nodata: Optional[float], f: str) -> np.ndarray:
    if band.dtype.kind not in "uif":
        raise AnnotationRejected(f, f"index raster has data type {band.dtype}, expected integers 0..{NUM_CLASSES}")
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        band = np.where(band == nodata, 0, band)
    uniq, counts = np.unique(band, return_counts=True)
    ok = (uniq >= 0) & (uniq <= NUM_CLASSES) & (np.floor(uniq) == uniq) if band.dtype.kind == "f" else \
        (uniq >= 0) & (uniq <= NUM_CLASSES)
    if not ok.all():
        vals = [(v, int(c)) for v, c in zip(uniq[~ok].tolist(), counts[~ok])]
        vals.sort(key=lambda vc: (-vc[1], str(vc[0])))
        shown = ", ".join(f"{_num(v)} ({c} px)" for v, c in vals[:10])
        more = len(vals) - 10
        raise AnnotationRejected(
            f, f"values outside 0..{NUM_CLASSES}: {shown}" + (f" and {more} more" if more > 0 else ""))
    return band.astype(np.uint8)


def _num(v: Any) -> str:
    return str(int(v)) if float(v) == int(v) else repr(float(v))


def _import_raster(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    f = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                georef = src.crs is not None
                if georef:
                    window: Optional[Window] = _aligned_window(src, grid, f)
                else:
                    if (src.width, src.height) != (grid.width, grid.height):
                        raise AnnotationRejected(
                            f, f"shape {src.width}x{src.height} differs from tile {grid.width}x{grid.height}")
                    window = None
                data = src.read(window=window)
                count, driver = src.count, src.driver
                interp = src.colorinterp
                nodata = src.nodata
                cmap = src.colormap(1) if count == 1 and interp[0].name == "palette" and driver == "PNG" else None
    except AnnotationRejected:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        raise AnnotationRejected(f, f"unreadable raster: {exc}") from exc

    if cmap is not None:  # palette PNG: expand through its colour table, then match colours
        lut = np.zeros((256, 4), dtype=np.uint8)
        for k, rgba in cmap.items():
            lut[k] = rgba[:4] if len(rgba) >= 4 else (*rgba[:3], 255)
        rgba = np.moveaxis(lut[data[0]], -1, 0)
        labels = _palette_to_ids(rgba[:3], None, f)
        fmt = "palette"
    elif count == 1:
        labels = _index_to_ids(data[0], nodata, f)
        fmt = "index"
    elif count in (3, 4):
        if data.dtype != np.uint8:
            raise AnnotationRejected(f, f"palette raster has data type {data.dtype}, expected uint8")
        labels = _palette_to_ids(data[:3], data[3] if count == 4 else None, f)
        fmt = "palette"
    else:
        raise AnnotationRejected(f, f"{count} bands: expected 1 (class ids) or 3/4 (RGB/RGBA class colours)")
    report = {
        "format": fmt,
        "repaired_polygons": 0,
        "georeferenced": georef,
        "window": None if window is None else [int(window.col_off), int(window.row_off),
                                               int(window.width), int(window.height)],
    }
    return labels, report
