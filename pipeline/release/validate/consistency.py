"""Check 3: the manifest agrees with itself (unique ids and names, file paths, split counts, retired images)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

from pipeline.constants import SPLITS
from pipeline.dataset.ids import image_key, natural_key
from pipeline.dataset.splits.leakage import overlapping_pairs
from pipeline.release.manifest import file_name
from pipeline.release.summary import summary_problems
from pipeline.release.validate.common import MANIFEST


def check_consistency(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str],
                      groups: dict[str, str] | None = None) -> None:
    """``groups``: the leakage groups of ``records`` when the caller has them (else the summary check computes
    them)."""
    ids: Counter[str] = Counter(r["id"] for r in records if isinstance(r.get("id"), str))
    for i in sorted((i for i, n in ids.items() if n > 1), key=natural_key):
        out.append(f"{MANIFEST}: id {i} is used by {ids[i]} images")
    _check_retired(manifest, records, out)
    _check_same_place(manifest, records, out)
    names = Counter(file_name(r["image"]) for r in records if isinstance(r.get("image"), str))
    for n in sorted((n for n, c in names.items() if c > 1), key=natural_key):
        out.append(f"{MANIFEST}: file name {n} is used by {names[n]} images")
    for idx, r in enumerate(manifest.get("images", [])):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("region"), str):
            continue
        for kind, folder in (("image", "images"), ("label", "labels")):
            expected = f"{r['region']}/{folder}/{r['id']}.tif"
            if isinstance(r.get(kind), str) and r[kind] != expected:
                out.append(f"{MANIFEST}: images[{idx}].{kind} is {r[kind]!r}, expected {expected!r}")
    out.extend(summary_problems(manifest, records, groups=groups))
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return
    actual = Counter(r.get("split") for r in records)
    for s in SPLITS:
        if isinstance(splits.get(s), int) and splits[s] != actual.get(s, 0):
            out.append(f"{MANIFEST}: splits.{s} is {splits[s]} but {actual.get(s, 0)} images have split {s!r}")
    regions = splits.get("regions")
    if isinstance(regions, list):
        per_region: dict[Any, Counter[Any]] = {}
        for r in records:
            reg = r.get("region")
            per_region.setdefault(reg if isinstance(reg, Hashable) else repr(reg), Counter())[r.get("split")] += 1
        for idx, info in enumerate(regions):
            if not isinstance(info, dict) or not isinstance(info.get("counts"), dict):
                continue
            reg = info.get("region")
            got = per_region.get(reg if isinstance(reg, Hashable) else None, Counter())
            have = {s: got.get(s, 0) for s in SPLITS}
            if {s: info["counts"].get(s) for s in SPLITS} != have:
                out.append(f"{MANIFEST}: splits.regions[{idx}] ({reg}) counts {info['counts']} "
                           f"differ from its images' splits {have}")


def _check_retired(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    """The lineage's retired images (the manifest's ``retired``, :mod:`pipeline.dataset.history`): an id names
    one image in the whole lineage, so no retired id is an image's id or another retired image's, and a retired
    image is not also shipped (its key is no image's)."""
    listed = manifest.get("retired")
    retired = {i: r for i, r in enumerate(listed) if isinstance(r, dict)} if isinstance(listed, list) else {}
    if not retired:
        return
    shipped_ids = {r["id"] for r in records if isinstance(r.get("id"), str)}
    shipped_keys = set()
    for r in records:
        try:
            shipped_keys.add(image_key(r))
        except ValueError:  # no key: the schema check names it
            pass
    ids: Counter[Any] = Counter(r.get("id") for r in retired.values())
    for i, r in retired.items():
        rid, key = r.get("id"), r.get("key")
        if rid in shipped_ids:
            out.append(f"{MANIFEST}: retired[{i}] ({key}) has id {rid}, which names a released image")
        elif ids[rid] > 1:
            out.append(f"{MANIFEST}: retired[{i}] ({key}) has id {rid}, which {ids[rid] - 1} other retired "
                       f"image{'s' if ids[rid] > 2 else ''} also had")
        if key in shipped_keys:
            out.append(f"{MANIFEST}: retired[{i}] ({key}) is also a released image")


def _check_same_place(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    """An image's ``same_place_as`` (:mod:`pipeline.dataset.splits.lineage`) names a retired image of the
    manifest, whose split it has and whose footprint (when listed) it overlaps: the validation's split audit counts
    it as released before, so the claim is checked rather than trusted."""
    claims = [r for r in records if r.get("same_place_as") is not None]
    if not claims:
        return
    listed = manifest.get("retired")
    retired = {r.get("key"): r for r in listed if isinstance(r, dict)} if isinstance(listed, list) else {}
    for r in claims:
        key, other = r.get("id"), retired.get(r["same_place_as"])
        if other is None:
            out.append(f"{MANIFEST}: image {key} is on the place of {r['same_place_as']!r}, which is no retired image")
        elif other.get("split") != r.get("split"):
            out.append(f"{MANIFEST}: image {key} is in {r.get('split')} but on the place of retired "
                       f"{r['same_place_as']}, which was in {other.get('split')}")
        elif other.get("crs") is not None and not _overlap(r, other):
            out.append(f"{MANIFEST}: image {key} does not overlap retired {r['same_place_as']}, whose place it "
                       "claims")


def _overlap(record: dict[str, Any], retired: dict[str, Any]) -> bool:
    try:
        return bool(overlapping_pairs([{"id": "a", "crs": record.get("crs"), "bounds": record.get("bounds")},
                                       {"id": "b", "crs": retired.get("crs"), "bounds": retired.get("bounds")}]))
    except Exception:  # noqa: BLE001  (malformed bounds or CRS: the schema check names them)
        return False
