"""What a build would do, from what the data folder holds (no Luigi here: ``tasks.preview`` walks the graph).

Pure helpers of ``python -m pipeline plan``: why a source is fetched again (:func:`fetch_reason`), which
regions a rebuild touches (:func:`regions_touched`), the release delta that can be known before the build
runs (:func:`release_delta`), and the text form of a plan (:func:`format_plan`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.dataset.ids import image_key
from pipeline.progress import STAGES

#: Fields of a fetch record that come straight from the source's ``sources.yaml`` entry.
ENTRY_FIELDS = ("kind", "location", "license", "attribution")


def load_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: (p.stat().st_mtime_ns, str(p)), default=None)


def digest_siblings(folder: Path, name: str, suffix: str = "") -> list[Path]:
    """Entries ``<folder>/<name>-<12 hex digits><suffix>`` (never those of a source named ``<name>-x``)."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        stem = p.name[: len(p.name) - len(suffix)] if suffix and p.name.endswith(suffix) else p.name
        if suffix and not p.name.endswith(suffix):
            continue
        head, _, tail = stem.rpartition("-")
        if head == name and len(tail) == 12 and all(c in "0123456789abcdef" for c in tail):
            out.append(p)
    return out


def fetch_reason(earlier: dict | None, entry_digest: str, entry: dict, fetch_code: str,
                 content_digest: str | None = None, limits_digest: str | None = None,
                 scenes_digest: str | None = None) -> str:
    """Why a source whose current raw folder is missing is fetched: ``earlier`` is the fetch record of its
    newest other raw folder (None: there is none); ``content_digest``: the entry's digest without what only
    labels its images or says how their pixels are read (``made_by.content``: then no file is downloaded again);
    ``scenes_digest``: without what only labels its images (``made_by.scenes``: ``options.bands``, ``classes`` and
    ``crs`` count; a record made before it existed had ``content`` for it: then no scene is processed again
    either); ``limits_digest``: :func:`tasks.plan.limits_digest` (``made_by.limits``)."""
    if earlier is None:
        return "new"
    made = earlier.get("made_by")
    if isinstance(made, dict):
        if made.get("entry") != entry_digest:
            if content_digest is not None and made.get("content") == content_digest \
                    and made.get("fetch_code") == fetch_code:
                if scenes_digest is not None and made.get("scenes", made.get("content")) != scenes_digest:
                    return ("options.bands, classes or crs changed (its files are reused, its scenes are prepared, "
                            "tiled and labelled again)")
                return ("only its licence, attribution, regions, acquisition range or options.licences changed (its "
                        "files and scenes' work are reused)")
            return "entry changed"
        if made.get("fetch_code") == fetch_code and limits_digest is not None and made.get("limits") != limits_digest:
            return "limits on hostile input changed (what they left out is looked at again)"
        return f"code changed (fetch code {made.get('fetch_code')} -> {fetch_code})"
    changed = [f for f in ENTRY_FIELDS if f in earlier and earlier.get(f) != entry.get(f)
               and not (f == "location" and earlier.get(f) == "builtin:demo" and not entry.get(f))]
    if changed:
        return "entry changed (" + ", ".join(changed) + ")"
    return "entry options or fetch code changed (the earlier fetch record does not say which)"


def regions_touched(pool: dict | None, scenes: list[tuple[str, str]]) -> tuple[list[str], int]:
    """``(regions, unknown)``: the regions of the earlier pool's tiles of ``scenes`` (``(source, scene id)``)
    and how many of those scenes had no tile there (their region is known once they are tiled)."""
    where: dict[tuple[str, str], set[str]] = {}
    for t in (pool or {}).get("tiles", []):
        where.setdefault((str(t.get("source")), str(t.get("source_scene_id"))), set()).add(str(t.get("region")))
    regions: set[str] = set()
    unknown = 0
    for key in scenes:
        if key in where:
            regions |= where[key]
        else:
            unknown += 1
    return sorted(regions), unknown


def release_delta(*, exists: bool, previous: dict | None, split: dict | None, pool: dict | None,
                  sources: list[str]) -> dict[str, Any]:
    """Images added to / removed from the previous release, as far as known before running.

    ``split`` is the split record the build would use when it exists already (then the delta is exact),
    ``pool`` the tile pool it would use when that exists (then ``added`` has an upper bound)."""
    if exists:
        return {"added": 0, "removed": 0, "exact": True, "note": "the release exists: the build runs nothing"}
    before = {image_key(im): im for im in (previous or {}).get("images", []) or []}
    if split is not None:
        after = {image_key(im) for im in split.get("images", [])}
        return {"added": len(after - set(before)), "removed": len(set(before) - after), "exact": True,
                "images": len(after), "note": "from the split the build will reuse"}
    gone = sum(1 for im in before.values() if im.get("source") not in sources)
    out: dict[str, Any] = {"added": None, "removed": gone, "exact": False}
    if pool is not None:
        labelled = {image_key(t) for t in pool.get("tiles", []) if t.get("status") == "labelled"}
        out["added_at_most"] = len(labelled - set(before))
        out["note"] = ("added: known once the selection runs (at most the labelled pool tiles not released "
                       "before); removed: released images of sources no longer enabled")
    else:
        out["note"] = ("added: unknown until the scenes are tiled, labelled and selected (tiles, their regions "
                       "and labels are made by the build); removed: released images of sources no longer "
                       "enabled (released images of kept sources are always kept)")
    return out


def _count(n: int, more: bool) -> str:
    return ("?" if not n else f"{n}+") if more else str(n)


def format_plan(plan: dict[str, Any]) -> str:
    """The text form of a plan (``tasks.preview.make_plan``)."""
    lines = [f"Plan for release {plan['release']} in {plan['data_dir']}"
             + (f" (continues {plan['previous']})" if plan.get("previous") else "")]
    if plan["release_exists"]:
        lines.append("  the release exists: a build runs nothing")
    lines.append("Sources:")
    for s in plan["sources"]:
        scenes = f"{s['scenes']} scenes" if s["scenes"] is not None else (
            "scenes unknown until fetched" if s["fetch"]["action"] != "none" else "no catalog of the current code")
        todo = s["scenes_to_process"]
        todo_text = "" if todo is None else f", {todo} to (re)process"
        lines.append(f"  {s['name']}: fetch: {s['fetch']['action']} ({s['fetch']['why']}); catalog: "
                     f"{s['catalog']['action']} ({s['catalog']['why']}); {scenes}{todo_text}")
    unknown = set(plan["tasks_unknown"])
    counts = ", ".join(f"{f} {_count(n, f in unknown)}" for f, n in plan["tasks"].items() if n or f in unknown)
    lines.append(f"Tasks to run: {_count(plan['tasks_total'], bool(unknown))}" + (f" ({counts})" if counts else ""))
    stages = " | ".join(f"{s} {_count(n, bool(unknown & set(STAGES[s])))}" for s, n in plan["stages"].items())
    lines.append(f"  per stage: {stages}")
    if unknown:
        lines.append("  +: more once the catalogs of " + ", ".join(plan["sources_unknown"])
                     + " exist (their scenes are unknown until fetched)")
    lines.append(f"Tasks complete already: {sum(plan['tasks_complete'].values())}")
    reg = plan["regions"]
    if not reg["selection_runs"]:
        lines.append("Regions: no sampling or split changes")
    else:
        names = ", ".join(reg["touched"]) or "none known"
        later = [f"{reg['unknown_scenes']} scene(s) without tiles in the last pool"] if reg["unknown_scenes"] else []
        later += [f"the scenes of {s}" for s in plan["sources_unknown"]]
        lines.append(f"Regions: selection and splits run; regions with (re)processed scenes: {names}"
                     + (f" (the regions of {', '.join(later)}: known once tiled)" if later else ""))
    d = plan["release_delta"]
    added = d["added"] if d["added"] is not None else (f"unknown (at most {d['added_at_most']})"
                                                       if "added_at_most" in d else "unknown")
    lines.append(f"Release delta: +{added} / -{d['removed']} images" + (f" ({d['note']})" if d.get("note") else ""))
    return "\n".join(lines)
