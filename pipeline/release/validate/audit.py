"""Check 8: the split audit (6:1:3 ratios per region, class coverage of train, leakage, UDA regions).

Problems are errors, except those a build cannot fix, reported as named warnings (``validate`` exits 0):

* ``single-leakage-group``: a region whose images all overlap (one leakage group) cannot be split; its split
  counts are a warning, not an error (:mod:`pipeline.dataset.splits`, *One leakage group*).
* ``class-frozen-out-of-train``: a class missing from a region's train split whose every image is *held* by
  the previous release: released there in val/test (they never move), or in a leakage group with such an image.
  Which images were released before is read from ``stats/changes.json`` (every image not *added*).  An image
  that keeps its source benchmark's split (``upstream_split``) is held too.
* ``upstream-split``: a region's split counts off the ratios while its images that keep their source
  benchmark's split (``upstream_split``) alone already fill a split beyond them, or leave too few other images
  to fill one; two overlapping images in different splits that both keep their benchmark's split (its own
  leakage, which the release does not undo); an image whose split is not its ``upstream_split`` is an error,
  unless the previous release held it in that split (a warning: the upstream split changed after it was
  released).
* ``train-quota-full``: a class missing from train although some image with it is not held, when no such image
  (with its leakage group) could have moved to train without a split count leaving the tolerance and no image
  of this release is in train that a swap could move out.

Any other class missing from train is an error the build introduced.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.constants import CLASS_NAMES, NUM_CLASSES, SPLITS
from pipeline.dataset.ids import natural_key
from pipeline.dataset.splits.coverage import (
    FROZEN_CLASS,
    QUOTA_FULL,
    SINGLE_GROUP,
    SPLIT_TOLERANCE_SHARE,
    split_tolerance,
    within_tolerance,
)
from pipeline.dataset.splits.leakage import groups_from_pairs, overlapping_pairs
from pipeline.dataset.splits.trials import DEFAULT_RATIOS, split_counts
from pipeline.release.validate.common import MANIFEST

__all__ = ["SPLIT_TOLERANCE_SHARE", "check_split_audit", "split_tolerance"]
#: The warning of a split the source benchmark's split (``upstream_split``) decides (module docstring).
UPSTREAM_SPLIT = "upstream-split"
MAX_LABEL_VALUE = NUM_CLASSES


def _ratios_of(manifest: dict[str, Any]) -> tuple | None:
    cw = manifest.get("created_with")
    split = cw.get("split") if isinstance(cw, dict) else None
    ratios = split.get("ratios") if isinstance(split, dict) else None
    if ratios is None:
        return tuple(DEFAULT_RATIOS)
    try:
        split_counts(3, ratios)
    except (TypeError, ValueError):
        return None  # reported by the schema
    return tuple(ratios)


def _fmt_ratio(r: Any) -> str:
    return str(int(r)) if float(r).is_integer() else repr(float(r))


def _class_pixels(recs: list[dict[str, Any]], split: str | None = None) -> Counter[int]:
    px: Counter[int] = Counter()
    for r in recs:
        cp = r.get("class_pixels")
        if not isinstance(cp, dict) or (split is not None and r["split"] != split):
            continue
        for c in range(1, MAX_LABEL_VALUE + 1):
            v = cp.get(str(c))
            if isinstance(v, int) and v > 0:
                px[c] += v
    return px


def _missing_class_kind(c: int, recs: list[dict[str, Any]], groups: dict[str, str], held: set[str],
                        ratios: tuple) -> tuple[str | None, str]:
    """``(warning name or None for an error, detail)`` for class ``c`` missing from the region's train."""
    carriers = [r for r in recs if isinstance(r.get("class_pixels"), dict)
                and isinstance(r["class_pixels"].get(str(c)), int) and r["class_pixels"][str(c)] > 0]
    held_groups = {groups.get(r["id"], r["id"]) for r in recs if r["id"] in held}
    free = [r for r in carriers if groups.get(r["id"], r["id"]) not in held_groups]
    ids = ", ".join(sorted((r["id"] for r in carriers), key=natural_key)[:5])
    if not free:
        upstream = sum(1 for r in carriers if r.get("upstream_split") in SPLITS)
        by = ("the previous release" if not upstream else "its source benchmark's split" if upstream == len(carriers)
              else "the previous release or its source benchmark's split")
        return FROZEN_CLASS, f"every image with it ({ids}) is held in val/test by {by}"
    n = len(recs)
    target = split_counts(n, ratios)
    have = Counter(r["split"] for r in recs)
    swappable = any(r["split"] == "train" and groups.get(r["id"], r["id"]) not in held_groups for r in recs)
    for unit in sorted({groups.get(r["id"], r["id"]) for r in free}):
        moved = Counter(r["split"] for r in recs if groups.get(r["id"], r["id"]) == unit and r["split"] != "train")
        counts = [have.get("train", 0) + sum(moved.values())] + [have.get(s, 0) - moved.get(s, 0) for s in SPLITS[1:]]
        if within_tolerance(counts, target, n):
            return None, ""
    if swappable:
        return None, ""
    return QUOTA_FULL, f"no image with it ({ids}) could move to train within the split tolerance"


def _upstream_audit(records: list[dict[str, Any]], held: set[str], out: list[str], warnings: list[str]) -> None:
    """An image not in the split its source benchmark gives it (``upstream_split``): an error, or a warning when
    the previous release held it in its split (the upstream split changed after it was released)."""
    for r in sorted(records, key=lambda r: natural_key(r["id"])):
        up = r.get("upstream_split")
        if up is None or up == r["split"]:
            continue
        line = f"{MANIFEST}: image {r['id']}: in {r['split']}, but its source benchmark has it in {up} (upstream_split)"
        if r["id"] in held:
            warnings.append(f"{line} [{UPSTREAM_SPLIT}: released in {r['split']} before; released images keep "
                            "their split]")
        else:
            out.append(line)


def _region_audit(region: str, recs: list[dict[str, Any]], ratios: tuple | None, groups: dict[str, str],
                  held: set[str], out: list[str], warnings: list[str]) -> None:
    n = len(recs)
    one_group = n > 1 and len({groups.get(r["id"], r["id"]) for r in recs}) == 1
    if ratios is not None:
        target = split_counts(n, ratios)
        tol = split_tolerance(n)
        have = Counter(r["split"] for r in recs)
        pinned = Counter(r["upstream_split"] for r in recs if r.get("upstream_split") in SPLITS)
        free = n - sum(pinned.values())
        shown = ":".join(_fmt_ratio(x) for x in ratios)
        for s, t in zip(SPLITS, target):
            if abs(have.get(s, 0) - t) > tol:
                line = (f"{MANIFEST}: region {region}: {have.get(s, 0)} {s} images, expected {t} ± "
                        f"{tol:g} (ratios {shown} of {n} images)")
                if one_group:
                    warnings.append(f"{line} [{SINGLE_GROUP}: all {n} images overlap, one leakage group]")
                elif pinned[s] > t + tol or pinned[s] + free < t - tol:
                    warnings.append(f"{line} [{UPSTREAM_SPLIT}: {sum(pinned.values())} of its images keep their "
                                    f"source benchmark's split, {pinned[s]} of them in {s}]")
                else:
                    out.append(line)
    region_px, train_px = _class_pixels(recs), _class_pixels(recs, "train")
    for c in sorted(region_px):
        if train_px.get(c):
            continue
        line = (f"{MANIFEST}: region {region}: class {c} ({CLASS_NAMES.get(c, '?')}) has pixels in the region "
                "but none in train")
        kind, detail = _missing_class_kind(c, recs, groups, held, ratios or tuple(DEFAULT_RATIOS))
        if kind is None:
            out.append(line)
        else:
            warnings.append(f"{line} [{kind}: {detail}]")


def check_split_audit(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str],
                      warnings: list[str] | None = None, held: set[str] | None = None,
                      pairs: list[tuple[str, str, float]] | None = None) -> None:
    """Append problems to ``out`` and named warnings to ``warnings`` (module docstring); ``held``: ids of the
    images released before (kept from the previous release); ``pairs``: :func:`overlapping_pairs` of all
    ``records`` when the caller has them (else computed here)."""
    warnings = [] if warnings is None else warnings
    held = held or set()
    usable = [r for r in records if isinstance(r.get("region"), str) and r.get("split") in SPLITS
              and isinstance(r.get("id"), str)]
    by_region: dict[str, list[dict[str, Any]]] = {}
    for r in usable:
        by_region.setdefault(r["region"], []).append(r)
    with_ids = [r for r in usable if isinstance(r.get("image"), str)]
    by_id = {r["id"]: r for r in with_ids}
    if pairs is not None:  # the pairs of a subset are the pairs of the whole between its members
        pairs = [p for p in pairs if p[0] in by_id and p[1] in by_id]
    else:
        try:
            pairs = overlapping_pairs(with_ids)
        except Exception as exc:  # a malformed CRS or bounds (reported by the schema) must not stop the report
            out.append(f"{MANIFEST}: footprints cannot be compared ({exc})")
            pairs = []
    groups = groups_from_pairs((r["id"] for r in usable), pairs)
    ratios = _ratios_of(manifest)
    _upstream_audit(usable, held, out, warnings)
    held = held | {r["id"] for r in usable if r.get("upstream_split") in SPLITS}
    for region in sorted(by_region):
        _region_audit(region, by_region[region], ratios, groups, held, out, warnings)
    for a, b, frac in pairs:
        ra, rb = by_id[a], by_id[b]
        if ra["split"] != rb["split"]:
            line = (f"{ra['image']}, {rb['image']}: footprints overlap ({100 * frac:.1f}% of the smaller) "
                    f"but splits differ ({ra['split']} vs {rb['split']})")
            if all(r.get("upstream_split") == r["split"] for r in (ra, rb)):  # the benchmark's own overlap
                warnings.append(f"{line} [{UPSTREAM_SPLIT}: their source benchmark splits them so]")
            else:
                out.append(line)
    uda = manifest.get("uda")
    regional = uda.get("regional") if isinstance(uda, dict) else None
    if isinstance(regional, dict):
        regions = set(by_region)
        for reg in sorted(set(regional) - regions):
            out.append(f"{MANIFEST}: uda.regional names {reg}, which has no images")
        for reg in sorted(regions - set(regional)):
            out.append(f"{MANIFEST}: uda.regional does not assign region {reg}")
