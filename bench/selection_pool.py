"""Synthetic OpenEarthMap-shaped candidate pool for the hard-image selection's tests and benchmark.

``generate_pool(PoolParams(...))`` draws ``n_regions`` regions (:func:`poolrender.make_region`), gives each
between ``min_tiles`` and ``max_tiles`` candidate tiles (so most regions hold more than the 70 that
OpenEarthMap keeps and need sampling), renders every tile with its TRUE 8-class label
(:func:`poolrender.render_tile`) and writes both as Cloud-Optimized GeoTIFFs the way release tiles are
stored: GDAL ``COG`` driver, 512 blocks, DEFLATE (images level 1 with the horizontal predictor, labels
without), internal overviews at 1/2, 1/4 and 1/8 (512/256/128 for 1024 px tiles) resampled by ``AVERAGE``
for images and ``MODE`` for labels, EPSG:32633 at the region's GSD.

The pool is cached under ``<root>/<key>/`` where ``key`` is a SHA-256 prefix of the parameters and
:data:`GENERATOR_VERSION`; ``index.json`` is written last, so an interrupted run regenerates.  Tiles are
rendered by ``workers`` processes (default 2); every tile draws from its own generator seeded with
``(seed, region index, tile index)``, so the files do not depend on the number of workers.

    python -m bench.selection_pool           # the default pool: 97 regions, 50-120 tiles each, 1024 px
    python -m bench.selection_pool --small   # 6 regions x 120 tiles of 256 px (the pytest pool)

It is generated on demand into a cache folder (default ``<tmp>/oem-selection-pool``), never committed.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import selection_render as poolrender

GENERATOR_VERSION = "2"
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "oem-selection-pool"


@dataclass(frozen=True)
class PoolParams:
    """Everything that determines the pool's files (and therefore its cache key)."""

    n_regions: int = 97
    min_tiles: int = 50
    max_tiles: int = 120
    px: int = 1024
    seed: int = 0

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self) | {"version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


SMALL = PoolParams(n_regions=6, min_tiles=120, max_tiles=120, px=256, seed=1)


def region_name(params: PoolParams, index: int, style: poolrender.RegionStyle) -> str:
    return f"r{index:03d}_{style.biome}"


def _region_rng(params: PoolParams, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([params.seed, index, 0xC0FFEE]))


def _tile_rng(params: PoolParams, region: int, tile: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([params.seed, region, tile]))


def _write_cog(path: Path, arr: np.ndarray, gsd: float, kind: str) -> None:
    """Write ``arr`` ((bands, h, w) uint8) as a COG with overviews at 1/2, 1/4, 1/8; atomic rename."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    opts = {"COMPRESS": "DEFLATE", "LEVEL": "1", "BLOCKSIZE": "512", "NUM_THREADS": "1",
            "OVERVIEWS": "FORCE_USE_EXISTING"}
    if kind == "image":
        opts |= {"PREDICTOR": "STANDARD", "OVERVIEW_RESAMPLING": "AVERAGE"}
    else:
        opts |= {"PREDICTOR": "NO", "OVERVIEW_RESAMPLING": "MODE"}
    levels = [f for f in (2, 4, 8) if arr.shape[1] // f >= 16]
    profile = {"driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1], "count": arr.shape[0],
               "dtype": "uint8", "crs": "EPSG:32633",
               "transform": rasterio.Affine(gsd, 0, 500000.0, 0, -gsd, 5000000.0)}
    if kind == "image":
        profile["photometric"] = "RGB"
    tmp = path.with_name(path.name + ".part")
    with rasterio.Env(GDAL_NUM_THREADS="1"), MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr)
            ds.build_overviews(levels, getattr(rasterio.enums.Resampling, "average" if kind == "image" else "mode"))
        with mem.open() as src:
            rasterio.shutil.copy(src, str(tmp), driver="COG", **opts)
    os.replace(tmp, path)


def _render_region_chunk(args: tuple) -> list[dict]:
    """Worker: render and write tiles ``tiles`` of region ``index``; returns their index records."""
    import cv2

    cv2.setNumThreads(1)
    params, index, tiles, folder = args
    style = poolrender.make_region(_region_rng(params, index), "")
    name = region_name(params, index, style)
    out = []
    for t in tiles:
        img, label, info = poolrender.render_tile(style, _tile_rng(params, index, t), params.px)
        tid = f"{name}_{t:04d}"
        image_path, label_path = Path(folder) / name / f"{tid}.tif", Path(folder) / name / f"{tid}_label.tif"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        _write_cog(image_path, np.ascontiguousarray(img.transpose(2, 0, 1)), style.gsd, "image")
        _write_cog(label_path, label[None], style.gsd, "label")
        out.append({"id": tid, "region": name, "image": str(image_path), "label": str(label_path), "info": info})
    return out


def _plan(params: PoolParams) -> list[tuple[int, int]]:
    """(region index, tile count) for every region."""
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0xB00]))
    return [(i, int(rng.integers(params.min_tiles, params.max_tiles + 1))) for i in range(params.n_regions)]


def generate_pool(params: PoolParams = PoolParams(), root: Path | str = DEFAULT_ROOT, *, workers: int = 2,
                  verbose: bool = True) -> dict:
    """Generate (or load from the cache) the pool; returns the index: ``{"params", "key", "regions":
    {region: [{"id", "region", "image", "label", "info"}, ...]}, "generation": {...}}`` with the tiles of
    each region in their stable order (tile number)."""
    folder = Path(root) / params.key()
    index_path = folder / "index.json"
    if index_path.is_file():
        return json.loads(index_path.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    jobs = []
    for region, count in _plan(params):
        for start in range(0, count, 20):
            jobs.append((params, region, list(range(start, min(count, start + 20))), str(folder)))
    t0, c0 = time.perf_counter(), _cpu_children() + time.process_time()
    records: list[dict] = []
    if workers > 1:
        # spawned, not forked: a test process that ran builds before holds threads (GDAL, OpenMP) whose locks a
        # forked child can inherit taken, and then waits forever (seen: test_incremental_release, then this)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            for part in ex.map(_render_region_chunk, jobs):
                records.extend(part)
    else:
        for job in jobs:
            records.extend(_render_region_chunk(job))
    wall, cpu = time.perf_counter() - t0, _cpu_children() + time.process_time() - c0
    regions: dict[str, list[dict]] = {}
    for r in records:
        regions.setdefault(r["region"], []).append(r)
    gen = {"tiles": len(records), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "workers": workers,
           "cpu_ms_per_tile": round(1000 * cpu / max(1, len(records)), 2),
           "load_1min": round(os.getloadavg()[0], 2)}
    index = {"params": dataclasses.asdict(params), "key": params.key(), "version": GENERATOR_VERSION,
             "regions": dict(sorted(regions.items())), "generation": gen}
    tmp = index_path.with_suffix(".part")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, index_path)
    if verbose:
        print(f"generated {len(records)} tiles ({params.px} px) in {len(regions)} regions: {wall:.1f} s wall, "
              f"{gen['cpu_ms_per_tile']:.1f} CPU-ms per tile (render + COG write), {workers} processes, "
              f"load {gen['load_1min']}")
    return index


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="the small pytest pool")
    ap.add_argument("--regions", type=int)
    ap.add_argument("--min-tiles", type=int)
    ap.add_argument("--max-tiles", type=int)
    ap.add_argument("--px", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", default=str(DEFAULT_ROOT))
    a = ap.parse_args(argv)
    p = SMALL if a.small else PoolParams()
    over = {"n_regions": a.regions, "min_tiles": a.min_tiles, "max_tiles": a.max_tiles, "px": a.px, "seed": a.seed}
    p = dataclasses.replace(p, **{k: v for k, v in over.items() if v is not None})
    index = generate_pool(p, a.root, workers=a.workers)
    n = sum(len(v) for v in index["regions"].values())
    print(f"pool {index['key']}: {len(index['regions'])} regions, {n} tiles, generation {index['generation']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
