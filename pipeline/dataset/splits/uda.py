"""Unsupervised domain-adaptation splits: regional (urban / rural target regions per continent) and
continent-wise (package docstring, *UDA splits*)."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pipeline import rng
from pipeline.constants import CLASS_IDS, URBAN_CLASSES
from pipeline.dataset.ids import natural_key
from pipeline.dataset.splits.trials import class_matrix

#: A region is urban when its urban classes cover at least this share of its labelled pixels.
URBAN_THRESHOLD = 0.30
#: Share of regions in the UDA target domain (OpenEarthMap: 24 of 97 regions).
UDA_TARGET_SHARE = 24 / 97


def region_profiles(
    records: Iterable[Mapping[str, Any]], *, urban_threshold: float = URBAN_THRESHOLD
) -> dict[str, dict[str, Any]]:
    """Per region (sorted): ``{"continent", "urban_share", "urban"}`` from image records (``region``,
    ``continent``, ``class_pixels``; several records of a region are summed).  ``urban_share`` is the
    share of classes 3, 4 and 8 in the region's labelled pixels (0 when none), rounded to 1e-6; ``urban``
    is ``urban_share >= urban_threshold``.  A region's continent is its most common one (ties: sorted)."""
    pix: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(CLASS_IDS), dtype=np.float64))
    conts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        region = r["region"]
        conts[region][r.get("continent", "")] += 1
        pix[region] += class_matrix([{"id": r.get("id", region), "class_pixels": r.get("class_pixels")}])[0]
    out = {}
    for region in sorted(pix):
        tot = pix[region].sum()
        urban = sum(pix[region][c - 1] for c in URBAN_CLASSES)
        share = float(urban / tot) if tot > 0 else 0.0
        continent = sorted(conts[region].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        out[region] = {"continent": continent, "urban_share": round(share, 6), "urban": share >= urban_threshold}
    return out


def _hamilton(total: int, weights: dict[str, float], caps: dict[str, int], tiebreak: dict[str, str]) -> dict[str, int]:
    """Largest-remainder allocation of ``total`` over ``weights`` with per-key caps."""
    wsum = sum(weights.values())
    alloc = {k: 0 for k in weights}
    if total <= 0 or wsum <= 0:
        return alloc
    quota = {k: total * w / wsum for k, w in weights.items()}
    for k in alloc:
        alloc[k] = min(int(math.floor(quota[k])), caps[k])
    left = total - sum(alloc.values())
    while left > 0:
        room = [k for k in alloc if alloc[k] < caps[k]]
        if not room:
            break
        k = max(room, key=lambda j: (quota[j] - alloc[j], tiebreak[j]))
        alloc[k] += 1
        left -= 1
    return alloc


def uda_split(
    region_records: Iterable[Mapping[str, Any]],
    *,
    seed: int,
    target_share: float = UDA_TARGET_SHARE,
    urban_threshold: float = URBAN_THRESHOLD,
) -> dict[str, str]:
    """Regional unsupervised-domain-adaptation split: ``{region: "source" | "target"}`` (sorted).

    ``region_records`` are image (or per-region) records with ``region``, ``continent``, ``class_pixels``
    (:func:`region_profiles` sums them per region and decides urban / rural).  Rule, for ``R`` regions:

    1. ``T = round(R * target_share)`` (halves up) target regions, clipped to ``1..R-1`` (``R < 2``: all
       source).  The default share is 24/97, as in OpenEarthMap.
    2. ``T`` is shared over continents by largest remainder of ``T * n_c / R`` (ties by the seeded hash
       of the continent); a continent with ``n_c >= 2`` regions keeps at least one source region, and, when
       ``T`` allows, every such continent gets at least one target region (taken from the continent with
       the most targets).
    3. Within a continent its targets are shared between urban and rural regions by largest remainder
       (ties by seeded hash), then chosen per stratum in the order of ``sha256(f"{seed}:uda:{region}")``.
    4. Balance: when urban (or rural) regions exist on only one side although there are at least two of
       them, one is swapped, within one continent, with a region of the other kind on the other side.

    Deterministic for a given (seed, records, share, threshold); never uses Python's ``hash()``.
    """
    prof = region_profiles(region_records, urban_threshold=urban_threshold)
    regions = sorted(prof)
    R = len(regions)
    if R < 2:
        return {r: "source" for r in regions}
    T = int(math.floor(R * target_share + 0.5))
    T = min(max(T, 1), R - 1)
    by_cont: dict[str, list[str]] = defaultdict(list)
    for r in regions:
        by_cont[prof[r]["continent"]].append(r)
    conts = sorted(by_cont)
    tie = {c: rng.rank(seed, "uda-continent", c) for c in conts}
    caps = {c: len(by_cont[c]) - 1 if len(by_cont[c]) >= 2 else 1 for c in conts}
    t = _hamilton(T, {c: len(by_cont[c]) for c in conts}, caps, tie)
    for c in conts:  # coverage: every multi-region continent on both sides when T allows
        if len(by_cont[c]) >= 2 and t[c] == 0:
            donors = [d for d in conts if t[d] >= 2]
            if donors:
                d = max(donors, key=lambda x: (t[x], tie[x]))
                t[d] -= 1
                t[c] += 1
    side = {r: "source" for r in regions}
    rank = {r: rng.rank(seed, "uda", r) for r in regions}
    for c in conts:
        strata = {k: sorted((r for r in by_cont[c] if prof[r]["urban"] == (k == "urban")), key=lambda r: rank[r])
                  for k in ("urban", "rural")}
        alloc = _hamilton(t[c], {k: len(v) for k, v in strata.items()}, {k: len(v) for k, v in strata.items()},
                          {k: rng.rank(seed, "uda-stratum", c, k) for k in strata})
        for k, members in strata.items():
            for r in members[: alloc[k]]:
                side[r] = "target"
    for kind in (True, False):  # urban, then rural: present on both sides when possible
        of_kind = [r for r in regions if prof[r]["urban"] == kind]
        for missing_side, other in (("target", "source"), ("source", "target")):
            if len(of_kind) < 2 or any(side[r] == missing_side for r in of_kind):
                continue
            # the region of the other kind that leaves missing_side must not be the last of its kind there
            if sum(1 for r in regions if prof[r]["urban"] != kind and side[r] == missing_side) < 2:
                continue
            for c in conts:
                give = sorted((r for r in by_cont[c] if prof[r]["urban"] == kind and side[r] == other),
                              key=rank.__getitem__)
                take = sorted((r for r in by_cont[c] if prof[r]["urban"] != kind and side[r] == missing_side),
                              key=rank.__getitem__)
                if give and take:
                    side[give[0]], side[take[0]] = missing_side, other
                    break
    return dict(sorted(side.items()))


def continent_splits(images: Iterable[Mapping[str, Any]], *, by: str = "id") -> dict[str, dict[str, list[str]]]:
    """Continent-wise domain adaptation: for every continent present (sorted), its images as ``source``
    and all other images as ``target`` — ``{continent: {"source": [...], "target": [...]}}``, listing
    image ids (``by="id"``) or distinct region names (``by="region"``), each list in natural order."""
    if by not in ("id", "region"):
        raise ValueError(f"by must be 'id' or 'region', got {by!r}")
    recs = list(images)
    conts = sorted({r["continent"] for r in recs})
    out = {}
    for c in conts:
        src = {str(r[by]) for r in recs if r["continent"] == c}
        tgt = {str(r[by]) for r in recs if r["continent"] != c} - (src if by == "region" else set())
        out[c] = {"source": sorted(src, key=natural_key), "target": sorted(tgt, key=natural_key)}
    return out


def uda_section(
    images: Iterable[Mapping[str, Any]],
    *,
    seed: int,
    target_share: float = UDA_TARGET_SHARE,
    urban_threshold: float = URBAN_THRESHOLD,
) -> dict[str, Any]:
    """The manifest's optional ``uda`` section: ``{"seed", "target_share", "urban_threshold",
    "regional": uda_split(...), "continent": continent_splits(images, by="region")}``."""
    images = list(images)
    return {
        "seed": int(seed),
        "target_share": float(target_share),
        "urban_threshold": float(urban_threshold),
        "regional": uda_split(images, seed=seed, target_share=target_share, urban_threshold=urban_threshold),
        "continent": continent_splits(images, by="region"),
    }
