"""Tile lattice and windowed warping of a scene straight into 1024x1024 GeoTIFF image tiles.

Policies (see docs/ARCHITECTURE.md, "Tiling policy", "Tile records", "Label records"):

* **Lattice** (:func:`tile_lattice`): non-overlapping ``tile_size`` windows on the scene's UTM grid,
  centred in the grid (equal margins, the odd pixel going to the right / bottom).  Per axis there are
  ``floor(N / T)`` tiles, plus one more when the remainder is short of a full tile by at most
  ``max_overhang * T`` pixels; the lattice then overhangs the grid equally on both sides (negative
  offsets), and the overhang is nodata.
* **Warping.** Every tile is warped on its own from the source through :class:`rasterio.vrt.WarpedVRT`
  onto the tile's own grid (the plan's CRS and GSD, origin on the plan's lattice), with the plan's
  resampling.  :data:`TILE_THREADS` tiles (2 on a 2-core machine) are warped and written at a time, one
  thread each with its own dataset handle (GDAL releases the GIL while decoding, warping and
  compressing), so both cores are busy.  The scene is never read whole: memory is bounded by the tiles
  in flight, GDAL's block cache (``pipeline.raster.reading.GDAL_ENV``) and the warp memory limit, whatever the
  scene size.  Outputs do not depend on the number of threads.
* **Nodata.** A tile pixel is nodata when its warped alpha is 0: the warper's alpha (outside the
  source footprint, source nodata value, internal mask) or the source's own alpha band.  A tile with a
  nodata fraction above ``max_nodata_fraction`` is dropped and listed with the reason
  (``"nodata 37.2% > 5%"``); otherwise its nodata pixels are written as 0 in the image, recorded in an
  internal mask of the image tile, and written as 0 (unlabelled) in the label tile.
* **Radiometry** follows the plan: bands selected (grey replicated to RGB), non-uint8 data stretched
  linearly from the plan's ``low`` to ``high`` onto 0..255 (``round(255 * (v - low) / (high - low))``
  clipped to 0..255).
* **Labels** are warped onto the same tile grids by :mod:`pipeline.labels.landcover` (with the
  helpers here: :func:`map_tiles`, :func:`write_tif`).
* **Files.** Image tiles: 3-band uint8 GeoTIFF, 512x512 internal tiles, DEFLATE + PREDICTOR=2,
  photometric RGB, nodata unset, plus an internal mask when any pixel is nodata.  Label tiles: 1-band
  uint8, 512x512 tiles, DEFLATE, same CRS / transform / shape as the image tile, nodata unset.  Each
  file is written atomically; outputs are byte-identical for identical inputs.
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
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

from pipeline.atomic import atomic_path
from pipeline.errors import SceneRejected
from pipeline.raster.reading import GDAL_ENV, open_scene
from pipeline.scene import Scene

#: Warp memory limit per warped tile (MB).
WARP_MEM_LIMIT_MB = 64

#: Tiles warped at the same time (threads, each with its own dataset handle; GDAL releases the GIL while
#: it decodes, warps and compresses).  ``OEM_TILE_THREADS`` overrides; 1 = sequential.
TILE_THREADS = max(1, int(os.environ.get("OEM_TILE_THREADS") or min(2, os.cpu_count() or 1)))

_T = TypeVar("_T")
_R = TypeVar("_R")

Lattice = list[tuple[int, int, int, int, int, int]]


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


def write_tif(path: Path, data: np.ndarray, crs: CRS, transform: Affine, *,
               mask: np.ndarray | None = None, predictor: int | None = None,
               photometric: str | None = None) -> None:
    """Write ``data`` (bands, rows, cols) as a tiled DEFLATE GeoTIFF at ``path`` atomically."""
    count, height, width = data.shape
    profile: dict[str, Any] = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name, crs=crs,
        transform=transform, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
        interleave="pixel",
    )
    if predictor:
        profile["predictor"] = predictor
    if photometric:
        profile["photometric"] = photometric
    with atomic_path(path) as tmp:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(data)
                if mask is not None:
                    dst.write_mask(mask)


def _alpha_index(vrt: WarpedVRT) -> int:
    for i, ci in enumerate(vrt.colorinterp, start=1):
        if ci == ColorInterp.alpha:
            return i
    raise RuntimeError("warped dataset has no alpha band")  # cannot happen: WarpedVRT adds one (a bug, not input)


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


def write_scene_tiles(scene: Scene, plan: dict, out_dir: Path, *, tile_size: int = 1024,
                      max_nodata_fraction: float = 0.05) -> tuple[list[dict], list[dict]]:
    """Warp ``scene.image`` tile by tile onto the plan's grid and write ``out_dir/images/<tile_id>.tif``.

    Returns ``(tiles, dropped)``: the "Tile records" of the tiles written (sorted by tile id, paths
    relative to ``out_dir``) and ``{"tile_id", "reason"}`` for tiles whose nodata fraction exceeds
    ``max_nodata_fraction``.  A read failure raises ``SceneRejected(scene.image, "cannot read: ...")``.
    """
    out_dir = Path(out_dir)
    grid = plan["grid"]
    rad = plan["radiometry"]
    dst_crs = CRS.from_user_input(grid["crs"])
    gsd = float(grid["gsd"])
    resampling = Resampling[plan["resampling"]["image"]]
    bands: list[int] = list(rad["bands"])
    linear = rad.get("scale") == "linear"
    n_pixels = tile_size * tile_size
    uniq = sorted(set(bands))
    pos = {b: i for i, b in enumerate(uniq)}
    lattice = tile_lattice(grid["width"], grid["height"], tile_size)

    def one_tile(src: Any, window: tuple) -> tuple[str, dict]:
        row, col, col_off, row_off, w, h = window
        tid = tile_id(row, col)
        coeffs = tile_transform(grid["transform"], col_off, row_off)
        transform = Affine(*coeffs)
        try:
            src_has_alpha = ColorInterp.alpha in src.colorinterp
            with WarpedVRT(src, crs=dst_crs, transform=transform, width=w, height=h,
                           resampling=resampling, add_alpha=not src_has_alpha,
                           warp_mem_limit=WARP_MEM_LIMIT_MB) as vrt:
                data = vrt.read(uniq + [_alpha_index(vrt)])
        except RasterioError as exc:
            raise SceneRejected(scene.image, f"cannot read: {exc}") from exc
        pixels = data[[pos[b] for b in bands]]
        valid = data[-1] > 0
        if np.issubdtype(pixels.dtype, np.floating):
            valid &= np.all(np.isfinite(pixels), axis=0)
        n_nodata = int(n_pixels - np.count_nonzero(valid))
        fraction = n_nodata / n_pixels
        if fraction > max_nodata_fraction:
            return "dropped", {"tile_id": tid,
                               "reason": f"nodata {fraction * 100:.1f}% > {max_nodata_fraction * 100:g}%"}
        if linear:
            rgb = _stretch(np.nan_to_num(pixels.astype(np.float64)), rad["low"], rad["high"])
        else:
            rgb = pixels.astype(np.uint8, copy=False)
        rgb = np.ascontiguousarray(rgb)
        if n_nodata:
            rgb[:, ~valid] = 0
        mask = valid.astype(np.uint8) * 255 if n_nodata else None
        image_rel = f"images/{tid}.tif"
        write_tif(out_dir / image_rel, rgb, dst_crs, transform, mask=mask, predictor=2,
                   photometric="RGB")
        return "tile", {
            "tile_id": tid, "row": row, "col": col, "window": [col_off, row_off, w, h],
            "crs": grid["crs"], "transform": coeffs,
            "bounds": [coeffs[2], round(coeffs[5] - h * gsd, 6) + 0.0,
                       round(coeffs[2] + w * gsd, 6) + 0.0, coeffs[5]],
            "gsd": gsd, "nodata_fraction": round(fraction, 6), "image": image_rel,
        }

    with rasterio.Env(**GDAL_ENV):
        results = map_tiles(lambda: open_scene(scene), one_tile, lattice)
    tiles = [rec for kind, rec in results if kind == "tile"]
    dropped = [rec for kind, rec in results if kind == "dropped"]
    tiles.sort(key=lambda t: t["tile_id"])
    dropped.sort(key=lambda t: t["tile_id"])
    return tiles, dropped
