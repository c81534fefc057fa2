"""What changed between two releases: :func:`release_changes` compares manifests, :func:`changes_markdown`
renders the result for a changelog or a pull-request comment.

Policies
--------
* Images are matched by their stable key (:func:`pipeline.dataset.ids.image_key`: the manifest's ``key``, else
  ``<source>-<source_scene_id>-<tile>``), never by id, because ids (``<region>_<n>``) are renumbered when
  a scene is inserted before others.
* ``changed``: matched images whose ``sha256_image`` or ``sha256_label`` differ (``what`` names which);
  ``renamed``: matched images whose id differs; ``split_moves``: matched images whose split differs -- a
  stable release must have none, so callers (validation, tests, CI) fail on a non-empty list.
* ``class_pixels`` sums ``class_pixels`` over all images of each manifest (``previous`` is all zeros
  without a previous manifest) and ``delta = current - previous``; ``splits`` does the same for image
  counts per split.
* Every list is sorted by key; the result holds only JSON types and is deterministic.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.constants import CLASS_KEYS, CLASS_NAMES, SPLITS
from pipeline.dataset.ids import image_key
from pipeline.errors import ValidationError


def _index(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for img in (manifest or {}).get("images", []) or []:
        key = image_key(img)
        if key in out:
            release = (manifest or {}).get("release")
            raise ValidationError(f"release {release!r}: key {key!r} is used by {out[key]['id']!r} "
                                  f"and {img.get('id')!r}")
        out[key] = img
    return out


def _class_totals(images: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    tot = {c: 0 for c in CLASS_KEYS}
    for img in images.values():
        cp = img.get("class_pixels") or {}
        for c in CLASS_KEYS:
            tot[c] += int(cp.get(c, 0))
    return tot


def _split_totals(images: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {s: sum(1 for img in images.values() if img.get("split") == s) for s in SPLITS}


def _brief(key: str, img: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": key, "id": img.get("id"), "region": img.get("region"), "split": img.get("split")}


def release_changes(previous_manifest: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Compare two release manifests (``previous_manifest`` may be None: everything is added).

    Returns ``{"previous_release", "release", "summary": {"added", "removed", "changed", "renamed",
    "split_moves", "unchanged"}, "added": [{"key", "id", "region", "split"}], "removed": [...same],
    "changed": [{"key", "id", "what": ["image"|"label", ...]}], "renamed": [{"key", "previous_id", "id"}],
    "split_moves": [{"key", "id", "previous", "current"}], "class_pixels": {"previous", "current", "delta"}
    (class id "1".."8" -> pixels), "splits": {"previous", "current", "delta"} (split -> images)}``.
    ``unchanged`` counts matched images with equal checksums, id and split.  An added image that the previous
    release lists as retired (released earlier in its lineage, :mod:`pipeline.dataset.history`) has
    ``returned_from`` (the last release that shipped it), and is compared with that entry for ``renamed`` and
    ``split_moves``: it comes back with its id and split.  An added image on the place of a retired one has its
    ``same_place_as`` (:mod:`pipeline.dataset.splits.lineage`: it kept that image's split).
    """
    prev = _index(previous_manifest)
    cur = _index(manifest)
    back = {str(r.get("key")): r for r in (previous_manifest or {}).get("retired") or [] if isinstance(r, dict)}
    added = [{**_brief(k, cur[k]), **({"returned_from": back[k].get("last_release")} if k in back else {}),
              **({"same_place_as": cur[k]["same_place_as"]} if cur[k].get("same_place_as") else {})}
             for k in sorted(set(cur) - set(prev))]
    removed = [_brief(k, prev[k]) for k in sorted(set(prev) - set(cur))]
    changed, renamed, moves = [], [], []
    unchanged = 0
    for k in sorted((set(cur) & set(prev)) | (set(cur) & set(back))):
        a, b = prev.get(k) or back[k], cur[k]
        what = [name for name, field in (("image", "sha256_image"), ("label", "sha256_label"))
                if k in prev and a.get(field) != b.get(field)]
        if what:
            changed.append({"key": k, "id": b.get("id"), "what": what})
        if a.get("id") != b.get("id"):
            renamed.append({"key": k, "previous_id": a.get("id"), "id": b.get("id")})
        if a.get("split") != b.get("split"):
            moves.append({"key": k, "id": b.get("id"), "previous": a.get("split"), "current": b.get("split")})
        if k in prev and not what and a.get("id") == b.get("id") and a.get("split") == b.get("split"):
            unchanged += 1
    pc, cc = _class_totals(prev), _class_totals(cur)
    ps, cs = _split_totals(prev), _split_totals(cur)
    return {
        "previous_release": (previous_manifest or {}).get("release"),
        "release": manifest.get("release"),
        "summary": {"added": len(added), "removed": len(removed), "changed": len(changed), "renamed": len(renamed),
                    "split_moves": len(moves), "unchanged": unchanged},
        "added": added,
        "removed": removed,
        "changed": changed,
        "renamed": renamed,
        "split_moves": moves,
        "class_pixels": {"previous": pc, "current": cc, "delta": {c: cc[c] - pc[c] for c in CLASS_KEYS}},
        "splits": {"previous": ps, "current": cs, "delta": {s: cs[s] - ps[s] for s in SPLITS}},
    }


def _signed(v: int) -> str:
    return f"+{v:,}" if v > 0 else f"{v:,}"


def _listing(title: str, rows: list[str], limit: int) -> list[str]:
    if not rows:
        return []
    out = [f"### {title} ({len(rows)})", ""]
    out += [f"- {r}" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"- ... and {len(rows) - limit} more")
    return out + [""]


def changes_markdown(changes: Mapping[str, Any], *, limit: int = 50) -> str:
    """A readable Markdown summary of :func:`release_changes` (at most ``limit`` lines per list);
    split moves come first under a warning heading because a stable release must have none."""
    prev = changes.get("previous_release") or "nothing"
    s = changes["summary"]
    lines = [f"## Changes in {changes.get('release')} since {prev}", ""]
    lines.append(f"{s['added']} added, {s['removed']} removed, {s['changed']} changed, {s['renamed']} renamed, "
                 f"{s['split_moves']} split moves, {s['unchanged']} unchanged.")
    lines.append("")
    if s["split_moves"]:
        lines += _listing("WARNING: images that moved between splits",
                          [f"`{m['id']}` ({m['key']}): {m['previous']} -> {m['current']}"
                           for m in changes["split_moves"]],
                          limit)
    lines += ["| split | previous | current | delta |", "|---|---:|---:|---:|"]
    sp = changes["splits"]
    for k in SPLITS:
        lines.append(f"| {k} | {sp['previous'][k]:,} | {sp['current'][k]:,} | {_signed(sp['delta'][k])} |")
    lines += ["", "| class | previous pixels | current pixels | delta |", "|---|---:|---:|---:|"]
    cp = changes["class_pixels"]
    for c in CLASS_KEYS:
        lines.append(f"| {c} {CLASS_NAMES[int(c)]} | {cp['previous'][c]:,} | {cp['current'][c]:,} | "
                     f"{_signed(cp['delta'][c])} |")
    lines.append("")
    lines += _listing("Added", [f"`{a['id']}` ({a['key']}, {a['region']}, {a['split']})"
                                + (f", back from {a['returned_from']}" if a.get("returned_from") else "")
                                + (f", on the place of retired {a['same_place_as']}: its split kept"
                                   if a.get("same_place_as") else "")
                                for a in changes["added"]], limit)
    lines += _listing("Removed", [f"`{a['id']}` ({a['key']}, {a['region']}, {a['split']})" for a in changes["removed"]],
                      limit)
    lines += _listing("Changed", [f"`{c['id']}` ({c['key']}): {', '.join(c['what'])}" for c in changes["changed"]],
                      limit)
    lines += _listing("Renamed", [f"`{r['previous_id']}` -> `{r['id']}` ({r['key']})" for r in changes["renamed"]],
                      limit)
    return "\n".join(lines).rstrip("\n") + "\n"
