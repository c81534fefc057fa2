"""Georeference of a synthetic scene and the tiles the pipeline is expected to cut from it.

Written from the pipeline's documented policies (docs/ARCHITECTURE.md: "GSD rule", "Tiling policy"), not
from its code, so the expected counts are an independent check of the build:

* native GSD: mean ground length (metres, in the UTM zone of the scene centre) of one pixel step along
  columns and along rows at the centre pixel;
* GSD rule: coarser than 0.5 m (+2 %) rejected; 0.25-0.5 m (2 % tolerance either side) kept, rounded
  to 1 cm; finer -> 0.3 or 0.5 m,
  whichever makes the downsampling factor closest to an integer (ties to 0.3);
* grid: the footprint (edges densified, 64 steps) in UTM, bounds snapped outward to multiples of the GSD;
* lattice: per axis ``floor(N / 1024)`` tiles plus one when the overhang is at most 5 % of a tile, centred;
* a tile is kept when at most 5 % of it is nodata (outside the footprint or the valid polygon).

Coordinates are transformed with ``rasterio.warp.transform`` (GDAL/PROJ, as the pipeline does), so
datum shifts are the same on both sides.  A scene is *ambiguous* when a tile's nodata share or an axis
remainder lies so close to a threshold that a pixel of difference could change the count; the planner
then resizes it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.warp import transform as warp_transform

TILE = 1024
MAX_OVERHANG = 0.05
MAX_NODATA = 0.05
KEEP_RANGE = (0.25, 0.5)
TOLERANCE = 0.02
TARGETS = (0.3, 0.5)
DENSIFY = 64
#: Guard bands: nodata shares and lattice remainders this close to a threshold make a scene ambiguous.
NODATA_GUARD = 0.012
PIXEL_GUARD = 6


def target_gsd(native: float) -> float | None:
    """Output GSD of a scene of ground GSD ``native`` (m), ``None`` when the pipeline rejects it."""
    lo, hi = KEEP_RANGE
    if native > hi * (1 + TOLERANCE):
        return None
    if native > hi:
        return hi
    if native >= lo * (1 - TOLERANCE):  # the same tolerance below 0.25 m (0.2499 m -> 0.25 m)
        return max(min(round(native, 2), hi), lo)
    errs = [(abs(t / native - round(t / native)), t) for t in sorted(TARGETS)]
    best = min(errs, key=lambda e: e[0])[0]
    return next(t for e, t in errs if e < best + 1e-9)


def reject_reason(native: float) -> str:
    """The pipeline's reason for a too-coarse scene."""
    return f"GSD {native:.2f} m is coarser than {KEEP_RANGE[1]:g} m"


def utm_crs(lon: float, lat: float) -> str:
    """WGS 84 UTM zone of a position (Norway / Svalbard exceptions included)."""
    lon = ((lon + 180.0) % 360.0) - 180.0
    zone = min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    elif 72.0 <= lat < 84.0 and 0.0 <= lon < 42.0:
        zone = 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _apply(t: Sequence[float], cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d, e, f = t[:6]
    return c + a * cols + b * rows, f + d * cols + e * rows


def centre_and_gsd(crs: str, t: Sequence[float], width: int, height: int) -> tuple[float, float, float]:
    """``(lon, lat, native ground GSD)`` of a raster, measured as the pipeline measures it."""
    cx, cy = width / 2.0, height / 2.0
    cols = np.array([cx, cx - 0.5, cx + 0.5, cx, cx])
    rows = np.array([cy, cy, cy, cy - 0.5, cy + 0.5])
    xs, ys = _apply(t, cols, rows)
    lons, lats = warp_transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    ux, uy = warp_transform(crs, utm_crs(lons[0], lats[0]), xs.tolist(), ys.tolist())
    sx, sy = math.hypot(ux[2] - ux[1], uy[2] - uy[1]), math.hypot(ux[4] - ux[3], uy[4] - uy[3])
    return float(lons[0]), float(lats[0]), (sx + sy) / 2.0


def georeference(crs: str, lon: float, lat: float, pixel: float, width: int, height: int, *,
                 calibrate: bool, snap: float | None = None) -> tuple[float, ...]:
    """North-up affine (a, b, c, d, e, f) of a ``width`` x ``height`` raster in ``crs`` centred on
    (lon, lat).  ``calibrate=False``: square pixels of ``pixel`` CRS units (a projected orthophoto);
    ``calibrate=True``: CRS pixel sizes scaled until each axis measures ``pixel`` metres on the ground
    (Web Mercator, geographic degrees).  ``snap``: origin rounded to a multiple of it (CRS units)."""
    (x,), (y,) = warp_transform("EPSG:4326", crs, [lon], [lat])
    gsd = px = py = pixel
    for _ in range(3 if calibrate else 0):  # scale the CRS pixel size until each axis measures gsd
        xs = [x - px / 2, x + px / 2, x, x]
        ys = [y, y, y - py / 2, y + py / 2]
        ux, uy = warp_transform(crs, utm_crs(lon, lat), xs, ys)
        px *= gsd / math.hypot(ux[1] - ux[0], uy[1] - uy[0])
        py *= gsd / math.hypot(ux[3] - ux[2], uy[3] - uy[2])
    if calibrate and abs(px - py) / px < 1e-3:  # conformal CRS: keep the pixels square
        px = py = round((px + py) / 2, 12)
    x0, y0 = x - width / 2 * px, y + height / 2 * py
    if snap:
        x0, y0 = round(round(x0 / snap) * snap, 6), round(round(y0 / snap) * snap, 6)
    return (px, 0.0, x0, 0.0, -py, y0)


def _ring(poly_px: np.ndarray, steps: int) -> np.ndarray:
    """A closed pixel-space polygon with every edge split into ``steps`` pieces."""
    a, b = poly_px, np.roll(poly_px, -1, axis=0)
    k = np.linspace(0.0, 1.0, steps, endpoint=False)[None, :, None]
    return (a[:, None, :] + (b - a)[:, None, :] * k).reshape(-1, 2)


def axis_offsets(n: int) -> list[int]:
    """Tile offsets along an axis of ``n`` pixels (centred lattice, overhang rule)."""
    count, rem = divmod(n, TILE)
    if rem and TILE - rem <= MAX_OVERHANG * TILE:
        count += 1
    margin = (n - count * TILE) // 2
    return [margin + i * TILE for i in range(count)]


@dataclass(frozen=True)
class Expectation:
    """What the pipeline should make of a scene."""

    lon: float
    lat: float
    native_gsd: float
    target_gsd: float | None
    utm: str
    grid: tuple[int, int]
    tiles: int
    dropped: int
    ambiguous: str          # "" | "axis" (a lattice remainder) | "nodata" (a tile's nodata share)
    reject: str | None


def expect(crs: str, t: Sequence[float], width: int, height: int,
           valid_px: np.ndarray | None = None) -> Expectation:
    """Expected grid, kept and dropped tiles of a raster (see module doc)."""
    lon, lat, native = centre_and_gsd(crs, t, width, height)
    gsd = target_gsd(native)
    utm = utm_crs(lon, lat)
    if gsd is None:
        return Expectation(lon, lat, native, None, utm, (0, 0), 0, 0, "", reject_reason(native))
    frame = np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
    edge = _ring(frame, DENSIFY)
    ex, ey = warp_transform(crs, utm, *(v.tolist() for v in _apply(t, edge[:, 0], edge[:, 1])))
    eps = 1e-6
    kx0, kx1 = math.floor(min(ex) / gsd + eps), math.ceil(max(ex) / gsd - eps)
    ky0, ky1 = math.floor(min(ey) / gsd + eps), math.ceil(max(ey) / gsd - eps)
    w, h = max(1, kx1 - kx0), max(1, ky1 - ky0)
    x0, y0 = kx0 * gsd, ky1 * gsd
    ring = _ring(np.asarray(valid_px, float) if valid_px is not None else frame, 16)
    vx, vy = warp_transform(crs, utm, *(v.tolist() for v in _apply(t, ring[:, 0], ring[:, 1])))
    valid = shapely.make_valid(shapely.Polygon(np.column_stack([vx, vy])))
    cols, rows = axis_offsets(w), axis_offsets(h)
    ambiguous = "axis" if any(min(r, TILE - r) <= PIXEL_GUARD or abs((TILE - r) - MAX_OVERHANG * TILE)
                              <= PIXEL_GUARD for r in (w % TILE, h % TILE)) else ""
    kept = dropped = 0
    if cols and rows:
        c, r = np.meshgrid(np.array(cols, float), np.array(rows, float))
        boxes = shapely.box(x0 + c * gsd, y0 - (r + TILE) * gsd, x0 + (c + TILE) * gsd, y0 - r * gsd)
        nodata = 1.0 - shapely.area(shapely.intersection(boxes, valid)) / (TILE * gsd) ** 2
        kept = int((nodata <= MAX_NODATA).sum())
        dropped = int(nodata.size - kept)
        if (np.abs(nodata - MAX_NODATA) < NODATA_GUARD).any():
            ambiguous = ambiguous or "nodata"
    return Expectation(lon, lat, native, gsd, utm, (w, h), kept, dropped, ambiguous, None)
