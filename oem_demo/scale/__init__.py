"""Generator of an OpenEarthMap-shaped synthetic ``local`` source, for scale builds of the pipeline.

``generate(root, scale="full" | "small" | "extra", seed=0, workers=2)`` writes, deterministically::

    <root>/<region>/<scene>.tif            RGB uint8 GeoTIFF (JPEG-YCbCr or DEFLATE; some with an
                                           internal mask, an alpha band or nodata = 0 edges)
    <root>/labels/<region>/<scene>.tif     8-class ids (0 = unlabelled, outside the valid area) on the
                                           image grid, DEFLATE
    <root>/scale_manifest.json             generator parameters, the plan (every scene's parameters and
                                           expected tiles), per-scene digests and file sizes, summary

``full``: 97 regions, 55 countries, 6 continents, ~7 600 expected candidate tiles, ~5 200 released,
~14 Gpx of source in ~8-9 GB; ``small``: 12 regions, ~300 candidates, ~200 released (a test);
``extra``: one new region (Reykjavík, 40-70 candidates) to add to a release.  See
the modules of this package: ``variants`` (what), ``plan`` (where, how big, expected tiles), ``geo`` (the
pipeline's GSD and tiling rules), ``world`` / ``landuse`` / ``render`` (pixels), ``write`` (files),
``report`` (summary).  CLI: ``python -m oem_demo.scale --root DIR --scale full|small|extra``.

Reruns are cheap: the plan is kept in the manifest under a digest of (generator version, planning code,
scale, seed) and a scene is rewritten only when the digest of its parameters and the pixel code changed
or its files are missing or of another size.
Files of scenes that are no longer planned are removed (only files the manifest lists).  Every scene
centre is checked against the pipeline's own region rule (``locate``); mismatches are reported.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from oem_demo.scale.plan import SceneSpec
from oem_demo.scale.report import format_report, summarize

#: scale-2: region folders named with the pipeline's transliterated slugs (wroclaw, diyarbakir) and the GSD
#: rule's tolerance below 0.25 m.  A folder written by another version is not touched unless ``force``.
VERSION = "scale-2"
MANIFEST = "scale_manifest.json"


#: Modules whose code decides the plan, and those that decide a scene's pixels and files.
PLAN_MODULES = ("plan", "geo", "regions", "variants")
PIXEL_MODULES = ("world", "landuse", "render", "write")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def code_digest(modules: tuple[str, ...]) -> str:
    """Digest of the source code of ``modules`` (so a code change regenerates what it affects)."""
    here = Path(__file__).resolve().parent
    return _digest([(m, hashlib.sha256((here / f"{m}.py").read_bytes()).hexdigest()) for m in modules])


def plan_digest(scale: str, seed: int) -> str:
    return _digest({"version": VERSION, "code": code_digest(PLAN_MODULES), "scale": scale, "seed": seed})


def scene_digest(spec: SceneSpec) -> str:
    """Digest of everything a scene's files depend on: its parameters and the pixel code."""
    return _digest({"version": VERSION, "code": code_digest(PIXEL_MODULES), "spec": spec.to_json()})


def _load_manifest(root: Path) -> dict:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _save_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=list))
    os.replace(tmp, root / MANIFEST)


def _plan(scale: str, seed: int, old: dict) -> tuple[list[SceneSpec], list[str], bool]:
    """(scenes, locate mismatches, reused?) -- from the manifest when its plan digest matches."""
    if old.get("plan_digest") == plan_digest(scale, seed) and "plan" in old:
        specs = [SceneSpec.from_json(s) for s in old["plan"]]
        return specs, list(old.get("locate_mismatches", [])), True
    from oem_demo.scale.regions import check_location, extra_region, regions
    from oem_demo.scale.variants import plan

    specs = plan(scale, seed)
    by_name = {r.name: r for r in (*regions(), extra_region())}
    mismatches = [m for s in specs if (m := check_location(by_name[s.region], s.lon, s.lat))]
    return specs, mismatches, False


def _is_current(root: Path, spec: SceneSpec, entry: dict | None) -> bool:
    if not entry or entry.get("digest") != scene_digest(spec):
        return False
    return all((root / rel).is_file() and (root / rel).stat().st_size == size for rel, size in entry["files"].items())


def _job(args: tuple[str, dict]) -> tuple[str, dict]:
    root, spec_json = args
    from oem_demo.scale.write import write_scene

    spec = SceneSpec.from_json(spec_json)
    return spec.rel_path, write_scene(Path(root), spec)


def _remove_stale(root: Path, old: dict, keep: set[str]) -> int:
    """Remove files of scenes the manifest lists but the plan no longer has, and leftover ``.part`` files."""
    removed = 0
    for rel, entry in (old.get("scenes") or {}).items():
        if rel not in keep:
            for f in entry.get("files", {}):
                (root / f).unlink(missing_ok=True)
                removed += 1
    for part in root.rglob("*.part"):
        part.unlink()
    return removed


def generate(root: str | os.PathLike, *, scale: str = "full", seed: int = 0, workers: int = 2,
             force: bool = False) -> dict:
    """Generate (or bring up to date) the source under ``root``; returns the summary (see
    :func:`report.summarize`).  A folder written by another generator version or for another scale raises
    :class:`ValueError` unless ``force`` (bringing it up to date removes and rewrites its scenes: tens of
    minutes for ``full``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    old = _load_manifest(root)
    if old and not force and (old.get("version"), old.get("scale")) != (VERSION, scale):
        raise ValueError(f"{root} holds a {old.get('scale')!r} source of generator version {old.get('version')!r}, "
                         f"not {scale!r} of {VERSION!r}: force=True (--force) regenerates it")
    specs, mismatches, reused = _plan(scale, seed, old)
    plan_s = time.perf_counter() - t0
    by_path = {s.rel_path: s for s in specs}
    removed = _remove_stale(root, old, set(by_path))
    scenes = {rel: e for rel, e in (old.get("scenes") or {}).items()
              if rel in by_path and _is_current(root, by_path[rel], e)}
    todo = sorted((s for s in specs if s.rel_path not in scenes), key=lambda s: -s.width * s.height)
    manifest = {"generator": "oem-pipeline synthetic OpenEarthMap-shaped source", "version": VERSION,
                "scale": scale, "seed": seed, "plan_digest": plan_digest(scale, seed),
                "plan": [s.to_json() for s in specs], "locate_mismatches": mismatches, "scenes": scenes}
    _save_manifest(root, manifest)
    t_gen = time.perf_counter()
    jobs = [(str(root), s.to_json()) for s in todo]
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for rel, result in pool.imap_unordered(_job, jobs):
                scenes[rel] = dict(result, digest=scene_digest(by_path[rel]))
                _save_manifest(root, manifest)
    else:
        for rel, result in map(_job, jobs):
            scenes[rel] = dict(result, digest=scene_digest(by_path[rel]))
            _save_manifest(root, manifest)
    run = {"plan_reused": reused, "plan_s": round(plan_s, 2), "generated": len(todo),
           "skipped": len(specs) - len(todo), "removed_files": removed,
           "wall_s": round(time.perf_counter() - t0, 2), "generate_wall_s": round(time.perf_counter() - t_gen, 2),
           "main_cpu_s": round(time.process_time() - c0, 2), "workers": workers,
           "load_avg_1min": round(os.getloadavg()[0], 2)}
    summary = summarize(root, specs, scenes, mismatches, run, scale=scale, seed=seed)
    manifest["summary"] = summary
    _save_manifest(root, manifest)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="folder of the generated source")
    ap.add_argument("--scale", default="full", choices=("full", "small", "extra"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="also write the summary to this file")
    ap.add_argument("--force", action="store_true", help="regenerate a folder of another generator version or scale")
    args = ap.parse_args(argv)
    try:
        summary = generate(args.root, scale=args.scale, seed=args.seed, workers=args.workers, force=args.force)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, sort_keys=True))
    return 1 if summary["locate_mismatches"] else 0


