"""Check 3: the manifest agrees with itself (unique ids and names, file paths, split counts)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

from pipeline.constants import SPLITS
from pipeline.dataset.ids import natural_key
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
