"""Check 8: the split audit (6:1:3 ratios per region, class coverage of train, leakage, UDA regions)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.constants import CLASS_NAMES, NUM_CLASSES, SPLITS
from pipeline.dataset.splits.leakage import overlapping_pairs
from pipeline.dataset.splits.trials import DEFAULT_RATIOS, split_counts
from pipeline.release.validate.common import MANIFEST

#: Allowed deviation of a region's split counts from split_counts(): this share of its images, at least 1.
SPLIT_TOLERANCE_SHARE = 0.10
MAX_LABEL_VALUE = NUM_CLASSES


def split_tolerance(n: int) -> float:
    """How many images a split of a region of ``n`` images may deviate from :func:`split_counts`:
    ``max(1, 0.1 * n)``."""
    return max(1.0, SPLIT_TOLERANCE_SHARE * n)


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


def check_split_audit(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    usable = [r for r in records if isinstance(r.get("region"), str) and r.get("split") in SPLITS]
    by_region: dict[str, list[dict[str, Any]]] = {}
    for r in usable:
        by_region.setdefault(r["region"], []).append(r)
    ratios = _ratios_of(manifest)
    for region in sorted(by_region):
        recs = by_region[region]
        n = len(recs)
        if ratios is not None:
            target = split_counts(n, ratios)
            tol = split_tolerance(n)
            have = Counter(r["split"] for r in recs)
            shown = ":".join(_fmt_ratio(x) for x in ratios)
            for s, t in zip(SPLITS, target):
                if abs(have.get(s, 0) - t) > tol:
                    out.append(f"{MANIFEST}: region {region}: {have.get(s, 0)} {s} images, expected {t} ± "
                               f"{tol:g} (ratios {shown} of {n} images)")
        region_px: Counter[int] = Counter()
        train_px: Counter[int] = Counter()
        for r in recs:
            cp = r.get("class_pixels")
            if not isinstance(cp, dict):
                continue
            for c in range(1, MAX_LABEL_VALUE + 1):
                v = cp.get(str(c))
                if isinstance(v, int) and v > 0:
                    region_px[c] += v
                    if r["split"] == "train":
                        train_px[c] += v
        for c in sorted(region_px):
            if not train_px.get(c):
                out.append(f"{MANIFEST}: region {region}: class {c} ({CLASS_NAMES.get(c, '?')}) has pixels in the "
                           f"region but none in train")
    with_ids = [r for r in usable if isinstance(r.get("id"), str) and isinstance(r.get("image"), str)]
    by_id = {r["id"]: r for r in with_ids}
    try:
        pairs = overlapping_pairs(with_ids)
    except Exception as exc:  # a malformed CRS or bounds (reported by the schema) must not stop the report
        out.append(f"{MANIFEST}: footprints cannot be compared ({exc})")
        pairs = []
    for a, b, frac in pairs:
        ra, rb = by_id[a], by_id[b]
        if ra["split"] != rb["split"]:
            out.append(f"{ra['image']}, {rb['image']}: footprints overlap ({100 * frac:.1f}% of the smaller) "
                       f"but splits differ ({ra['split']} vs {rb['split']})")
    uda = manifest.get("uda")
    regional = uda.get("regional") if isinstance(uda, dict) else None
    if isinstance(regional, dict):
        regions = set(by_region)
        for reg in sorted(set(regional) - regions):
            out.append(f"{MANIFEST}: uda.regional names {reg}, which has no images")
        for reg in sorted(regions - set(regional)):
            out.append(f"{MANIFEST}: uda.regional does not assign region {reg}")
