"""Scale benchmark (issue 17 item 1): an OpenEarthMap-sized release built end to end on this machine.

    python bench/bench_scale.py                          # generate `full` (~7.6 GB, once) and build it
    python bench/bench_scale.py --root /work/proto/scale/data/full --extra-root /work/proto/scale/data/extra
    python bench/bench_scale.py --scale small            # the ~200-image variant (minutes, not an hour)
    ... --json out.json                                  # also write every figure as JSON

Input: a synthetic OpenEarthMap-shaped ``local`` source (:mod:`oem_demo.scale`).  Without ``--root`` it is
generated into ``--cache`` (default ``$OEM_BENCH_CACHE`` or ``/tmp/oem-bench-cache``)``/scale/<scale>``
(instant when already there); with ``--root`` an existing generated folder is used as it is (never
regenerated: its ``scale_manifest.json`` holds the plan).  Generation is timed apart from the build.

Measured, each as one ``luigi --module pipeline BuildRelease --workers N`` process (the repository's
``luigi.cfg``: local scheduler) in a fresh data folder under ``--work``:

1. the **build** of the source: wall time, CPU time, peak RSS of the whole process tree (``/proc`` sampled
   every 0.2 s: the sum over the ``luigi`` process and all its descendants) and the largest single process,
   the 1-min load average, and the per-stage breakdown (fetch, prepare, tile, label, count, select, split,
   stats, release, other) from Luigi's ``PROCESSING_TIME`` events, which the build summary records
   (``OEM_BUILD_TIMES``, :mod:`tasks.summary`); scheduling = wall - (sum of task seconds) / workers;
2. a **no-op rebuild** (same command: target < 30 s, and no task may run);
3. **adding the extra source** (Reykjavík) as release ``v0.2.0`` into the same data folder, against building
   that source alone in a fresh data folder (target: <= 1.1x), ``--repeat`` pairs (default 3), the data folder
   reset to what the no-op rebuild left before each; the verdict is on the median ratio, and the add build must
   run exactly the tasks (families and counts) that building the source alone runs;
4. the **floor** under that ratio (``bench/rebuild_floor.py``): the CPU seconds that writing ``v0.2.0``'s folder
   takes beyond the alone build's whatever the design, then with the manifest, index and STAC collection re-made,
   and the ratio each gives at best, over both cores.

Checks (PASS/FAIL; exit status 1 when one FAILs): ``python -m pipeline validate`` on every release; released
images, pool candidates, per-region counts, dropped tiles (nodata rows of ``rejects.csv``) and rejected
scenes equal the generator's expectations, re-derived from the stored plan with the current GSD and tiling
rules (:func:`oem_demo.scale.geo.expect`), so a source generated before a rule changed is still checked
exactly; a scene's region is what the pipeline's region rule (``locate``) says today with the local adapter's
hint, the image's folder (so a source generated with older region slugs is checked under today's slugs), its
country and continent what the rule says of its centre (NOTE lines list the scenes whose expectation changed
since generation, and those whose coordinates alone would name another region).  Targets print MET / NOT MET
(< 60 min end to end on 2 cores, no-op < 30 s, add-region <= 1.1x); they are reported, not enforced.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rebuild_floor import floor_line, run_floor  # noqa: E402

STAGES = {"FetchSource": "fetch", "CatalogSource": "fetch", "PrepareScene": "prepare", "TileScene": "tile",
          "LabelScene": "label", "CountSegments": "count", "SelectTiles": "select", "SplitDataset": "split",
          "ComputeStats": "stats", "StageRelease": "release", "BuildRelease": "release"}
STAGE_ORDER = ("fetch", "prepare", "tile", "label", "count", "select", "split", "stats", "release", "other")
TARGET_BUILD_S, TARGET_NOOP_S, TARGET_ADD_RATIO = 3600.0, 30.0, 1.1
#: Disk use per candidate tile (work tiles) and per released image (one release), measured on `small`.
WORK_MB_PER_CANDIDATE, RELEASE_MB_PER_IMAGE = 1.3, 1.8


# --------------------------------------------------------------------------------------------------
# Sources and expectations
# --------------------------------------------------------------------------------------------------

def _source(root: str | None, scale: str, cache: Path, workers: int) -> tuple[Path, dict]:
    """(folder, generation info): an existing generated folder as it is, or ``generate`` into the cache."""
    from oem_demo.scale import MANIFEST, generate

    if root:
        path = Path(root)
        if not (path / MANIFEST).is_file():
            raise SystemExit(f"{path}: no {MANIFEST} (not a folder written by oem_demo.scale)")
        return path, {"generated": False, "root": str(path)}
    path = cache / "scale" / scale
    t0 = time.perf_counter()
    summary = generate(path, scale=scale, workers=workers)
    return path, {"generated": True, "root": str(path), "wall_s": round(time.perf_counter() - t0, 1),
                  "scenes_written": summary["run"]["generated"]}


def expectations(root: Path) -> dict:
    """What the pipeline must make of a generated source, from its stored plan under today's rules."""
    from oem_demo.scale import MANIFEST
    from oem_demo.scale.geo import expect
    from oem_demo.scale.plan import SceneSpec
    from oem_demo.scale.regions import extra_region, regions
    from oem_demo.scale.report import released
    from pipeline.dataset.regions import locate

    manifest = json.loads((root / MANIFEST).read_text())
    table = (*regions(), extra_region())
    cand: Counter[str] = Counter()
    where: dict[str, tuple[str, str]] = {}
    dropped, rejected, changed, moved = 0, [], [], []
    for raw in manifest["plan"]:
        s = SceneSpec.from_json(raw)
        planned = min((r for r in table if r.country_code == s.country_code),
                      key=lambda r: math.hypot(r.lon - s.lon, r.lat - s.lat)).name
        # the region the build will name: the local adapter's hint is the image's folder (the planned region's
        # slug), and country and continent come from the centre (today's rule)
        loc = locate(s.lon, s.lat, region_hint=PurePosixPath(s.rel_path).parent.name or None)
        bare = locate(s.lon, s.lat).region
        if bare != planned:
            moved.append(f"{s.rel_path}: planned for {planned}; without its folder's name the region rule says {bare}")
        where[loc.region] = (loc.country_code, loc.continent)
        x = expect(s.crs, s.transform, s.width, s.height, s.valid)
        if (x.tiles, x.target_gsd) != (s.tiles, s.target_gsd):
            changed.append(f"{s.rel_path}: {s.tiles} tiles at {s.target_gsd} m -> {x.tiles} at {x.target_gsd} m")
        if x.reject:
            rejected.append({"scene": s.rel_path, "reason": x.reject})
        cand[loc.region] += x.tiles
        dropped += x.dropped
    per_region = {r: {"candidates": n, "released": released(n)} for r, n in sorted(cand.items()) if n}
    return {"candidates": sum(cand.values()), "released": sum(v["released"] for v in per_region.values()),
            "per_region": per_region, "dropped_tiles": dropped, "rejected_scenes": rejected,
            "regions": len(per_region), "countries": len({where[r][0] for r in per_region}),
            "continents": len({where[r][1] for r in per_region}), "changed_by_rules": changed,
            "region_moved": moved,
            "country_codes": sorted({where[r][0] for r in per_region}),
            "continent_names": sorted({where[r][1] for r in per_region}),
            "generator_summary": {k: manifest.get("summary", {}).get("expected", {}).get(k)
                                  for k in ("candidates", "released", "dropped_tiles")}}


def _sources_file(path: Path, sources: dict[str, Path]) -> Path:
    lines = ["sources:"]
    for name, root in sources.items():
        lines += [f"  - name: {name}", "    kind: local", f"    location: {root}",
                  "    license: CC0-1.0 (synthetic)",
                  "    attribution: Synthetic OpenEarthMap-shaped source generated by oem_demo.scale",
                  "    enabled: true"]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# One build: a luigi process, its tree's peak RSS and its per-stage times
# --------------------------------------------------------------------------------------------------

def _tree_rss_mib(pid: int) -> tuple[float, float]:
    """(sum of RSS over ``pid`` and its descendants, largest single RSS), MiB, from /proc."""
    parent: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    values = [rss.get(p, 0.0) for p in tree]
    return sum(values), max(values, default=0.0)


def build(data: Path, sources: Path, workers: int, release: str = "v0.1.0") -> dict:
    """Run one ``luigi --module pipeline BuildRelease`` and measure it (module doc)."""
    luigi_bin = Path(sys.executable).with_name("luigi")
    times = data / f"build-times-{release}-{time.time_ns()}.json"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(luigi_bin), "--module", "pipeline", "BuildRelease", "--workers", str(workers),
           "--PipelineConfig-data-dir", str(data), "--PipelineConfig-sources-file", str(sources),
           "--PipelineConfig-release", release]
    env = dict(os.environ, OEM_BUILD_TIMES=str(times), PYTHONPATH=str(ROOT))
    load0, r0 = os.getloadavg()[0], os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"tree": 0.0, "single": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree, single = _tree_rss_mib(proc.pid)
            peak["tree"], peak["single"] = max(peak["tree"], tree), max(peak["single"], single)
            done.wait(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    r1 = os.times()
    stages = dict.fromkeys(STAGE_ORDER, 0.0)
    ran = 0
    families: dict[str, int] = {}
    if times.is_file():
        for family, v in json.loads(times.read_text())["families"].items():
            stages[STAGES.get(family, "other")] += v["seconds"]
            ran += v["tasks"]
            families[family] = v["tasks"]
    busy = sum(stages.values())
    return {"release": release, "rc": proc.returncode, "wall_s": round(wall, 2),
            "cpu_s": round((r1.children_user - r0.children_user) + (r1.children_system - r0.children_system), 1),
            "peak_rss_tree_mib": round(peak["tree"]), "peak_rss_single_mib": round(peak["single"]),
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "tasks_ran": ran,
            "families": families, "stages_s": {k: round(v, 1) for k, v in stages.items()},
            "scheduling_s": round(max(0.0, wall - busy / workers), 1), "output_tail": out[-3000:]}


# --------------------------------------------------------------------------------------------------
# Checks of a built release
# --------------------------------------------------------------------------------------------------

def _nth(i: int) -> str:
    """The suffix of the ``i``-th repeat's build names (``add_extra``, ``add_extra #2``, ...)."""
    return f" #{i + 1}" if i else ""


def _entries(root: Path) -> set[str]:
    """Every file and folder under ``root``."""
    out = set()
    for folder, dirs, files in os.walk(root):
        out.update(os.path.join(folder, n) for n in dirs + files)
    return out


def _reset(root: Path, kept: set[str]) -> None:
    """Remove what was made under ``root`` since :func:`_entries` gave ``kept`` (new folders whole)."""
    for folder, dirs, files in os.walk(root, topdown=True):
        for d in list(dirs):
            if os.path.join(folder, d) not in kept:
                shutil.rmtree(os.path.join(folder, d))
                dirs.remove(d)
        for f in files:
            if os.path.join(folder, f) not in kept:
                os.remove(os.path.join(folder, f))


def _validate(release_dir: Path) -> tuple[bool, str]:
    p = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release_dir)], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return p.returncode == 0, (p.stdout + p.stderr).strip()[-400:]


def _pool_candidates(data: Path) -> Counter[str] | None:
    pools = sorted(data.glob("work/**/pool-*.json"), key=lambda p: p.stat().st_mtime)
    if not pools:
        return None
    return Counter(t["region"] for t in json.loads(pools[-1].read_text())["tiles"])


def check_release(data: Path, release: str, exp: dict) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) rows for the release ``release`` built in ``data``."""
    rel = data / "releases" / release
    if not (rel / "manifest.json").is_file():
        return [("release built", False, f"{rel} has no manifest.json")]
    images = json.loads((rel / "manifest.json").read_text())["images"]
    per_region = Counter(im["region"] for im in images)
    want = {r: v["released"] for r, v in exp["per_region"].items()}
    diff = {r: (per_region.get(r, 0), want.get(r, 0)) for r in set(per_region) | set(want)
            if per_region.get(r, 0) != want.get(r, 0)}
    with open(rel / "rejects.csv", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    nodata = sum(1 for r in rejects if "nodata" in r.get("reason", ""))
    reasons = sorted(r["reason"] for r in rejects if "coarser" in r.get("reason", ""))
    pool = _pool_candidates(data)
    ok, detail = _validate(rel)
    rows = [
        ("pipeline validate", ok, detail.splitlines()[-1] if detail else ""),
        ("released images = expected", len(images) == exp["released"], f"{len(images)} vs {exp['released']}"),
        ("per-region released = expected", not diff, f"{len(diff)} regions differ {dict(list(diff.items())[:5])}"),
        ("regions / countries / continents", (len(per_region), len({im['country_code'] for im in images}),
                                              len({im['continent'] for im in images}))
         == (exp["regions"], exp["countries"], exp["continents"]),
         f"{len(per_region)}/{len({im['country_code'] for im in images})}/{len({im['continent'] for im in images})}"
         f" vs {exp['regions']}/{exp['countries']}/{exp['continents']}"),
        ("dropped tiles (nodata rejects) = expected", nodata == exp["dropped_tiles"],
         f"{nodata} vs {exp['dropped_tiles']}"),
        ("rejected scenes and reasons = expected", reasons == sorted(r["reason"] for r in exp["rejected_scenes"]),
         f"{len(reasons)} vs {len(exp['rejected_scenes'])}"),
    ]
    rows.append(("pool candidates = expected", pool is not None and sum(pool.values()) == exp["candidates"]
                 and all(pool.get(r, 0) == v["candidates"] for r, v in exp["per_region"].items()),
                 f"{sum(pool.values())} vs {exp['candidates']}" if pool is not None else f"no pool-*.json in {data}"))
    return rows


def _merge(a: dict, b: dict) -> dict:
    """Expectations of two sources built together."""
    per_region = {**a["per_region"], **b["per_region"]}
    return {"candidates": a["candidates"] + b["candidates"], "released": a["released"] + b["released"],
            "per_region": per_region, "dropped_tiles": a["dropped_tiles"] + b["dropped_tiles"],
            "rejected_scenes": a["rejected_scenes"] + b["rejected_scenes"], "regions": len(per_region),
            "countries": len(set(a["country_codes"]) | set(b["country_codes"])),
            "continents": len(set(a["continent_names"]) | set(b["continent_names"]))}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def _row(name: str, b: dict) -> str:
    s = b["stages_s"]
    return (f"{name:<22} {b['wall_s']:>9.1f} {b['cpu_s']:>8.1f} {b['peak_rss_tree_mib']:>8} "
            f"{b['peak_rss_single_mib']:>7} {b['tasks_ran']:>6} " + " ".join(f"{s[k]:>7.1f}" for k in STAGE_ORDER)
            + f" {b['scheduling_s']:>6.1f}  {b['load_avg_1min'][0]:.1f}-{b['load_avg_1min'][1]:.1f}")


def report(res: dict) -> list[str]:
    head = (f"{'build':<22} {'wall s':>9} {'cpu s':>8} {'tree MiB':>8} {'1p MiB':>7} {'tasks':>6} "
            + " ".join(f"{k:>7}" for k in STAGE_ORDER) + f" {'sched':>6}  load")
    lines = [head] + [_row(name, b) for name, b in res["builds"].items()]
    lines.append("(stage columns: task seconds summed over tasks, from Luigi PROCESSING_TIME; sched = wall - "
                 "sum / workers; tree MiB: peak RSS summed over the luigi process tree, 1p MiB: largest process)")
    for note in res["expected"].get("changed_by_rules", []):
        lines.append(f"NOTE  expectation changed by today's GSD / tiling rules: {note}")
    for note in res["expected"].get("region_moved", []):
        lines.append(f"NOTE  a scene whose coordinates alone name another region: {note}")
    for name, rows in res["checks"].items():
        lines += [f"{'PASS' if ok else 'FAIL'}  {name}: {check} ({detail})" for check, ok, detail in rows]
    b = res["builds"]
    targets = [(f"end to end < {TARGET_BUILD_S / 60:.0f} min on {res['workers']} workers ({res['scale']})",
                b["build"]["wall_s"] < TARGET_BUILD_S, f"{b['build']['wall_s'] / 60:.1f} min"),
               (f"no-op rebuild < {TARGET_NOOP_S:.0f} s", b["noop"]["wall_s"] < TARGET_NOOP_S
                and b["noop"]["tasks_ran"] == 0, f"{b['noop']['wall_s']:.1f} s, {b['noop']['tasks_ran']} tasks ran")]
    pairs = [(b[f"add_extra{_nth(i)}"], b[f"extra_alone{_nth(i)}"]) for i in range(res.get("repeat", 0))]
    if pairs:
        ratios = [add["wall_s"] / max(alone["wall_s"], 1e-9) for add, alone in pairs]
        mid = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
        res["add_ratio"], res["add_ratios"] = round(ratios[mid], 2), [round(r, 2) for r in ratios]
        lines.append("every (add, alone) pair: " + ", ".join(
            f"{add['wall_s']:.1f} / {alone['wall_s']:.1f} s = {r:.2f}x" for (add, alone), r in zip(pairs, ratios)))
        lines.append("CPU seconds of every pair: " + ", ".join(
            f"{add['cpu_s']:.1f} / {alone['cpu_s']:.1f} s = {add['cpu_s'] / max(alone['cpu_s'], 1e-9):.2f}x"
            for add, alone in pairs))
        same = all(add["families"] == alone["families"] for add, alone in pairs)
        targets.append(("adding the extra source runs exactly the tasks that building it alone runs", same,
                        ", ".join(f"{f} {n}" for f, n in sorted(pairs[0][0]["families"].items()))))
        add, alone = pairs[mid]
        targets.append((f"adding the extra source <= {TARGET_ADD_RATIO}x building it alone (median of {len(pairs)})",
                        ratios[mid] <= TARGET_ADD_RATIO,
                        f"{add['wall_s']:.1f} s / {alone['wall_s']:.1f} s = {ratios[mid]:.2f}x"))
        lines.append(floor_line(res.get("floor") or {}, alone["wall_s"]).strip())
    lines += [f"{'MET' if ok else 'NOT MET'}  {what}: {detail}" for what, ok, detail in targets]
    return lines


def run(args: argparse.Namespace) -> dict:
    cache = Path(args.cache)
    main_root, gen_main = _source(args.root, args.scale, cache, args.workers)
    extra_root, gen_extra = _source(args.extra_root, "extra", cache, args.workers) if not args.no_extra else (None, {})
    exp = expectations(main_root)
    exp_extra = expectations(extra_root) if extra_root else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="oem-bench-scale-"))
    shutil.rmtree(work / "data", ignore_errors=True)
    shutil.rmtree(work / "data-extra", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    need_gb = (WORK_MB_PER_CANDIDATE * exp["candidates"] + RELEASE_MB_PER_IMAGE * exp["released"]
               * (1 if exp_extra is None else 2)) / 1024 * 1.15
    free_gb = shutil.disk_usage(work).free / 2**30
    if free_gb < need_gb and not args.no_space_check:
        raise SystemExit(f"{work}: {free_gb:.0f} GB free, the builds need about {need_gb:.0f} GB "
                         "(pass --work on a larger disk, or --no-space-check)")
    res: dict = {"scale": args.scale if not args.root else str(main_root), "workers": args.workers,
                 "generation": {"main": gen_main, "extra": gen_extra}, "work": str(work),
                 "expected": {k: v for k, v in exp.items() if k != "per_region"}, "builds": {}, "checks": {}}
    only_main = _sources_file(work / "sources-main.yaml", {"scale-main": main_root})
    print(f"building {main_root} ({exp['released']} images expected) in {work} ...", flush=True)
    res["builds"]["build"] = build(work / "data", only_main, args.workers)
    res["checks"]["v0.1.0"] = check_release(work / "data", "v0.1.0", exp)
    res["builds"]["noop"] = build(work / "data", only_main, args.workers)
    if exp_extra is not None and extra_root is not None:
        both = _sources_file(work / "sources-both.yaml", {"scale-main": main_root, "scale-extra": extra_root})
        alone = _sources_file(work / "sources-extra.yaml", {"scale-extra": extra_root})
        kept = _entries(work / "data")
        res["repeat"] = args.repeat
        for i in range(args.repeat):  # each pair from the data folder as the no-op rebuild left it
            _reset(work / "data", kept)
            shutil.rmtree(work / "data-extra", ignore_errors=True)
            res["builds"][f"add_extra{_nth(i)}"] = build(work / "data", both, args.workers, release="v0.2.0")
            res["builds"][f"extra_alone{_nth(i)}"] = build(work / "data-extra", alone, args.workers)
        res["checks"]["v0.2.0 (+extra)"] = check_release(work / "data", "v0.2.0", _merge(exp, exp_extra))
        res["checks"]["extra alone"] = check_release(work / "data-extra", "v0.1.0", exp_extra)
        res["floor"] = run_floor([work / "data" / "releases" / "v0.1.0", work / "data" / "releases" / "v0.2.0",
                               work / "data-extra" / "releases" / "v0.1.0"])
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", help="an existing generated source (used as it is); default: generate --scale")
    ap.add_argument("--scale", default="full", choices=("full", "small"), help="variant to generate (no --root)")
    ap.add_argument("--extra-root", help="an existing generated `extra` source; default: generate it")
    ap.add_argument("--no-extra", action="store_true", help="skip the add-one-source measurement")
    ap.add_argument("--cache", default=os.environ.get("OEM_BENCH_CACHE", "/tmp/oem-bench-cache"))
    ap.add_argument("--work", help="folder of the builds' data (default: a temporary folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    ap.add_argument("--no-space-check", action="store_true", help="build even when the disk looks too small")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3,
                    help="(add, alone) pairs measured, each from the state the no-op rebuild left (verdict: median)")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args(argv)
    res = run(args)
    print("\n".join(report(res)))
    for name, b in res["builds"].items():
        if b["rc"] != 0:
            print(f"--- {name}: luigi exited {b['rc']}; output tail:\n{b['output_tail']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    failed = any(not ok for rows in res["checks"].values() for _, ok, _ in rows)
    return 1 if failed or any(b["rc"] != 0 for b in res["builds"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
