"""Pipeline benchmark against the strongest references measured in the same run, with correctness checks.

    bench/run                      # or: python bench/bench_pipeline.py [--runs 3] [--size 8192] [--skip-build]

Input: a generated 8192x8192 3-band uint8 scene at 0.15 m in EPSG:3857 (DEFLATE, tiled 512) and its
8-class label raster (see bench/scene_gen.py), cached in ``--cache`` (default $OEM_BENCH_CACHE or
/tmp/oem-bench-cache).  Every candidate runs in its own child process (``--worker``), so its peak RSS
(``os.wait4`` rusage: the child and everything it waited for) and CPU time are its own.  Each row is the
median of ``--runs`` runs; the reference is measured in the same invocation, interleaved with the
candidate.  One table is printed, then PASS/FAIL per correctness check and MET/NOT MET per target; the
exit status is 1 when a check FAILs (targets are reported, not enforced).

Row 1 (prepare+tile, issue 17) compares the pipeline with the references of bench/references.py: the
one-process WarpedVRT composite (1 and 2 threads at GDAL's default DEFLATE level, and 2 threads at ZLEVEL=1),
``gdalwarp -multi`` + ``gdal_retile.py`` (skipped with a note when gdal_retile.py is missing) and the floor of
the pipeline's own algorithm; its ratio column is the STRONGEST reference's time / the row's time.
Row 1b repeats the candidate on the 4x larger scene (16384², bounded memory).  Row 3 times the release's
placement of the work tiles (links, since they are final COGs) against ``shutil.copyfile`` + SHA-256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from references import WORKERS as REFERENCE_WORKERS  # noqa: E402
from references import composite_jobs, has_gdal_retile, lattice_te  # noqa: E402

TILE = 1024


# --------------------------------------------------------------------------------------------------
# Workers (run in a child process: ``bench_pipeline.py --worker NAME JSON``); each prints one JSON line
# --------------------------------------------------------------------------------------------------

def _cpu() -> float:
    import resource
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _peak_rss_mib() -> float:
    """Peak RSS (MiB) of this worker process and of the processes it waited for.

    The parent's ``os.wait4`` rusage is not used: Linux carries a process's peak RSS across ``exec``, so
    a child spawned (vfork/exec) by the big parent would report the parent's peak.  ``VmHWM`` is the
    high-water mark of this process's own address space (new at exec); RUSAGE_CHILDREN covers e.g. the
    gdalwarp processes of the reference (their figure is at least this worker's RSS when spawned)."""
    import resource
    hwm = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)


def _scene(a: dict):
    from pipeline.scene import Scene
    return Scene(source="bench", scene_id=Path(a["img"]).stem, kind="local", image=a["img"], license="CC0",
                 attribution="bench", landcover=a["lbl"])


def w_pipeline_tile(a: dict) -> dict:
    from pipeline.labels.landcover import write_label_tiles
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import write_scene_tiles
    out = Path(a["out"])
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), _cpu()
    scene = _scene(a)
    plan = plan_scene(scene)
    tiles, dropped = write_scene_tiles(scene, plan, out)
    labels = write_label_tiles(scene, plan, tiles, out)
    t1, c1 = time.perf_counter(), _cpu()
    (out / "tiles.json").write_text(json.dumps(tiles))
    digest = hashlib.sha256()
    for p in sorted((out / "images").glob("*.tif")) + sorted((out / "labels").glob("*.tif")):
        digest.update(p.read_bytes())
    return {"seconds": t1 - t0, "cpu": c1 - c0, "tiles": len(tiles), "dropped": len(dropped),
            "labels": len(labels), "digest": digest.hexdigest()}


def _read_labels(files: list[str]):
    import rasterio
    arrays = []
    for f in files:
        with rasterio.open(f) as ds:
            arrays.append(ds.read(1))
    return arrays


SEG_PASSES = 5


def _timed_passes(fn, arrays) -> tuple[float, float, list]:
    """One warm-up pass over all tiles (OpenCV's first calls start its thread pool), then
    ``SEG_PASSES`` timed passes; (median pass seconds, median pass CPU seconds, last pass's counts)."""
    res = [fn(x) for x in arrays]
    walls, cpus = [], []
    for _ in range(SEG_PASSES):
        t0, c0 = time.perf_counter(), _cpu()
        res = [fn(x) for x in arrays]
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus), res


def w_seg_pipeline(a: dict) -> dict:
    from pipeline.labels.segments import count_segments
    arrays = _read_labels(a["files"])

    def fn(x):
        r = count_segments(x)
        return [r["segments"][str(c)] for c in range(1, 9)]
    sec, cpu, counts = _timed_passes(fn, arrays)
    return {"seconds": sec, "cpu": cpu, "counts": counts}


def w_seg_floor(a: dict) -> dict:
    import cv2
    import numpy as np
    arrays = _read_labels(a["files"])

    def fn(x):
        return [cv2.connectedComponents(np.equal(x, c).view(np.uint8), connectivity=8)[0] - 1 for c in range(1, 9)]
    sec, cpu, counts = _timed_passes(fn, arrays)
    return {"seconds": sec, "cpu": cpu, "counts": counts}


def _placed(a: dict, place) -> dict:
    """Place every work tile of ``a["src"]`` (image and label) into a release folder with ``place(src, dst,
    kind) -> sha256``; timed."""
    src = Path(a["src"])
    tiles = json.loads((src / "tiles.json").read_text())
    out = Path(a["out"])
    shutil.rmtree(out, ignore_errors=True)
    rel = out / "release" / "bench"
    (rel / "images").mkdir(parents=True)
    (rel / "labels").mkdir(parents=True)
    t0, c0 = time.perf_counter(), _cpu()
    sums = []
    for n, t in enumerate(tiles, start=1):
        sums.append([place(src / t["image"], rel / "images" / f"bench_{n}.tif", "image"),
                     place(src / "labels" / f"{t['tile_id']}.tif", rel / "labels" / f"bench_{n}.tif", "label")])
    t1, c1 = time.perf_counter(), _cpu()
    return {"seconds": t1 - t0, "cpu": c1 - c0, "tiles": len(tiles), "sha256": sums}


def w_release_pipeline(a: dict) -> dict:
    """The release's per-tile path as ``pipeline.release.writer.write_release`` runs it (no tile cache):
    ``pipeline.release.tilecache.place_tile`` (a hard link when the work tile is already a policy COG, else a
    conversion) and the SHA-256 of the placed file."""
    import rasterio  # noqa: F401  (imported before timing, as in a build process)

    from pipeline.release.tilecache import place_tile
    return _placed(a, lambda src, dst, kind: place_tile(src, dst, kind=kind))


def w_release_copy(a: dict) -> dict:
    """Reference: ``shutil.copyfile`` of the same work tiles + SHA-256 of each copy."""
    from pipeline.release.manifest import sha256_file

    def place(src, dst, kind):
        shutil.copyfile(src, dst)
        return sha256_file(dst)
    return _placed(a, place)


def _same_pixels(work_tiles: Path, rel: Path) -> bool:
    import numpy as np
    import rasterio
    tiles = json.loads((work_tiles / "tiles.json").read_text())
    for n, t in enumerate(tiles, start=1):
        for a_path, b_path in ((work_tiles / t["image"], rel / "images" / f"bench_{n}.tif"),
                               (work_tiles / "labels" / f"{t['tile_id']}.tif", rel / "labels" / f"bench_{n}.tif")):
            with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
                if (a.crs != b.crs or a.transform != b.transform or not np.array_equal(a.read(), b.read())
                        or not np.array_equal(a.dataset_mask(), b.dataset_mask())):
                    return False
    return True


def w_build(a: dict) -> dict:
    """One ``luigi --module pipeline BuildRelease`` (the worker is a small process, so the peak RSS it
    reports is that of luigi and the task processes luigi waited for)."""
    t0, c0 = time.perf_counter(), _cpu()
    p = subprocess.run(a["cmd"], env=a["env"], cwd=a["cwd"], capture_output=True, text=True)
    t1, c1 = time.perf_counter(), _cpu()
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
    return {"seconds": t1 - t0, "cpu": c1 - c0, "rc": p.returncode}


WORKERS = {f.__name__[2:]: f for f in (w_pipeline_tile, w_seg_pipeline, w_seg_floor, w_release_pipeline,
                                       w_release_copy, w_build)}
WORKERS.update(REFERENCE_WORKERS)


# --------------------------------------------------------------------------------------------------
# Parent: child processes, measurements, checks
# --------------------------------------------------------------------------------------------------

def _child(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[int, float, float, str]:
    """Run ``cmd``; (exit status, wall seconds, peak RSS MiB of it and its waited-for descendants, stdout)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, etext = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        sys.stderr.write(f"--- {' '.join(cmd[:6])} ... exited {p.returncode}\n{etext[-3000:]}\n")
    return p.returncode, wall, ru.ru_maxrss / 1024.0, text


def run_worker(name: str, args: dict, check: bool = True) -> dict:
    rc, wall, rss, text = _child([sys.executable, str(Path(__file__).resolve()), "--worker", name, json.dumps(args)])
    if rc != 0 and check:
        raise SystemExit(f"worker {name} failed (exit {rc})")
    res = json.loads(text.strip().splitlines()[-1])
    res["rss"], res["wall"] = res.pop("peak_rss_mib"), wall
    return res


def measure(pairs: list[tuple[str, str, dict]], runs: int) -> dict[str, list[dict]]:
    """Run every (key, worker, args) ``runs`` times, interleaved (A B A B ...), so load drifts hit both."""
    results: dict[str, list[dict]] = {k: [] for k, _, _ in pairs}
    for _ in range(runs):
        for key, name, args in pairs:
            load = os.getloadavg()[0]
            results[key].append(run_worker(name, args))
            results[key][-1]["load"] = max(load, os.getloadavg()[0])
    return results


def summary(rs: list[dict], mpx: float) -> dict:
    sec = statistics.median(r["seconds"] for r in rs)
    cpu = statistics.median(r["cpu"] / r["seconds"] for r in rs)
    return {"seconds": sec, "mpxs": mpx / sec if mpx else None, "rss": max(r["rss"] for r in rs), "cores": cpu,
            "cpu": statistics.median(r["cpu"] for r in rs), "runs": len(rs),
            "load": statistics.median(r.get("load", 0.0) for r in rs)}


def compare_tiles(pipe: Path, ref: Path) -> dict:
    """Image: mean |diff| and share within 8 DN; label: share equal; over the pixels valid in the
    pipeline's tile (its internal mask), on every tile both wrote.  Also checks the tiles' grids agree."""
    import numpy as np
    import rasterio
    tiles = json.loads((pipe / "tiles.json").read_text())
    n = sad = within = lab_eq = 0
    grid_ok = True
    for t in tiles:
        with rasterio.open(pipe / t["image"]) as a, rasterio.open(ref / t["image"]) as b:
            if a.crs != b.crs or not a.transform.almost_equals(b.transform, precision=1e-6):
                grid_ok = False
            valid = a.dataset_mask() > 0
            da, db = a.read().astype(np.int16), b.read().astype(np.int16)
        d = np.abs(da - db)[:, valid]
        sad += int(d.sum())
        within += int(np.count_nonzero(d <= 8))
        n += d.size
        with rasterio.open(pipe / "labels" / f"{t['tile_id']}.tif") as a, \
                rasterio.open(ref / "labels" / f"{t['tile_id']}.tif") as b:
            lab_eq += int(np.count_nonzero((a.read(1) == b.read(1))[valid]))
    px = n // 3
    return {"tiles": len(tiles), "mad": sad / max(n, 1), "within8": within / max(n, 1),
            "label_agree": lab_eq / max(px, 1), "grid_ok": grid_ok}


def build_env(tmp: Path) -> tuple[dict, list[str]]:
    """A luigi.cfg copying the repository's with [PipelineConfig] data_dir -> tmp/data."""
    import configparser
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "luigi.cfg")
    if not cfg.has_section("PipelineConfig"):
        cfg.add_section("PipelineConfig")
    cfg.set("PipelineConfig", "data_dir", str(tmp / "data"))
    cfg.set("PipelineConfig", "sources_file", str(ROOT / cfg.get("PipelineConfig", "sources_file",
                                                                  fallback="sources.yaml")))
    with open(tmp / "luigi.cfg", "w") as f:
        cfg.write(f)
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(tmp / "luigi.cfg"),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    luigi_bin = shutil.which("luigi") or ""
    cmd = [luigi_bin] if luigi_bin else [sys.executable, "-m", "luigi"]
    return env, cmd + ["--module", "pipeline", "BuildRelease"]


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _load_note(load: float, ncpu: int) -> str:
    return f"1-min load average {load:.1f} on {ncpu} CPUs" + (
        " (machine shared: other processes took CPU time, wall times are inflated)" if load > ncpu + 0.5 else "")


def row_prepare_tile(args: dict, plan: dict, work: Path, runs: int, size: int, rows: list, checks: list,
                     targets: list) -> dict:
    """Row 1: the pipeline's prepare+tile vs the composite, gdalwarp + gdal_retile.py and the floor."""
    from pipeline.raster.cog import validate_cog
    grid = plan["grid"]
    jobs = composite_jobs(plan)
    mpx = len(jobs) * TILE * TILE / 1e6
    pipe_out, ncpu = work / "pipeline", os.cpu_count() or 1
    comp = {"img": args["img"], "lbl": args["lbl"], "crs": grid["crs"], "jobs": jobs}
    pairs = [("pipe", "pipeline_tile", {**args, "out": str(pipe_out)}),
             ("composite, 1 thread", "composite", {**comp, "out": str(work / "c1"), "threads": 1}),
             ("composite, 2 threads", "composite", {**comp, "out": str(work / "c2"), "threads": 2}),
             ("composite, 2 thr., ZLEVEL=1", "composite", {**comp, "out": str(work / "c3"), "threads": 2,
                                                            "zlevel": 1})]
    gdal = has_gdal_retile()
    if gdal:
        pairs.append(("gdalwarp -multi+gdal_retile", "gdal_retile",
                      {**args, "out": str(work / "gdal"), "crs": grid["crs"], "te": lattice_te(plan),
                       "gsd": grid["gsd"]}))
    pairs.append(("floor (own algorithm)", "floor", {**args, "plan": plan, "tmp": str(work)}))
    res = measure(pairs, runs)
    s = {k: summary(v, mpx) for k, v in res.items()}
    refs = [k for k in s if k not in ("pipe", "floor (own algorithm)")]
    strongest = min(refs, key=lambda k: s[k]["seconds"])
    best_comp = min((k for k in refs if k.startswith("composite")), key=lambda k: s[k]["seconds"])
    sp, fl = s["pipe"], s["floor (own algorithm)"]
    label = f"{size}² 0.15 m EPSG:3857 -> {len(jobs)} tiles 0.3 m {grid['crs']}"
    rows.append(("1 prepare+tile (image+label)", label, "pipeline", sp, s[strongest]["seconds"] / sp["seconds"]))
    for k in refs + ["floor (own algorithm)"]:
        rows.append(("", f"(strongest reference: {strongest})" if k == refs[0] else "", k, s[k],
                     s[strongest]["seconds"] / s[k]["seconds"]))
    ref_name = "gdalwarp" if gdal else "the composite (gdal_retile.py not found: install gdal-bin)"
    cmp = compare_tiles(pipe_out, work / ("gdal" if gdal else "c2"))
    checks.append((f"tiles: same grid as {ref_name}", cmp["grid_ok"], f"{cmp['tiles']} tiles"))
    checks.append((f"image tiles vs {ref_name} -r average (MAD <= 2 DN, >= 99 % within 8 DN)",
                   cmp["mad"] <= 2.0 and cmp["within8"] >= 0.99,
                   f"MAD {cmp['mad']:.3f} DN, {cmp['within8'] * 100:.2f} % within 8 DN"))
    checks.append((f"label tiles vs {ref_name} -r mode (>= 98 % equal)", cmp["label_agree"] >= 0.98,
                   f"{cmp['label_agree'] * 100:.2f} % equal"))
    files = sorted(pipe_out.glob("images/*.tif")) + sorted(pipe_out.glob("labels/*.tif"))
    problems = [p for f in files for p in validate_cog(f)]
    checks.append(("work tiles are valid COGs (validate_cog, warnings included)", bool(files) and not problems,
                   problems[0] if problems else f"{len(files)} files"))
    digests = {r["digest"] for r in res["pipe"]}
    checks.append(("work tiles byte-identical across runs", len(digests) == 1, f"{len(res['pipe'])} runs"))
    load = _load_note(sp["load"], ncpu)
    targets.append((f"prepare+tile <= 3.0 s wall for the {size}² scene", sp["seconds"] <= 3.0,
                    f"{sp['seconds']:.2f} s ({sp['cpu']:.2f} core-s); {load}"))
    targets.append(("prepare+tile <= 1.3x the floor", sp["seconds"] <= 1.3 * fl["seconds"],
                    f"{sp['seconds'] / fl['seconds']:.2f}x (floor {fl['seconds']:.2f} s = {fl['cpu']:.2f} core-s / "
                    f"{min(2, ncpu)}); by CPU {sp['cpu'] / fl['cpu']:.2f}x the floor's core-s"))
    bc = s[best_comp]
    targets.append((">= 1.5x the best composite's throughput", bc["seconds"] / sp["seconds"] >= 1.5,
                    f"{bc['seconds'] / sp['seconds']:.2f}x vs {best_comp} ({bc['seconds']:.2f} s); by CPU "
                    f"{bc['cpu'] / sp['cpu']:.2f}x; vs the strongest reference ({strongest}) "
                    f"{s[strongest]['seconds'] / sp['seconds']:.2f}x"))
    targets.append((f"both cores busy in prepare+tile (>= {0.75 * min(ncpu, 2):.1f} cores)",
                    sp["cores"] >= 0.75 * min(ncpu, 2), f"{sp['cores']:.2f} cores"))
    return sp


def row_memory(cache: Path, size: int, work: Path, runs: int, sp: dict, rows: list, targets: list) -> None:
    """Row 1b: the candidate on the 4x larger scene; peak RSS < 400 MiB at both sizes, growth <= 64 MiB."""
    from scene_gen import generate
    bimg, blbl = generate(cache, 2 * size)
    bargs = {"img": str(bimg), "lbl": str(blbl), "out": str(work / "pipeline_4x")}
    bres = measure([("big", "pipeline_tile", bargs)], runs)
    bp = summary(bres["big"], bres["big"][0]["tiles"] * TILE * TILE / 1e6)
    rows.append(("1b prepare+tile, 4x larger scene", f"{2 * size}² -> {bres['big'][0]['tiles']} tiles",
                 "pipeline", bp, None))
    grow = bp["rss"] - sp["rss"]
    targets.append(("peak RSS < 400 MiB at 1x and 4x pixels, growth <= 64 MiB",
                    max(sp["rss"], bp["rss"]) < 400 and grow <= 64,
                    f"{sp['rss']:.0f} -> {bp['rss']:.0f} MiB ({grow:+.0f})"))


def row_release(pipe_out: Path, work: Path, runs: int, rows: list, checks: list) -> None:
    """Row 3: placing the work tiles into a release (links + SHA-256) vs copyfile + SHA-256."""
    from pipeline.raster.cog import validate_cog
    from pipeline.release.manifest import sha256_file
    res = measure([("pipe", "release_pipeline", {"src": str(pipe_out), "out": str(work / "rel")}),
                   ("copy", "release_copy", {"src": str(pipe_out), "out": str(work / "copy")})], runs)
    ntiles = res["pipe"][0]["tiles"]
    mpx = ntiles * TILE * TILE / 1e6
    sp3, sc3 = summary(res["pipe"], mpx), summary(res["copy"], mpx)
    rows.append(("3 release placement (image+label)", f"{ntiles} work tiles (final COGs)", "place_tile+sha256",
                 sp3, sc3["seconds"] / sp3["seconds"]))
    rows.append(("", "", "copyfile+sha256", sc3, 1.0))
    relb = work / "rel" / "release" / "bench"
    tiles = json.loads((pipe_out / "tiles.json").read_text())
    pairs = [(pipe_out / t["image"], relb / "images" / f"bench_{n}.tif") for n, t in enumerate(tiles, 1)]
    pairs += [(pipe_out / "labels" / f"{t['tile_id']}.tif", relb / "labels" / f"bench_{n}.tif")
              for n, t in enumerate(tiles, 1)]
    linked = sum(os.stat(a).st_ino == os.stat(b).st_ino for a, b in pairs)
    same = sum(a.read_bytes() == b.read_bytes() for a, b in pairs)
    checks.append(("release: every tile placed by link / copy, none converted (byte-identical to the work tile)",
                   same == len(pairs), f"{linked} linked, {same - linked} copied, {len(pairs) - same} converted"))
    det = all(r["sha256"] == res["pipe"][0]["sha256"] for r in res["pipe"])
    ok = det and all(sha256_file(relb / "images" / f"bench_{n}.tif") == s[0] and
                     sha256_file(relb / "labels" / f"bench_{n}.tif") == s[1]
                     for n, s in enumerate(res["pipe"][-1]["sha256"], start=1))
    checks.append(("release tiles: checksums right, byte-identical reruns", ok, f"{ntiles} tiles"))
    problems = [p for _, b in pairs for p in validate_cog(b) if ": warning:" not in p]
    checks.append(("release tiles are valid COGs with the work tiles' pixels, mask and grid",
                   not problems and _same_pixels(pipe_out, relb), problems[0] if problems else f"{len(pairs)} files"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=8192, help="scene width/height in pixels (default 8192)")
    ap.add_argument("--runs", type=int, default=3, help="runs per row, median reported (default 3, min 3)")
    ap.add_argument("--build-runs", type=int, default=3, help="demo builds (each cold, in a new data dir)")
    ap.add_argument("--cache", default=os.environ.get("OEM_BENCH_CACHE", "/tmp/oem-bench-cache"))
    ap.add_argument("--skip-build", action="store_true", help="leave out row 4 (the demo build)")
    ap.add_argument("--skip-memory", action="store_true", help="leave out the 4x larger scene (RSS scaling)")
    a = ap.parse_args()
    if a.worker:
        res = WORKERS[a.worker[0]](json.loads(a.worker[1]))
        res["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(res))
        return 0
    runs = max(3, a.runs)
    from scene_gen import generate

    from pipeline.raster.plan import plan_scene

    cache = Path(a.cache)
    img, lbl = generate(cache, a.size)
    work = Path(tempfile.mkdtemp(prefix="oem-bench-", dir=cache))
    ncpu = os.cpu_count() or 1
    rows: list[tuple] = []
    checks: list[tuple[str, bool, str]] = []
    targets: list[tuple[str, bool, str]] = []
    try:
        args = {"img": str(img), "lbl": str(lbl)}
        plan = plan_scene(_scene(args))
        sp = row_prepare_tile(args, plan, work, runs, a.size, rows, checks, targets)
        pipe_out = work / "pipeline"
        if not a.skip_memory:
            row_memory(cache, a.size, work, runs, sp, rows, targets)

        # ---- 2. segment counting ----------------------------------------------------------------
        files = sorted(str(p) for p in (pipe_out / "labels").glob("*.tif"))
        res = measure([("pipe", "seg_pipeline", {"files": files}), ("floor", "seg_floor", {"files": files})], runs)
        smpx = len(files) * TILE * TILE / 1e6
        sp2, sf2 = summary(res["pipe"], smpx), summary(res["floor"], smpx)
        total = sum(map(sum, res["floor"][-1]["counts"]))
        rows.append(("2 segment counting", f"{len(files)} label tiles, {total} segments ({SEG_PASSES} passes/run)",
                     "count_segments", sp2, sp2["mpxs"] / sf2["mpxs"]))
        rows.append(("", "", "cv2.connectedComponents", sf2, 1.0))
        same = all(r["counts"] == res["floor"][0]["counts"] for r in res["pipe"] + res["floor"])
        checks.append(("segment counts == cv2.connectedComponents (8-conn.) per class", same,
                       f"{total} segments"))
        targets.append(("segment counting <= 1.5x the floor's time", sp2["seconds"] <= 1.5 * sf2["seconds"],
                        f"{sp2['seconds'] / sf2['seconds']:.2f}x"))

        row_release(pipe_out, work, runs, rows, checks)

        # ---- 4. demo build ----------------------------------------------------------------------
        if not a.skip_build:
            cold, noop, rss_b, rss_n, cores_b = [], [], [], [], []
            build_ok = True
            for i in range(max(1, a.build_runs)):
                bdir = work / f"build{i}"
                bdir.mkdir()
                env, cmd = build_env(bdir)
                bargs = {"cmd": cmd, "env": env, "cwd": str(ROOT)}
                r1 = run_worker("build", bargs)
                r2 = run_worker("build", bargs)
                cold.append(r1["seconds"])
                cores_b.append(r1["cpu"] / r1["seconds"])
                rss_b.append(r1["rss"])
                noop.append(r2["seconds"])
                rss_n.append(r2["rss"])
                build_ok &= r1["rc"] == 0 and r2["rc"] == 0
                rel = sorted((bdir / "data" / "releases").glob("*"))
                if i == 0:
                    vrc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(rel[-1])] if rel else
                                         ["false"], cwd=ROOT, env=env, capture_output=True).returncode
                    nimg = len(json.loads((rel[-1] / "manifest.json").read_text())["images"]) if rel else 0
                shutil.rmtree(bdir, ignore_errors=True)
            bmpx = nimg * TILE * TILE / 1e6
            bc = {"seconds": statistics.median(cold), "mpxs": bmpx / statistics.median(cold), "rss": max(rss_b),
                  "cores": statistics.median(cores_b), "runs": len(cold)}
            bn = {"seconds": statistics.median(noop), "mpxs": None, "rss": max(rss_n), "cores": None,
                  "runs": len(noop)}
            rows.append(("4 demo build (luigi BuildRelease)", f"default sources.yaml, {nimg} released tiles",
                         "cold build", bc, None))
            rows.append(("", "", "no-op rebuild", bn, bn["seconds"] / bc["seconds"]))
            checks.append(("demo build + rebuild exit 0, release validates", build_ok and vrc == 0,
                           f"exit codes ok: {build_ok}, validate exit {vrc}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"oem-pipeline benchmark  {time.strftime('%Y-%m-%d')}, {ncpu} CPUs, 1-min load average "
          f"{os.getloadavg()[0]:.1f} at the end; median of {runs} runs; cores = CPU time / wall time; "
          f"ratio = reference time / row time (row 1: the strongest reference's; row 4: no-op/cold time)")
    head = f"| {'row':<34} | {'input':<52} | {'candidate':<28} | {'s (median)':>10} | {'Mpx/s':>7} | " \
           f"{'peak RSS MiB':>12} | {'cores':>5} | {'ratio':>6} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for row, inp, cand, s, ratio in rows:
        print(f"| {row:<34} | {inp:<52} | {cand:<28} | {s['seconds']:>10.3f} | {fmt(s['mpxs'], '7.2f'):>7} | "
              f"{s['rss']:>12.0f} | {fmt(s['cores'], '5.2f'):>5} | {fmt(ratio, '6.2f'):>6} |")
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    for name, ok, detail in targets:
        print(f"{'MET ' if ok else 'NOT MET'}  target {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
