"""Tiling a block of a mosaic of chips (:mod:`pipeline.sources.mosaic`) on the lattice of its whole area.

An area of chips larger than one block is a mosaic per block, each with its block as ``core`` and the bounds of
the whole area as ``area`` (in the chips' CRS).  Every block is planned in the UTM zone of the area's centre
(:func:`area_utm`) and records the area's lattice anchor (:func:`mosaic_tiling`, the plan's ``tiling``); its tiles
are the anchored lattice's whose centre lies in its core (:func:`anchored_lattice`), so the tiles of neighbouring
blocks meet at their seams and none is made twice.  Pure, no I/O.
"""
from __future__ import annotations

import math

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from pipeline.raster.gsd import utm_crs_for
from pipeline.scene import Scene

#: A lattice window ``(row, col, col_off, row_off, width, height)`` (as :func:`pipeline.raster.tiling.tile_lattice`).
Lattice = list[tuple[int, int, int, int, int, int]]


def area_utm(scene: Scene, crs: CRS) -> str | None:
    """The UTM zone of the centre of a mosaic's whole area of chips (:mod:`pipeline.sources.mosaic`: ``core`` and
    ``area``), so that every block of an area across a zone boundary is tiled on one lattice; None for any other
    scene (its own centre's zone)."""
    core = ((scene.extra or {}).get("mosaic") or {}).get("core")
    if not core:
        return None
    minx, miny, maxx, maxy = core["area"]
    (lon,), (lat,) = warp_transform(crs, "EPSG:4326", [(minx + maxx) / 2], [(miny + maxy) / 2])
    return utm_crs_for(lon, lat)


def mosaic_tiling(scene: Scene, crs: CRS, utm: str, gsd: float) -> dict:
    """``{"tiling": ...}`` of a mosaic with a core (:mod:`pipeline.sources.mosaic`): the lattice anchor (the corner
    of the chips' area in ``utm`` where its left and top edges are innermost, the area being a little turned there,
    on the ``gsd`` grid: the first row and column of tiles lie wholly in it), the core's bounds and their CRS, for
    :func:`pipeline.raster.tiling.tile_jobs`; ``{}`` for any other scene."""
    core = ((scene.extra or {}).get("mosaic") or {}).get("core")
    if not core:
        return {}
    minx, miny, maxx, maxy = core["area"]
    steps = np.linspace(0.0, 1.0, 33)
    xs, _ = warp_transform(crs, utm, [minx] * len(steps), list(miny + steps * (maxy - miny)))
    _, ys = warp_transform(crs, utm, list(minx + steps * (maxx - minx)), [maxy] * len(steps))
    anchor = [round(math.ceil(max(xs) / gsd - 1e-6) * gsd, 6) + 0.0,
              round(math.floor(min(ys) / gsd + 1e-6) * gsd, 6) + 0.0]
    return {"tiling": {"anchor": anchor, "core": list(core["bounds"]), "core_crs": crs.to_string()}}


def anchored_lattice(grid: dict, tile_size: int, tiling: dict, *, max_overhang: float = 0.05) -> Lattice:
    """The windows of a mosaic block (:mod:`pipeline.sources.mosaic`): the ``tile_size`` lattice anchored at
    ``tiling["anchor"]`` (every block of the mosaic's lattice shares it) within the grid (but ``max_overhang``,
    as :func:`pipeline.raster.tiling.tile_lattice`), kept where the tile's
    centre, in ``tiling["core_crs"]``, is in the core ``[minx, maxx) x (miny, maxy]`` (the block: the cores of
    neighbouring blocks share no point, so each tile is made once).  Rows and columns count from the first kept."""
    from pyproj import Transformer

    gsd = float(grid["gsd"])
    x0, y0 = float(grid["transform"][2]), float(grid["transform"][5])
    col0 = round((float(tiling["anchor"][0]) - x0) / gsd) % tile_size - tile_size
    row0 = round((y0 - float(tiling["anchor"][1])) / gsd) % tile_size - tile_size
    over = max_overhang * tile_size  # as tile_lattice: a tile reaching further out of the grid is mostly nodata
    width, height = int(grid["width"]), int(grid["height"])
    cols = [c for c in range(col0, width, tile_size) if c >= -over and c + tile_size <= width + over]
    rows = [r for r in range(row0, height, tile_size) if r >= -over and r + tile_size <= height + over]
    half = tile_size / 2
    to_core = Transformer.from_crs(grid["crs"], tiling["core_crs"], always_xy=True)
    xs, ys = to_core.transform([x0 + (c + half) * gsd for r in rows for c in cols],
                               [y0 - (r + half) * gsd for r in rows for c in cols])
    minx, miny, maxx, maxy = tiling["core"]
    kept = [(r, c) for (r, c), x, y in zip(((r, c) for r in rows for c in cols), xs, ys)
            if minx <= x < maxx and miny < y <= maxy]
    if not kept:
        return []
    r_first, c_first = min(r for r, _ in kept), min(c for _, c in kept)
    return [((r - r_first) // tile_size, (c - c_first) // tile_size, c, r, tile_size, tile_size) for r, c in kept]
