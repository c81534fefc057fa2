"""Tile lattice and windowed warping of a scene straight into 1024x1024 GeoTIFF image tiles.

Policies (see docs/ARCHITECTURE.md, "Tiling policy", "Tile records", "Label records"):

* **Lattice** (:func:`tile_lattice`): non-overlapping ``tile_size`` windows on the scene's UTM grid,
  centred in the grid (equal margins, the odd pixel going to the right / bottom).  Per axis there are
  ``floor(N / T)`` tiles, plus one more when the remainder is short of a full tile by at most
  ``max_overhang * T`` pixels; the lattice then overhangs the grid equally on both sides (negative
  offsets), and the overhang is nodata.
* **Warping** (:mod:`pipeline.raster.warp`).  Every tile job reads the source window under its tile (all
  bands at once, in row strips of at most ``WINDOW_BUDGET`` bytes) and warps it from memory with GDAL
  onto the tile's own grid (the plan's CRS and GSD, origin on the plan's lattice).  Images downsampled by
  more than 1.2x use ``box+bilinear`` (the plan's ``resampling.image``): the window is read already
  averaged over integer ``k x k`` blocks (GDAL ``RasterIO`` average), then warped bilinearly for the
  remaining factor (about 1); sources with nodata / alpha / a mask, or a factor under 1.95, use GDAL
  ``average`` at full resolution.  :data:`TILE_THREADS` tiles (2 on a 2-core machine) are made at a time,
  one thread each with its own dataset handle (GDAL releases the GIL while decoding, warping and
  compressing), under ``TILE_GDAL_ENV`` (32 MB block cache, one GDAL thread per call) and with freed heap
  returned to the OS after every tile, so memory is bounded whatever the scene size.  Outputs do not
  depend on the number of threads.
* **Nodata.** A tile pixel is nodata when its warped alpha is 0: the warper's alpha (outside the
  source footprint, source nodata value, internal mask) or the source's own alpha band.  A tile with a
  nodata fraction above ``max_nodata_fraction`` is dropped and listed with the reason
  (``"nodata 37.2% > 5%"``); otherwise its nodata pixels are written as 0 in the image, recorded in an
  internal mask of the image tile, and written as 0 (unlabelled) in the label tile.
* **Radiometry** follows the plan: bands selected (grey replicated to RGB), non-uint8 data stretched
  linearly from the plan's ``low`` to ``high`` onto 0..255 (``round(255 * (v - low) / (high - low))``
  clipped to 0..255).
* **Labels** are warped onto the same tile grids by :mod:`pipeline.labels.landcover` (with the
  helpers here: :func:`map_tiles`, :func:`tile_jobs`).
* **Files.** Tiles are written once, in their final Cloud-Optimized GeoTIFF layout
  (:func:`pipeline.raster.cog.write_tile_cog`): image tiles 3-band uint8, photometric RGB, 512x512 blocks,
  DEFLATE level 3 + PREDICTOR=2, one ``AVERAGE`` overview, nodata unset, plus an internal mask when any pixel
  is nodata; the release links them instead of re-encoding.  Each file is written atomically; outputs are
  byte-identical for identical inputs.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError

from pipeline.errors import SceneRejected
from pipeline.raster.blocks import Lattice, anchored_lattice
from pipeline.raster.cog import write_tile_cog
from pipeline.raster.reading import open_scene
from pipeline.raster.warp import TILE_GDAL_ENV, TileGrid, release_memory, warp_window
from pipeline.scene import Scene

#: Tiles warped at the same time (threads, each with its own dataset handle; GDAL releases the GIL while
#: it decodes, warps and compresses).  ``OEM_TILE_THREADS`` overrides; 1 = sequential.
TILE_THREADS = max(1, int(os.environ.get("OEM_TILE_THREADS") or min(2, os.cpu_count() or 1)))

_T = TypeVar("_T")
_R = TypeVar("_R")


# --------------------------------------------------------------------------------------------------
# Lattice
# --------------------------------------------------------------------------------------------------

def _axis_offsets(n: int, tile_size: int, max_overhang: float) -> list[int]:
    count, remainder = divmod(n, tile_size)
    if remainder and (tile_size - remainder) <= max_overhang * tile_size:
        count += 1
    if count == 0:
        return []
    margin = (n - count * tile_size) // 2
    return [margin + i * tile_size for i in range(count)]


def tile_lattice(width: int, height: int, tile_size: int = 1024, *,
                 max_overhang: float = 0.05) -> Lattice:
    """Windows ``(row, col, col_off, row_off, w, h)`` of the tile lattice of a ``width`` x ``height`` grid.

    Non-overlapping ``tile_size`` windows, the lattice centred in the grid (margin
    ``(N - k * T) // 2`` per axis).  ``k = floor(N / T)``, plus one when the remainder leaves at most
    ``max_overhang * T`` pixels to overhang; offsets are then negative (a 1000-px axis gives one tile
    at offset -12).  Sorted by row, then column.  Pure, no I/O.
    """
    if tile_size <= 0:
        raise ValueError("tile_size must be positive")
    cols = _axis_offsets(int(width), tile_size, max_overhang)
    rows = _axis_offsets(int(height), tile_size, max_overhang)
    return [(r, c, col_off, row_off, tile_size, tile_size)
            for r, row_off in enumerate(rows) for c, col_off in enumerate(cols)]


def tile_id(row: int, col: int) -> str:
    """``"r{row:03d}_c{col:03d}"``."""
    return f"r{row:03d}_c{col:03d}"


def tile_transform(grid_transform: Sequence[float], col_off: int, row_off: int) -> list[float]:
    """The 6 affine coefficients of a tile at (col_off, row_off) on a north-up grid, origin rounded to 1e-6 m."""
    a, b, c, d, e, f = (float(v) for v in grid_transform[:6])
    if b != 0.0 or d != 0.0:
        raise ValueError("the output grid must be north-up")
    return [a, 0.0, round(c + col_off * a, 6) + 0.0, 0.0, e, round(f + row_off * e, 6) + 0.0]


# --------------------------------------------------------------------------------------------------
# Image tiles
# --------------------------------------------------------------------------------------------------

def _stretch(data: np.ndarray, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """Linear stretch of each band from [low, high] onto 0..255 (uint8, rounded half to even)."""
    out = np.empty(data.shape, dtype=np.uint8)
    for i in range(data.shape[0]):
        lo, hi = float(low[i]), float(high[i])
        scaled = (data[i].astype(np.float64) - lo) * (255.0 / (hi - lo))
        out[i] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def map_tiles(opener: Callable[[], Any], fn: Callable[[Any, _T], _R], items: Sequence[_T],
               threads: int = 0) -> list[_R]:
    """``[fn(ds, item) for item in items]`` on up to ``threads`` (default :data:`TILE_THREADS`) threads.

    Each thread opens its own dataset ``ds`` with the context manager ``opener()`` (rasterio datasets
    must not be shared between threads, and are closed by the thread that opened them), then takes the
    next item until none is left.  Results come back in the order of ``items``.  After a failure no new
    item is started; the exception of the earliest failing item (an ``opener()`` failure first) is
    raised, so errors do not depend on thread timing.
    """
    threads = min(threads or TILE_THREADS, len(items))
    results: list[Any] = [None] * len(items)
    errors: list[tuple[int, BaseException]] = []
    lock = threading.Lock()
    order = iter(range(len(items)))

    def worker() -> None:
        index = -1
        try:
            with opener() as ds:
                while True:
                    with lock:
                        index = -1 if errors else next(order, -1)
                    if index < 0:
                        return
                    results[index] = fn(ds, items[index])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            with lock:
                errors.append((index, exc))

    if threads <= 1:
        worker()
    else:
        pool = [threading.Thread(target=worker, name=f"tile-{i}", daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if errors:
        raise min(errors, key=lambda e: e[0])[1]
    return results


def downsampling(plan: dict) -> float:
    """The plan's downsampling factor (output GSD / native GSD)."""
    return float(plan["grid"]["gsd"]) / float(plan["native"]["gsd"])


def tile_jobs(plan: dict, tile_size: int) -> list[tuple[str, TileGrid, tuple]]:
    """``(tile id, tile grid, lattice window)`` of every tile of the plan's lattice (:func:`tile_lattice`, or a
    mosaic's :func:`pipeline.raster.blocks.anchored_lattice`)."""
    grid = plan["grid"]
    crs = CRS.from_user_input(grid["crs"])
    lattice = (anchored_lattice(grid, tile_size, plan["tiling"]) if plan.get("tiling")
               else tile_lattice(grid["width"], grid["height"], tile_size))
    return [(tile_id(w[0], w[1]), TileGrid(crs, Affine(*tile_transform(grid["transform"], w[2], w[3])), w[4], w[5]), w)
            for w in lattice]


def image_tile(src: Any, scene: Scene, plan: dict, grid: TileGrid,
               max_nodata_fraction: float) -> tuple[np.ndarray | None, np.ndarray, float]:
    """Warp one image tile: ``(rgb uint8, or None when dropped; valid mask; nodata fraction)``.  A read
    failure raises ``SceneRejected(scene.image, "cannot read: ...")``."""
    rad = plan["radiometry"]
    bands: list[int] = list(rad["bands"])
    uniq = sorted(set(bands))
    with_mask = any(MaskFlags.all_valid not in src.mask_flag_enums[b - 1] for b in uniq)
    try:
        data, valid = warp_window(src, uniq, grid, plan["resampling"]["image"], downsampling(plan),
                                  with_mask=with_mask)
    except RasterioError as exc:
        raise SceneRejected(scene.image, f"cannot read: {exc}") from exc
    pos = {b: i for i, b in enumerate(uniq)}
    pixels = data[[pos[b] for b in bands]] if bands != uniq else data
    if np.issubdtype(pixels.dtype, np.floating):
        valid &= np.all(np.isfinite(pixels), axis=0)
    n_pixels = grid.width * grid.height
    fraction = (n_pixels - int(np.count_nonzero(valid))) / n_pixels
    if fraction > max_nodata_fraction:
        return None, valid, fraction
    if rad.get("scale") == "linear":
        rgb = _stretch(np.nan_to_num(pixels.astype(np.float64)), rad["low"], rad["high"])
    else:
        rgb = np.ascontiguousarray(pixels.astype(np.uint8, copy=False))
    if fraction:
        rgb[:, ~valid] = 0
    return rgb, valid, fraction


def _tile_record(tid: str, window: tuple, grid: TileGrid, plan: dict, fraction: float) -> dict:
    row, col, col_off, row_off, w, h = window
    gsd = float(plan["grid"]["gsd"])
    coeffs = list(grid.transform)[:6]
    return {"tile_id": tid, "row": row, "col": col, "window": [col_off, row_off, w, h],
            "crs": plan["grid"]["crs"], "transform": coeffs,
            "bounds": [coeffs[2], round(coeffs[5] - h * gsd, 6) + 0.0, round(coeffs[2] + w * gsd, 6) + 0.0,
                       coeffs[5]],
            "gsd": gsd, "nodata_fraction": round(fraction, 6), "image": f"images/{tid}.tif"}


def write_scene_tiles(scene: Scene, plan: dict, out_dir: Path, *, tile_size: int = 1024,
                      max_nodata_fraction: float = 0.05) -> tuple[list[dict], list[dict]]:
    """Warp ``scene.image`` tile by tile onto the plan's grid and write ``out_dir/images/<tile_id>.tif``.

    Returns ``(tiles, dropped)``: the "Tile records" of the tiles written (sorted by tile id, paths
    relative to ``out_dir``) and ``{"tile_id", "reason"}`` for tiles whose nodata fraction exceeds
    ``max_nodata_fraction``.  A read failure raises ``SceneRejected(scene.image, "cannot read: ...")``.
    """
    out_dir = Path(out_dir)

    def one_tile(src: Any, job: tuple[str, TileGrid, tuple]) -> tuple[str, dict]:
        tid, grid, window = job
        try:
            rgb, valid, fraction = image_tile(src, scene, plan, grid, max_nodata_fraction)
            if rgb is None:
                return "dropped", {"tile_id": tid,
                                   "reason": f"nodata {fraction * 100:.1f}% > {max_nodata_fraction * 100:g}%"}
            write_tile_cog(out_dir / f"images/{tid}.tif", rgb, crs=grid.crs, transform=grid.transform,
                           kind="image", mask=valid if fraction else None)
            return "tile", _tile_record(tid, window, grid, plan, fraction)
        finally:
            release_memory()

    with rasterio.Env(**TILE_GDAL_ENV):
        results = map_tiles(lambda: open_scene(scene), one_tile, tile_jobs(plan, tile_size))
    tiles = sorted((rec for kind, rec in results if kind == "tile"), key=lambda t: t["tile_id"])
    dropped = sorted((rec for kind, rec in results if kind == "dropped"), key=lambda t: t["tile_id"])
    return tiles, dropped
