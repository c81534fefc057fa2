"""The pixel grid of one tile, on which annotations are exported, read and burnt."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
from rasterio.transform import Affine
from shapely.geometry import Polygon, mapping
from shapely.geometry.base import BaseGeometry

from pipeline.constants import UNLABELLED
from pipeline.sources.footprints import crs_string


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
    def from_tile_record(cls, rec: dict[str, Any]) -> TileGrid:
        """The grid of a ``tiles.json`` record: ``crs``, ``transform`` (first 6 coefficients) and the
        width/height from ``window`` = ``[col_off, row_off, width, height]``."""
        t = tuple(float(v) for v in list(rec["transform"])[:6])
        w, h = rec["window"][2:4]
        return cls(crs=str(rec["crs"]), transform=t, width=int(w), height=int(h))  # type: ignore[arg-type]

    @classmethod
    def from_raster(cls, path: str | Path) -> TileGrid:
        """The grid of an existing georeferenced raster (e.g. a tile image)."""
        with rasterio.open(path) as src:
            if src.crs is None:
                raise ValueError(f"{path}: raster has no CRS")
            return cls(crs=crs_string(src.crs.to_wkt()), transform=tuple(src.transform)[:6],
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
        corners = [apply_affine(a, 0, 0), apply_affine(a, w, 0), apply_affine(a, w, h), apply_affine(a, 0, h)]
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


def apply_affine(t: Affine, col: float, row: float) -> tuple[float, float]:
    """``t`` applied to (col, row), written out (affine's ``*`` on tuples is being deprecated)."""
    return (t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f)


def burn(shapes: Sequence[tuple[BaseGeometry, int]], grid: TileGrid, *, all_touched: bool = False) -> np.ndarray:
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
