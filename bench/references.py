"""References of ``bench/run``'s prepare+tile row (issue 17 item 4), run as workers of bench_pipeline.py.

* :func:`w_composite`: what a competent user writes without the pipeline: one process, per tile a
  :class:`rasterio.vrt.WarpedVRT` of the image (with alpha) and of the label, read whole and written as tiled
  DEFLATE GeoTIFFs (images predictor 2 + an internal mask where nodata), ``threads`` tiles at a time with one
  dataset handle per thread (GDAL releases the GIL).  GDAL ``average`` / ``mode`` (the methods the checks
  compare with), the same tile grids as the pipeline (given: not timed).  No COG layout, no overviews.
* :func:`w_gdal_retile`: ``gdalwarp -multi -wo NUM_THREADS=ALL_CPUS --config GDAL_NUM_THREADS ALL_CPUS`` to an
  uncompressed tiled GeoTIFF, then ``gdal_retile.py -ps 1024 1024`` (DEFLATE tiles).  gdal_retile cuts from the
  raster's origin with no offset option, so gdalwarp gets ``-te`` = the union of the pipeline's lattice and
  ``-tr gsd gsd``: the warped raster is exactly ``cols x rows`` full tiles on the pipeline's pixel grid, and
  gdal_retile's ``warped_<i>_<j>.tif`` is tile ``r<i-1>_c<j-1>``.  The image and the label chains run as two
  concurrent processes (its best wall time on 2 cores).  Its ``average`` / ``mode`` tiles are the
  correctness reference of the checks.
* :func:`w_floor`: the hardware floor of the pipeline's own algorithm: every component once, single thread,
  no pool, nothing done twice (decode every source block once, box-reduced for ``box+bilinear``; warp every
  tile from memory; warp every label; encode every final COG).  Floor wall = CPU seconds / min(2, CPUs).
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

TILE = 1024


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def w_composite(a: dict) -> dict:
    """Args: img, lbl, out, crs, jobs ``[[tile id, 6 affine coefficients]]``, threads, zlevel (None = GDAL's)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    out = Path(a["out"])
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    common = dict(driver="GTiff", width=TILE, height=TILE, dtype="uint8", crs=a["crs"], tiled=True, blockxsize=512,
                  blockysize=512, compress="deflate", **({"zlevel": a["zlevel"]} if a.get("zlevel") else {}))
    todo = iter(a["jobs"])
    lock = threading.Lock()

    def worker() -> None:
        with rasterio.open(a["img"]) as src, rasterio.open(a["lbl"]) as lsrc:
            while True:
                with lock:
                    job = next(todo, None)
                if job is None:
                    return
                tid, tf = job[0], Affine(*job[1])
                with WarpedVRT(src, crs=a["crs"], transform=tf, width=TILE, height=TILE,
                               resampling=Resampling.average, add_alpha=True) as v:
                    data = v.read()
                valid = data[-1] > 0
                with rasterio.open(out / "images" / f"{tid}.tif", "w", count=3, transform=tf, predictor=2,
                                   photometric="RGB", **common) as dst:
                    dst.write(data[:3])
                    if not valid.all():
                        dst.write_mask(valid.astype(np.uint8) * 255)
                with WarpedVRT(lsrc, crs=a["crs"], transform=tf, width=TILE, height=TILE,
                               resampling=Resampling.mode) as v:
                    lab = v.read(1)
                lab[~valid] = 0
                with rasterio.open(out / "labels" / f"{tid}.tif", "w", count=1, transform=tf, **common) as dst:
                    dst.write(lab[np.newaxis])

    t0, c0 = time.perf_counter(), _cpu()
    with rasterio.Env(GDAL_CACHEMAX=64 * 1024 * 1024, GDAL_TIFF_INTERNAL_MASK=True):
        pool = [threading.Thread(target=worker) for _ in range(int(a["threads"]))]
        for p in pool:
            p.start()
        for p in pool:
            p.join()
    t1, c1 = time.perf_counter(), _cpu()
    return {"seconds": t1 - t0, "cpu": c1 - c0, "tiles": len(a["jobs"])}


def _retile_chain(src: str, out: Path, name: str, a: dict, resampling: str, predictor: bool) -> str:
    """The shell command (gdalwarp && gdal_retile.py) that makes ``out/<name>/warped_<i>_<j>.tif``."""
    warped = out / f"warped_{name}.tif"
    warp = ["gdalwarp", "-q", "-overwrite", "-multi", "-wo", "NUM_THREADS=ALL_CPUS", "--config", "GDAL_NUM_THREADS",
            "ALL_CPUS", "-t_srs", a["crs"], "-te", *map(repr, a["te"]), "-tr", repr(a["gsd"]), repr(a["gsd"]),
            "-r", resampling, "-co", "TILED=YES", "-co", "BLOCKXSIZE=512", "-co", "BLOCKYSIZE=512", src, str(warped)]
    retile = ["gdal_retile.py", "-q", "-ps", str(TILE), str(TILE), "-co", "TILED=YES", "-co", "BLOCKXSIZE=512",
              "-co", "BLOCKYSIZE=512", "-co", "COMPRESS=DEFLATE", *(["-co", "PREDICTOR=2"] if predictor else []),
              "-targetDir", str(out / name), str(warped)]
    return " && ".join(" ".join("'" + s.replace("'", "'\\''") + "'" for s in cmd) for cmd in (warp, retile))


def w_gdal_retile(a: dict) -> dict:
    """Args: img, lbl, out, crs, te (4 floats), gsd.  Tiles renamed to the pipeline's tile ids."""
    out = Path(a["out"])
    shutil.rmtree(out, ignore_errors=True)
    for d in ("images", "labels"):
        (out / d).mkdir(parents=True)
    chains = [_retile_chain(a["img"], out, "images", a, "average", True),
              _retile_chain(a["lbl"], out, "labels", a, "mode", False)]
    env = dict(os.environ, GDAL_CACHEMAX="256")
    t0, c0 = time.perf_counter(), _cpu()
    procs = [subprocess.Popen(["bash", "-c", c], env=env) for c in chains]
    if any(p.wait() for p in procs):
        raise SystemExit("gdalwarp / gdal_retile.py chain failed")
    t1, c1 = time.perf_counter(), _cpu()
    tiles = []
    for d in ("images", "labels"):
        for p in sorted((out / d).glob("warped_*.tif")):
            r, c = (int(v) for v in re.findall(r"_(\d+)_(\d+)\.tif$", p.name)[0])
            p.rename(out / d / f"r{r - 1:03d}_c{c - 1:03d}.tif")
            tiles += [f"r{r - 1:03d}_c{c - 1:03d}"] if d == "images" else []
    for p in out.glob("warped_*.tif"):
        p.unlink()
    return {"seconds": t1 - t0, "cpu": c1 - c0, "tiles": len(tiles)}


def _decode(img: str, lbl: str, k: int):
    """Every source block decoded once (image box-reduced by ``k``): (image, its transform, label, its
    transform, source CRS)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    with rasterio.open(img) as src, rasterio.open(lbl) as lsrc:
        h, w = src.height // k, src.width // k
        scene = np.empty((src.count, h, w), np.uint8)
        step = 512 // k * k
        for r in range(0, h * k, step):
            rows = min(step, h * k - r)
            scene[:, r // k:(r + rows) // k] = src.read(window=Window(0, r, w * k, rows),
                                                        out_shape=(src.count, rows // k, w),
                                                        resampling=Resampling.average)
        return scene, src.transform @ Affine.scale(k), lsrc.read(1)[np.newaxis], lsrc.transform, src.crs


def _part(arr, transform, crs, tile):
    """The part of the in-memory ``arr`` under ``tile`` (+ margin): (view, its transform)."""
    from affine import Affine

    from pipeline.raster.warp import TileGrid, source_window

    win = source_window(TileGrid(crs, transform, arr.shape[-1], arr.shape[-2]), tile)  # type: ignore[arg-type]
    r0, c0 = int(win.row_off), int(win.col_off)
    return arr[:, r0:r0 + int(win.height), c0:c0 + int(win.width)], transform @ Affine.translation(c0, r0)


def w_floor(a: dict) -> dict:
    """Args: img, lbl, plan (the pipeline's plan of the scene).  CPU seconds per component."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from pipeline.raster.cog import write_tile_cog
    from pipeline.raster.tiling import downsampling, tile_jobs
    from pipeline.raster.warp import TILE_GDAL_ENV, prereduce_factor

    plan = a["plan"]
    method = plan["resampling"]["image"]
    k = prereduce_factor(method, downsampling(plan), True)
    comp: dict[str, float] = {}
    with rasterio.Env(**TILE_GDAL_ENV):
        c = _cpu()
        scene, stf, label, ltf, scrs = _decode(a["img"], a["lbl"], k)
        comp["decode"] = _cpu() - c
        jobs = tile_jobs(plan, TILE)
        img_method = Resampling.bilinear if k > 1 else Resampling["average" if method == "box+bilinear" else method]
        tiles, c = [], _cpu()
        for _, tile, _ in jobs:
            part, ptf = _part(scene, stf, scrs, tile)
            dst = np.zeros((4, tile.height, tile.width), np.uint8)
            reproject(part, dst, src_transform=ptf, src_crs=scrs, dst_transform=tile.transform, dst_crs=tile.crs,
                      dst_alpha=4, resampling=img_method, init_dest_nodata=False)
            tiles.append(dst[:3])
        comp["warp"] = _cpu() - c
        labels, c = [], _cpu()
        for _, tile, _ in jobs:
            part, ptf = _part(label, ltf, scrs, tile)
            dst = np.zeros((1, tile.height, tile.width), np.uint8)
            reproject(part, dst, src_transform=ptf, src_crs=scrs, dst_transform=tile.transform, dst_crs=tile.crs,
                      resampling=Resampling[plan["resampling"]["label"]], src_nodata=None, dst_nodata=None,
                      init_dest_nodata=False)
            labels.append(dst)
        comp["lwarp"] = _cpu() - c
        with tempfile.TemporaryDirectory(dir=a.get("tmp")) as tmp:
            c = _cpu()
            for (tid, tile, _), rgb, lab in zip(jobs, tiles, labels):
                write_tile_cog(Path(tmp) / f"i{tid}.tif", rgb, crs=tile.crs, transform=tile.transform, kind="image")
                write_tile_cog(Path(tmp) / f"l{tid}.tif", lab, crs=tile.crs, transform=tile.transform, kind="label")
            comp["encode"] = _cpu() - c
    cpu = sum(comp.values())
    cores = min(2, os.cpu_count() or 1)
    return {"seconds": cpu / cores, "cpu": cpu, "components": {n: round(v, 3) for n, v in comp.items()},
            "tiles": len(jobs)}


WORKERS = {"composite": w_composite, "gdal_retile": w_gdal_retile, "floor": w_floor}


def lattice_te(plan: dict) -> list[float]:
    """``-te`` of gdalwarp: the union of the plan's tile lattice (module docstring)."""
    from pipeline.raster.tiling import tile_lattice

    grid = plan["grid"]
    gsd = grid["gsd"]
    lattice = tile_lattice(grid["width"], grid["height"], TILE)
    x0, y0 = grid["transform"][2], grid["transform"][5]
    c0, r0 = min(w[2] for w in lattice), min(w[3] for w in lattice)
    c1, r1 = max(w[2] for w in lattice) + TILE, max(w[3] for w in lattice) + TILE
    return [round(x0 + c0 * gsd, 6), round(y0 - r1 * gsd, 6), round(x0 + c1 * gsd, 6), round(y0 - r0 * gsd, 6)]


def composite_jobs(plan: dict) -> list:
    """``[[tile id, affine coefficients]]`` of the plan's lattice (the composite's tiles)."""
    from pipeline.raster.tiling import tile_jobs

    return [[tid, list(tile.transform)[:6]] for tid, tile, _ in tile_jobs(plan, TILE)]


def has_gdal_retile() -> bool:
    """Whether gdalwarp and gdal_retile.py are on PATH."""
    return bool(shutil.which("gdalwarp") and shutil.which("gdal_retile.py"))


__all__ = ["WORKERS", "composite_jobs", "has_gdal_retile", "lattice_te"]
