"""``python -m pipeline status [DATA_DIR] [--json]``: where a data folder stands, read from its files only.

Per source (its newest catalog, ``catalog/*.json``): scenes, catalog rejects, and the failure of a source
whose fetch failed.  Per region (the newest tile pool, ``work/**/pool-*.json``, and the newest selection
beside it): tiles, labelled, pending annotation, and the selection stage:

* ``awaiting labelled subset``: the region is sampled (more candidates than the quota) and tiles of its
  labelled subset (every k-th tile, which trains the selection model) await annotation;
* ``awaiting selected annotations``: selected tiles await annotation (their pre-annotations are in the todo
  folder); ``complete``: every selected tile is labelled; ``not selected yet``: no selection was made.

Per release (``releases/*/manifest.json``): images, regions, splits, pending and rejects rows, the latter per
stage (a completed annotation no tile uses, a footprint file that cannot be read, ... are rows of the release
only).  Rejected scenes/tiles are counted per source from the pool's rejects.  Nothing is computed or
written: the answer is as fresh as the last build.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pipeline.dataset.ids import natural_key


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: (p.stat().st_mtime, str(p)), default=None)


def _rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def _stages(path: Path) -> dict[str, int]:
    """Rows of a release's ``rejects.csv`` per stage (``prepare``, ``tile``, ``annotation``, ``footprints``, ...)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return dict(sorted(Counter(row.get("stage") or "?" for row in csv.DictReader(fh)).items()))


def _sources(data: Path, pool: dict | None) -> dict[str, dict]:
    catalogs: dict[str, tuple[float, dict]] = {}
    for path in sorted((data / "catalog").glob("*.json")):
        cat = _load(path)
        if isinstance(cat, dict) and "source" in cat:
            when = path.stat().st_mtime
            if cat["source"] not in catalogs or when >= catalogs[cat["source"]][0]:
                catalogs[cat["source"]] = (when, cat)
    tiles = Counter(t.get("source") for t in (pool or {}).get("tiles", []))
    rejected = Counter(r.get("source") for r in (pool or {}).get("rejects", []))
    out = {}
    for name, (_, cat) in sorted(catalogs.items()):
        entry = {"kind": cat.get("kind"), "scenes": len(cat.get("scenes", [])),
                 "catalog_rejects": len(cat.get("rejects", [])), "tiles": tiles.get(name, 0),
                 "rejects": rejected.get(name, 0)}
        if cat.get("failed"):
            entry["failed"] = cat["failed"]
        out[name] = entry
    return out


def _stage(tiles: dict[str, dict], sel: dict | None) -> str:
    if sel is None:
        return "not selected yet"
    pending = {k for k, t in tiles.items() if t.get("status") == "pending"}
    chosen = {s["id"] for s in sel.get("selected", [])}
    if int(sel.get("n_candidates", 0)) > len(chosen) and pending & set(sel.get("labelled", [])):
        return "awaiting labelled subset"
    return "awaiting selected annotations" if pending & chosen else "complete"


def _regions(pool: dict | None, selection: dict | None) -> dict[str, dict]:
    by_region: dict[str, dict[str, dict]] = defaultdict(dict)
    for t in (pool or {}).get("tiles", []):
        by_region[str(t.get("region"))][t["key"]] = t
    out = {}
    for region in sorted(by_region, key=natural_key):
        tiles = by_region[region]
        status = Counter(t.get("status") for t in tiles.values())
        sel = ((selection or {}).get("regions") or {}).get(region)
        out[region] = {"tiles": len(tiles), "labelled": status.get("labelled", 0), "pending": status.get("pending", 0),
                       "selected": len(sel.get("selected", [])) if sel else 0, "stage": _stage(tiles, sel)}
    return out


def _releases(data: Path) -> dict[str, dict]:
    out = {}
    for manifest in sorted((data / "releases").glob("*/manifest.json"), key=lambda p: natural_key(p.parent.name)):
        m = _load(manifest)
        if not isinstance(m, dict):
            continue
        images = m.get("images", [])
        stages = _stages(manifest.parent / "rejects.csv")  # rejects.csv read once: its rows, per stage
        out[manifest.parent.name] = {
            "images": len(images), "regions": dict(sorted(Counter(i.get("region") for i in images).items())),
            "splits": {s: m.get("splits", {}).get(s, 0) for s in ("train", "val", "test")},
            "pending": _rows(manifest.parent / "pending.csv"), "rejects": sum(stages.values()),
            "rejects_by_stage": stages,
            "failed_sources": sorted(s["name"] for s in m.get("sources", []) if s.get("failed")),
        }
    return out


def folder_status(data_dir: str | Path) -> dict[str, Any]:
    """The status of a data folder (module docstring) as a JSON-able dict."""
    data = Path(data_dir)
    pool_path = _newest(list(data.glob("work/**/pool-*.json")))
    pool = _load(pool_path) if pool_path else None
    sel_path = _newest(list(pool_path.parent.glob("selection-*.json"))) if pool_path else None
    selection = _load(sel_path) if sel_path else None
    return {
        "data_dir": str(data), "pool": str(pool_path) if pool_path else None,
        "selection": str(sel_path) if sel_path else None,
        "sources": _sources(data, pool), "regions": _regions(pool, selection), "releases": _releases(data),
    }


def format_status(st: dict[str, Any]) -> str:
    lines = [f"Data folder {st['data_dir']}"]
    lines.append("Sources:" if st["sources"] else "Sources: none catalogued yet")
    for name, s in st["sources"].items():
        extra = f"  FAILED ({s['failed'].get('reason')})" if s.get("failed") else ""
        lines.append(f"  {name} ({s['kind']}): {s['scenes']} scenes, {s['tiles']} tiles, {s['rejects']} rejects{extra}")
    lines.append("Regions:" if st["regions"] else "Regions: no tile pool yet")
    for name, r in st["regions"].items():
        lines.append(f"  {name}: {r['tiles']} tiles, {r['labelled']} labelled, {r['pending']} pending, "
                     f"{r['selected']} selected; {r['stage']}")
    lines.append("Releases:" if st["releases"] else "Releases: none")
    for name, r in st["releases"].items():
        failed = f", without failed source(s) {', '.join(r['failed_sources'])}" if r["failed_sources"] else ""
        stages = ", ".join(f"{stage} {n}" for stage, n in r["rejects_by_stage"].items())
        lines.append(f"  {name}: {r['images']} images in {len(r['regions'])} regions (train {r['splits']['train']}, "
                     f"val {r['splits']['val']}, test {r['splits']['test']}), {r['pending']} pending, "
                     f"{r['rejects']} rejects{f' ({stages})' if stages else ''}{failed}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", nargs="?", default=None, help="the data folder (default: data)")
    parser.add_argument("--PipelineConfig-data-dir", dest="config_data_dir", default=None, metavar="DATA_DIR",
                        help="the same, written as on the luigi command line")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir or args.config_data_dir or "data")
    if not data.is_dir():
        print(f"{data}: no such data folder")
        return 1
    st = folder_status(data)
    print(json.dumps(st, indent=1, sort_keys=True) if args.json else format_status(st))
    return 0
