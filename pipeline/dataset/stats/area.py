"""Released area: the ground area the images cover, counted once where tiles overlap.

Policy
------
* The area of a set of images is the area of the **union** of their footprints, in km² rounded to 6
  decimals.  Tiles of one scene do not overlap, but tiles of different scenes or sources can (the leakage
  groups of :mod:`pipeline.dataset.splits.leakage`); summing tile areas would count that ground twice.
* An image that overlaps nothing contributes its UTM rectangle, ``(maxx - minx) * (maxy - miny)`` of its
  ``bounds`` (exact, in its own UTM zone).  The members of one leakage group are unioned in the UTM CRS of
  the group's first member in natural id order (the rectangles of members in other zones are densified to
  :data:`EDGE_POINTS` points per edge and transformed; a group spans a few km, so the projection's scale
  error is negligible).  Different groups never overlap by construction, so their areas add up.
* Per region, country and continent the same rule applies to the images of that place (a group split
  between two places counts its part in each).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.dataset.ids import natural_key
from pipeline.dataset.splits.leakage import leakage_groups

EDGE_POINTS = 8
DECIMALS = 6


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _rectangle(rec: Mapping[str, Any], crs: str):
    from shapely.geometry import Polygon, box

    x0, y0, x1, y1 = (float(v) for v in rec["bounds"])
    if str(rec.get("crs")) == crs:
        return box(x0, y0, x1, y1)
    t = np.arange(EDGE_POINTS) / EDGE_POINTS
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(EDGE_POINTS, x1), x1 - (x1 - x0) * t, np.full(EDGE_POINTS, x0)])
    ys = np.concatenate([np.full(EDGE_POINTS, y0), y0 + (y1 - y0) * t, np.full(EDGE_POINTS, y1), y1 - (y1 - y0) * t])
    x, y = _transformer(str(rec["crs"]), crs).transform(xs, ys)
    return Polygon(zip(np.asarray(x).tolist(), np.asarray(y).tolist()))


def _group_area_m2(members: list[Mapping[str, Any]]) -> float:
    if len(members) == 1:
        x0, y0, x1, y1 = (float(v) for v in members[0]["bounds"])
        return (x1 - x0) * (y1 - y0)
    return _union_m2(tuple((str(m.get("crs")), tuple(float(v) for v in m["bounds"])) for m in members))


@lru_cache(maxsize=4096)
def _union_m2(members: tuple[tuple[str, tuple[float, ...]], ...]) -> float:
    """Union area of the members' rectangles ``(crs, bounds)`` in the first one's CRS, remembered: a release's
    summary and statistics ask it for each overlapping group overall and per region, country and continent."""
    from shapely import unary_union

    crs = members[0][0]
    return float(unary_union([_rectangle({"crs": c, "bounds": b}, crs) for c, b in members]).area)


def union_area_km2(records: Iterable[Mapping[str, Any]], groups: Mapping[str, str] | None = None) -> float:
    """Area (km²) of the union of the records' footprints (module docstring).  Records need ``id``, ``crs``
    and ``bounds``; ``groups`` (id -> leakage group) is computed when not given."""
    recs = sorted(records, key=lambda r: natural_key(str(r["id"])))
    groups = leakage_groups(recs) if groups is None else groups
    by_group: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        by_group[str(groups.get(str(r["id"]), r["id"]))].append(r)
    return round(sum(_group_area_m2(m) for m in by_group.values()) / 1e6, DECIMALS)


def area_by(records: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str],
            groups: Mapping[str, str] | None = None) -> dict[str, float]:
    """``{key(record): union area in km²}`` over the records of each key, keys sorted."""
    recs = list(records)
    groups = leakage_groups(recs) if groups is None else groups
    parts: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        parts[key(r)].append(r)
    return {k: union_area_km2(parts[k], groups) for k in sorted(parts)}


def recorded_groups(records: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    """``{id: group}`` from the records' ``group`` fields (the split stage's leakage groups of exactly these
    records), or None when a record has none."""
    groups = {}
    for r in records:
        if not r.get("group"):
            return None
        groups[str(r["id"])] = str(r["group"])
    return groups


def released_area(records: Iterable[Mapping[str, Any]], groups: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"area_km2", "regions", "countries", "continents"}``: the union area overall and per place (km²).
    ``groups``: the leakage groups of exactly ``records`` when already known (:func:`recorded_groups`), else
    they are computed (the same result, at the cost of every footprint pair test).

    One pass in natural id order gives every place its groups in the order :func:`union_area_km2` of the
    place's records sums them, so the figures are exactly those of :func:`union_area_km2` and :func:`area_by`;
    a group wholly inside a place is measured once for all."""
    recs = list(records)
    groups = leakage_groups(recs) if groups is None else groups
    fields = (("regions", "region"), ("countries", "country"), ("continents", "continent"))
    whole: dict[str, list[Mapping[str, Any]]] = {}
    places: dict[str, dict[str, dict[str, list[Mapping[str, Any]]]]] = {section: {} for section, _ in fields}
    for r in sorted(recs, key=lambda r: natural_key(str(r["id"]))):
        g = str(groups.get(str(r["id"]), r["id"]))
        whole.setdefault(g, []).append(r)
        for section, field in fields:
            places[section].setdefault(str(r[field]), {}).setdefault(g, []).append(r)
    area = {g: _group_area_m2(members) for g, members in whole.items()}

    def km2(parts: dict[str, list[Mapping[str, Any]]]) -> float:
        return round(sum(area[g] if len(m) == len(whole[g]) else _group_area_m2(m) for g, m in parts.items())
                     / 1e6, DECIMALS)

    return {"area_km2": km2(whole),
            **{section: {k: km2(places[section][k]) for k in sorted(places[section])} for section, _ in fields}}
