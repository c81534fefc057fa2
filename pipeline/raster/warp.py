"""Warp one output tile from a source window held in memory (no Luigi, no file writing here).

Each tile job reads the source window its footprint needs (all bands at once: one decode per source
block, shared with nothing else), optionally box-reduces it by an integer factor, and warps it with
GDAL (:func:`rasterio.warp.reproject`, which releases the GIL) onto the tile's grid.  Compared with
reading a :class:`rasterio.vrt.WarpedVRT` tile by tile this avoids the VRT's 512x128-block chunking
(one warp per block, each with its own source window and margins) and lets the caller keep the
decoded label window for its value check.

Resampling (``method`` values of :func:`warp_window`):

* ``"average"`` / ``"mode"`` / ``"nearest"`` / ``"bilinear"``: GDAL's kernels at full resolution;
* ``"box+bilinear"``: the source window is read already averaged over ``k x k`` pixel blocks aligned on
  the scene's own pixel grid (``k = floor(factor + 0.05)``: GDAL's ``RasterIO`` with ``average``
  resampling, an exact box filter for an integer factor, decoding straight into the reduced array), then
  warped with ``bilinear`` for the remaining factor (about 1).  On grids that line up (same CRS, integer
  factor, aligned origin) the residual warp samples exact pixel centres, so this is the exact
  integer-factor box average.  This is what ``gdalwarp -r average`` does when the
  source has a 2x overview, minus the overview's rounding; measured against ``gdalwarp -r average``
  (full resolution) on the bench scene: MAD ~1 DN, > 99.7 % within 8 DN, for ~1/3 of the CPU.  Used
  only where the source has no nodata / alpha / mask; otherwise ``average`` at full resolution.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

#: Source pixels added around a tile's footprint (kernel reach at the footprint's edge).
WINDOW_MARGIN = 3
#: Points per edge of the tile's outline transformed to find its source window.
OUTLINE_POINTS = 16
#: A downsampling factor within this of an integer k >= 2 is box-reduced by k (residual warp ~1x).
PREREDUCE_TOLERANCE = 0.05
#: Extra GDAL warp options (``-wo``); none by default (see REPORT.md: the transformer is < 1 % of the time).
WARP_OPTIONS: dict[str, str] = {}
#: Largest source window (bytes) read and warped at once; larger tiles are warped in row strips.
WINDOW_BUDGET = 8 * 1024 * 1024
#: GDAL settings of the tile jobs: a 32 MB block cache (bounded RSS whatever the scene size; 64 MB measured
#: no faster and +44 MiB) and one thread per GDAL call (the tile pool already keeps every core busy).
TILE_GDAL_ENV: dict[str, Any] = {"GDAL_CACHEMAX": 32 * 1024 * 1024, "GDAL_NUM_THREADS": "1"}
#: Hand freed heap memory back to the OS after every tile job (glibc ``malloc_trim``), so the peak RSS does
#: not creep up with the number of tiles through heap fragmentation (two threads allocating multi-MB
#: buffers).  ``OEM_MALLOC_TRIM=0`` disables it.
MALLOC_TRIM = os.environ.get("OEM_MALLOC_TRIM", "1") != "0"


@dataclass(frozen=True)
class TileGrid:
    """An output tile: its CRS, affine transform and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int


def source_window(src: rasterio.io.DatasetReader, tile: TileGrid, margin: int = WINDOW_MARGIN,
                  align: int = 1) -> Window | None:
    """The window of ``src`` that covers ``tile``'s footprint plus ``margin`` pixels, clipped to the
    raster, its origin and size rounded outward to multiples of ``align``; None when they do not meet."""
    n = OUTLINE_POINTS
    t = np.linspace(0.0, 1.0, n + 1)
    cols = np.concatenate([t * tile.width, np.full_like(t, tile.width), t * tile.width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * tile.height, np.full_like(t, tile.height), t * tile.height])
    tf = tile.transform
    xs, ys = tf.a * cols + tf.b * rows + tf.c, tf.d * cols + tf.e * rows + tf.f
    sx, sy = warp_transform(tile.crs, src.crs, np.asarray(xs).tolist(), np.asarray(ys).tolist())
    sx, sy = np.asarray(sx), np.asarray(sy)
    ok = np.isfinite(sx) & np.isfinite(sy)
    if not ok.any():
        return None
    c, r = ~src.transform @ (sx[ok], sy[ok])
    c0 = max(0, (math.floor(float(np.min(c))) - margin) // align * align)
    r0 = max(0, (math.floor(float(np.min(r))) - margin) // align * align)
    c1 = min(src.width, -(-(math.ceil(float(np.max(c))) + margin) // align) * align)
    r1 = min(src.height, -(-(math.ceil(float(np.max(r))) + margin) // align) * align)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _libc_trim() -> Callable[[], Any]:
    """``malloc_trim(0)`` of glibc, or a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        fn = None
    return (lambda: fn(0)) if fn is not None else (lambda: None)


_TRIM = _libc_trim()


def release_memory() -> None:
    """Return freed heap to the OS after a tile job (:data:`MALLOC_TRIM`)."""
    if MALLOC_TRIM:
        _TRIM()


def _reproject(data: np.ndarray, src_transform: Affine, src_crs: CRS, tile: TileGrid, resampling: Resampling,
               alpha: bool, src_alpha: int = 0) -> np.ndarray:
    """GDAL warp of ``data`` onto ``tile``: ``(bands [+ alpha], rows, cols)`` of ``data``'s dtype."""
    bands = data.shape[0] - (1 if src_alpha else 0)
    out = np.zeros((bands + (1 if alpha else 0), tile.height, tile.width), dtype=data.dtype)
    dst_transform = tile.transform
    if CRS.from_user_input(src_crs) == CRS.from_user_input(tile.crs):
        # one CRS: the warp is affine, so both grids may move by the same vector; moved to the tile's origin,
        # GDAL's pixel coordinates carry no float noise from coordinates of millions of metres (1e-8 px at a
        # UTM northing of 8e6 m: more than the 1e-10 px GDAL allows before a ``mode`` or ``average`` footprint
        # takes one more source row or column)
        shift = Affine.translation(-dst_transform.c, -dst_transform.f)
        src_transform, dst_transform = _snapped(shift * src_transform), shift * dst_transform
    reproject(data, out, src_transform=src_transform, src_crs=src_crs, dst_transform=dst_transform,
              dst_crs=tile.crs, resampling=resampling, src_nodata=None, dst_nodata=None,
              src_alpha=src_alpha, dst_alpha=bands + 1 if alpha else 0, init_dest_nodata=False,
              **WARP_OPTIONS)
    return out


#: A source grid whose origin lies this close (in source pixels) to whole pixels from the tile's origin is moved
#: onto them (:func:`_snapped`).
SNAP_PX = 1e-6


def _snapped(src_transform: Affine) -> Affine:
    """``src_transform`` (north-up, relative to the tile's origin) with its origin on whole source pixels from the
    tile's origin when it is within :data:`SNAP_PX` of them (the float noise of the coordinates it was computed
    from), else as it is."""
    t = src_transform
    if t.b or t.d or not t.a or not t.e:
        return t
    cx, cy = t.c / t.a, t.f / t.e
    if abs(cx - round(cx)) >= SNAP_PX or abs(cy - round(cy)) >= SNAP_PX:
        return t
    return Affine(t.a, 0.0, round(cx) * t.a, 0.0, t.e, round(cy) * t.e)


def prereduce_factor(method: str, factor: float, all_valid: bool) -> int:
    """``k`` of the box pre-reduction for ``method`` at downsampling ``factor`` (1 = none)."""
    if method != "box+bilinear" or not all_valid:
        return 1
    return max(1, int(math.floor(factor + PREREDUCE_TOLERANCE)))


def _strips(src: rasterio.io.DatasetReader, nbands: int, tile: TileGrid, k: int
            ) -> list[tuple[int, TileGrid, Window | None]]:
    """Split ``tile`` into row strips whose source windows hold at most :data:`WINDOW_BUDGET` bytes:
    ``[(first row, strip grid, source window or None)]``."""
    win = source_window(src, tile, margin=WINDOW_MARGIN * k, align=k)
    itemsize = np.dtype(src.dtypes[0]).itemsize
    size = 0 if win is None else win.width * win.height * nbands * itemsize // (k * k)
    n = max(1, math.ceil(size / WINDOW_BUDGET))
    if n == 1:
        return [(0, tile, win)]
    step = math.ceil(tile.height / n)
    out = []
    for r0 in range(0, tile.height, step):
        grid = TileGrid(tile.crs, tile.transform @ Affine.translation(0, r0), tile.width, min(step, tile.height - r0))
        out.append((r0, grid, source_window(src, grid, margin=WINDOW_MARGIN * k, align=k)))
    return out


def _warp_strip(src: rasterio.io.DatasetReader, bands: list[int], grid: TileGrid, win: Window, method: str,
                k: int, alpha: bool, with_mask: bool, check: Callable[[np.ndarray], np.ndarray | None] | None
                ) -> np.ndarray:
    """Read ``win`` of ``bands`` (+ the dataset mask as alpha; or box-reduced by ``k``), warp onto ``grid``."""
    stf = src.window_transform(win)
    if k > 1 and min(win.width, win.height) >= k:
        w, h = win.width // k, win.height // k
        data = src.read(bands, window=Window(win.col_off, win.row_off, w * k, h * k), out_shape=(len(bands), h, w),
                        resampling=Resampling.average)
        return _reproject(data, stf @ Affine.scale(k), src.crs, grid, Resampling.bilinear, alpha)
    data = src.read(bands, window=win)
    if check is not None:
        mapped = check(data)
        data = data if mapped is None else mapped
    src_alpha = 0
    if with_mask:
        mask = src.dataset_mask(window=win)
        if not mask.all():
            data = np.concatenate([data, mask[np.newaxis].astype(data.dtype)])
            src_alpha = data.shape[0]
    resampling = Resampling["average" if method == "box+bilinear" else method]
    return _reproject(data, stf, src.crs, grid, resampling, alpha, src_alpha)


def warp_window(src: rasterio.io.DatasetReader, bands: list[int], tile: TileGrid, method: str,
                factor: float, *, alpha: bool = True, with_mask: bool = False,
                check: Callable[[np.ndarray], np.ndarray | None] | None = None, out_bands: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Read the window of ``bands`` under ``tile`` and warp it.  Returns ``(pixels, valid)``:
    ``pixels`` ``(len(bands), rows, cols)`` in the source dtype, ``valid`` a bool ``(rows, cols)``
    (all True when ``alpha`` is False).  ``with_mask`` honours the source's nodata / alpha / internal
    mask (``src.dataset_mask``); ``check(window_array)`` is called on every decoded window (label
    values), and the array it returns, if any, is warped instead (a class mapping; ``out_bands``: its band count,
    when not ``len(bands)``: colour labels mapped to one band of class ids).  Windows larger than
    :data:`WINDOW_BUDGET` bytes are warped in row strips, so memory does not grow with the downsampling factor.
    """
    k = prereduce_factor(method, factor, not with_mask and check is None)
    nb = len(bands) if out_bands is None else out_bands
    out = np.zeros((nb + (1 if alpha else 0), tile.height, tile.width), dtype=src.dtypes[bands[0] - 1])
    for r0, grid, win in _strips(src, len(bands), tile, k):
        if win is not None:
            out[:, r0:r0 + grid.height] = _warp_strip(src, bands, grid, win, method, k, alpha, with_mask, check)
    if not alpha:
        return out, np.ones((tile.height, tile.width), dtype=bool)
    return out[:-1], out[-1] > 0
