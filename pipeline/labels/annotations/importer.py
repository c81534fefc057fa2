"""Finding a tile's finished annotation and reading it onto the tile grid (module policies: the package
docstring).  Vector files go to :mod:`.vector`; raster files are aligned to the tile here, then decoded
as class ids (:mod:`.index`) or class colours (:mod:`.palette`)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from pipeline.constants import NUM_CLASSES, UNLABELLED
from pipeline.errors import AnnotationRejected
from pipeline.labels.annotations.grid import TileGrid, apply_affine
from pipeline.labels.annotations.index import index_to_ids
from pipeline.labels.annotations.palette import expand_colour_table, palette_to_ids
from pipeline.labels.annotations.vector import import_vector
from pipeline.sources.footprints import crs_string, same_crs
from pipeline.sources.localfs import file_problem, raster_driver

#: Relative tolerance on the scale/rotation coefficients when comparing a raster's grid to the tile's.
REL_TOL = 1e-6
#: How far (in pixels) the tile origin may be from a whole source pixel and still count as aligned.
PIXEL_TOL = 1e-3

#: Annotation file suffixes, in the order :func:`find_annotation` lists them.
ANNOTATION_SUFFIXES: tuple[str, ...] = (".geojson", ".gpkg", ".tif", ".tiff", ".png")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg")
RASTER_SUFFIXES = (".tif", ".tiff", ".png")


def find_annotation(done_dir: Path, tile_name: str) -> Path | None:
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
    why = file_problem(path)
    if why is not None:
        raise AnnotationRejected(str(path), why)
    if suffix in VECTOR_SUFFIXES:
        labels, report = import_vector(path, grid)
    elif suffix in RASTER_SUFFIXES:
        labels, report = _import_raster(path, grid)
    else:
        raise AnnotationRejected(
            str(path), f"unknown annotation format {suffix or '(no extension)'!r}: expected one of "
            + ", ".join(VECTOR_SUFFIXES + RASTER_SUFFIXES))
    report.update(_class_stats(labels))
    return labels, report


def _aligned_window(src: rasterio.io.DatasetReader, grid: TileGrid, f: str) -> Window:
    """The window of ``src`` that is exactly the tile, or AnnotationRejected "grid does not align"."""
    if not same_crs(src.crs.to_wkt(), grid.crs):
        raise AnnotationRejected(
            f, f"grid does not align: CRS {crs_string(src.crs.to_wkt())} differs from tile CRS {grid.crs}")
    st, gt = src.transform, grid.affine
    scale = max(abs(gt.a), abs(gt.b), abs(gt.d), abs(gt.e))
    for name in ("a", "b", "d", "e"):
        if abs(getattr(st, name) - getattr(gt, name)) > REL_TOL * scale:
            raise AnnotationRejected(
                f, f"grid does not align: pixel size/rotation ({st.a:.9g}, {st.b:.9g}, {st.d:.9g}, {st.e:.9g}) "
                f"differs from the tile's ({gt.a:.9g}, {gt.b:.9g}, {gt.d:.9g}, {gt.e:.9g})")
    col, row = apply_affine(~st, gt.c, gt.f)
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


def _read_raster(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    """The tile's window of a raster annotation (aligned, or a raster without CRS of the tile's shape) and
    what decoding needs: ``{"count", "nodata", "colormap" (palette PNGs only), "georeferenced", "window"}``."""
    f = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, driver=raster_driver(path) or "PNG") as src:
                georef = src.crs is not None
                if georef:
                    window: Window | None = _aligned_window(src, grid, f)
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
    return data, {"count": count, "nodata": nodata, "colormap": cmap, "georeferenced": georef, "window": window}


def _import_raster(path: Path, grid: TileGrid) -> tuple[np.ndarray, dict[str, Any]]:
    f = str(path)
    data, info = _read_raster(path, grid)
    count, window = info["count"], info["window"]
    if info["colormap"] is not None:  # palette PNG: expand through its colour table, then match colours
        labels = palette_to_ids(expand_colour_table(data[0], info["colormap"])[:3], None, f)
        fmt = "palette"
    elif count == 1:
        labels = index_to_ids(data[0], info["nodata"], f)
        fmt = "index"
    elif count in (3, 4):
        if data.dtype != np.uint8:
            raise AnnotationRejected(f, f"palette raster has data type {data.dtype}, expected uint8")
        labels = palette_to_ids(data[:3], data[3] if count == 4 else None, f)
        fmt = "palette"
    else:
        raise AnnotationRejected(f, f"{count} bands: expected 1 (class ids) or 3/4 (RGB/RGBA class colours)")
    report = {
        "format": fmt,
        "repaired_polygons": 0,
        "georeferenced": info["georeferenced"],
        "window": None if window is None else [int(window.col_off), int(window.row_off),
                                               int(window.width), int(window.height)],
    }
    return labels, report
