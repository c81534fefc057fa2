"""Peak memory of preparing and tiling one large scene: it must not grow with the scene.

Generates a 20000x20000 3-band uint8 GeoTIFF (DEFLATE level 1, 512x512 internal tiles; content is a cheap
repeated pattern so generation takes seconds) at 0.15 m in UTM zone 33N, then, in a child process, runs
the pipeline's prepare + tiling on it exactly as ``PrepareScene`` / ``TileScene`` do:
``pipeline.raster.plan.plan_scene`` (0.15 m -> 0.3 m grid, 10000x10000 px) and
``pipeline.raster.tiling.write_scene_tiles`` (windowed warp straight into 1024x1024 tiles) on a
``pipeline.scene.Scene``.  The child's peak RSS is read with ``resource.getrusage(RUSAGE_CHILDREN)``
(``ru_maxrss``) once it has exited.  The source image alone is 1.1 GiB of pixels, so a peak below
``--limit-gib`` (1.5 GiB) shows nothing loads the scene whole.  Exit 1 when the peak is above the limit or
the tiling fails.

    python bench/bench_memory.py                       # 20000 px, limit 1.5 GiB
    python bench/bench_memory.py --size 8000 --keep /tmp/bench-mem
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CRS = "EPSG:32633"
GSD = 0.15
BLOCK = 512


def make_scene_file(path: Path, size: int) -> float:
    """Write the test GeoTIFF block by block (bounded memory); returns seconds taken."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    t0 = time.perf_counter()
    yy, xx = np.mgrid[0:BLOCK, 0:BLOCK]
    base = np.stack([(xx // 4) % 256, (yy // 4) % 256, ((xx + yy) // 8) % 256]).astype(np.uint8)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": CRS,
        "transform": Affine(GSD, 0.0, 500000.0, 0.0, -GSD, 5350000.0), "tiled": True,
        "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "zlevel": 1, "interleave": "pixel",
        "photometric": "RGB", "BIGTIFF": "IF_SAFER",
    }
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(path, "w", **profile) as ds:
        for i, row in enumerate(range(0, size, BLOCK)):
            h = min(BLOCK, size - row)
            for j, col in enumerate(range(0, size, BLOCK)):
                w = min(BLOCK, size - col)
                block = base[:, :h, :w] + np.uint8((7 * i + 13 * j) % 64)  # blocks differ a little
                ds.write(block, window=Window(col, row, w, h))
    return time.perf_counter() - t0


def _child(image: str, out_dir: str, result_file: str) -> None:
    """Runs in the measured child process: prepare + tile the scene, write a small JSON result."""
    from pipeline.params import ProcessingParams
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import write_scene_tiles
    from pipeline.scene import Scene

    params = ProcessingParams()
    scene = Scene(source="bench", scene_id="big", kind="local", image=image, license="CC0-1.0",
                  attribution="bench_memory synthetic scene")
    t0 = time.perf_counter()
    plan = plan_scene(scene, targets=params.target_gsds, tile_size=params.tile_size)
    t1 = time.perf_counter()
    tiles, dropped = write_scene_tiles(scene, plan, Path(out_dir), tile_size=params.tile_size,
                                       max_nodata_fraction=params.max_nodata_fraction)
    t2 = time.perf_counter()
    Path(result_file).write_text(json.dumps({
        "grid": plan["grid"], "resampling": plan["resampling"], "tiles": len(tiles), "dropped": len(dropped),
        "plan_s": t1 - t0, "tile_s": t2 - t1,
    }))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=20000, help="scene width and height in pixels")
    ap.add_argument("--limit-gib", type=float, default=1.5, help="highest acceptable peak RSS of the child")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        image = work / f"scene_{args.size}.tif"
        if not image.exists():
            gen_s = make_scene_file(image, args.size)
            print(f"generated {image.name}: {args.size}x{args.size}x3 uint8 at {GSD} m, "
                  f"{image.stat().st_size / 2**20:.0f} MiB on disk in {gen_s:.1f} s", flush=True)
        out_dir = work / "tiles"
        shutil.rmtree(out_dir, ignore_errors=True)
        result_file = work / "result.json"
        result_file.unlink(missing_ok=True)

        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        ctx = mp.get_context("spawn")  # a fresh interpreter: its peak is the pipeline's, not this process's
        t0 = time.perf_counter()
        proc = ctx.Process(target=_child, args=(str(image), str(out_dir), str(result_file)))
        proc.start()
        proc.join()
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        if proc.exitcode != 0 or not result_file.exists():
            print(f"FAIL: prepare + tiling exited with {proc.exitcode}", file=sys.stderr)
            return 1
        if peak_kib <= before:
            print("warning: the child's peak did not exceed an earlier child's; reported value is an upper bound",
                  file=sys.stderr)
        res = json.loads(result_file.read_text())
        peak_gib = peak_kib / 2**20
        g = res["grid"]
        print(f"grid {g['width']}x{g['height']} px at {g['gsd']} m ({g['crs']}), image resampling "
              f"{res['resampling']['image']}: {res['tiles']} tiles written, {res['dropped']} dropped")
        print(f"plan {res['plan_s']:.1f} s, tiling {res['tile_s']:.1f} s, child wall {wall:.1f} s")
        source_gib = args.size * args.size * 3 / 2**30
        print(f"peak RSS of prepare + tiling: {peak_gib:.3f} GiB ({peak_kib / 1024:.0f} MiB); "
              f"source pixels {source_gib:.2f} GiB; limit {args.limit_gib} GiB")
        if peak_gib >= args.limit_gib:
            print(f"FAIL: peak RSS {peak_gib:.3f} GiB >= {args.limit_gib} GiB", file=sys.stderr)
            return 1
        print("OK")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
