"""Leakage groups: tiles whose footprints overlap are one group, and a group is never split (package
docstring, *Leakage groups*)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.dataset.ids import natural_key

#: Two footprints overlap when their intersection exceeds this fraction of the smaller one's area.
OVERLAP_TOLERANCE = 1e-6
#: Points per footprint edge when a UTM rectangle is transformed to EPSG:4326.
_EDGE_POINTS = 8


@lru_cache(maxsize=64)
def _to_lonlat(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def footprint(image: Mapping[str, Any]):
    """The tile footprint as a shapely polygon in EPSG:4326 lon/lat, or None when the record has none.

    With ``crs`` and ``bounds`` (``[minx, miny, maxx, maxy]`` in that CRS) the rectangle, densified to
    :data:`_EDGE_POINTS` points per edge, is transformed; otherwise the ``bounds_lonlat`` box is used.  A
    footprint across the antimeridian is unwrapped (longitudes past 180°) and returned together with its copy
    shifted by -360°, so it overlaps its neighbours on both sides and not every tile at its latitude."""
    from shapely import affinity
    from shapely.geometry import MultiPolygon, Polygon, box

    crs, b = image.get("crs"), image.get("bounds")
    corners = finite_bounds(b) if isinstance(crs, str) else None
    if corners is not None:
        x0, y0, x1, y1 = corners
        t = np.arange(_EDGE_POINTS) / _EDGE_POINTS
        xs = np.concatenate([x0 + (x1 - x0) * t, np.full(_EDGE_POINTS, x1), x1 - (x1 - x0) * t,
                             np.full(_EDGE_POINTS, x0)])
        ys = np.concatenate([np.full(_EDGE_POINTS, y0), y0 + (y1 - y0) * t, np.full(_EDGE_POINTS, y1),
                             y1 - (y1 - y0) * t])
        lon, lat = _to_lonlat(crs).transform(xs, ys)
        lon = np.asarray(lon, dtype=float)
        crosses = bool(np.ptp(lon) > 180.0)
        if crosses:
            lon = np.where(lon < 0, lon + 360.0, lon)
        poly = Polygon(zip(lon.tolist(), np.asarray(lat).tolist()))
        if poly.is_valid and poly.area > 0:
            return MultiPolygon([poly, affinity.translate(poly, xoff=-360.0)]) if crosses else poly
    bl = image.get("bounds_lonlat")
    if isinstance(bl, (list, tuple)) and len(bl) == 4:
        return box(*(float(v) for v in bl))
    return None


def finite_bounds(bounds: Any) -> tuple[float, float, float, float] | None:
    """``bounds`` as four finite floats, or None (not a list of four numbers, or one of them not finite)."""
    if not (isinstance(bounds, (list, tuple)) and len(bounds) == 4):
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in bounds)
    except (TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if all(map(math.isfinite, (x0, y0, x1, y1))) else None


def footprints(images: Sequence[Mapping[str, Any]]) -> list[Any]:
    """:func:`footprint` of every image (the same geometries), with one coordinate transformation and one
    vectorised polygon construction per CRS instead of one per image; the images it cannot treat so (no CRS
    or bounds, an invalid or antimeridian-crossing rectangle) go through :func:`footprint` one by one."""
    import shapely

    out: list[Any] = [None] * len(images)
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(images):
        crs, b = d.get("crs"), d.get("bounds")
        if isinstance(crs, str) and isinstance(b, (list, tuple)) and len(b) == 4:
            groups.setdefault(crs, []).append(i)
        else:
            out[i] = footprint(d)
    t = np.arange(_EDGE_POINTS) / _EDGE_POINTS
    for crs, idx in groups.items():
        try:
            b = np.array([[float(v) for v in images[i]["bounds"]] for i in idx], dtype=float)
            x0, y0, x1, y1 = (b[:, k:k + 1] for k in range(4))
            n = _EDGE_POINTS
            xs = np.concatenate([x0 + (x1 - x0) * t, np.repeat(x1, n, 1), x1 - (x1 - x0) * t, np.repeat(x0, n, 1)], 1)
            ys = np.concatenate([np.repeat(y0, n, 1), y0 + (y1 - y0) * t, np.repeat(y1, n, 1), y1 - (y1 - y0) * t], 1)
            lon, lat = _to_lonlat(crs).transform(xs.ravel(), ys.ravel())
            lon, lat = np.asarray(lon, dtype=float).reshape(xs.shape), np.asarray(lat, dtype=float).reshape(xs.shape)
            polys = shapely.polygons(np.stack([lon, lat], axis=2))
            ok = (np.ptp(lon, axis=1) <= 180.0) & shapely.is_valid(polys) & (shapely.area(polys) > 0)
        except Exception:  # noqa: BLE001  (malformed bounds, an unknown CRS: one by one, as footprint() does)
            ok, polys = np.zeros(len(idx), bool), None
        for k, i in enumerate(idx):
            out[i] = polys[k] if ok[k] and polys is not None else footprint(images[i])
    return out


def overlapping_pairs(
    images: Iterable[Mapping[str, Any]], *, tolerance: float = OVERLAP_TOLERANCE
) -> list[tuple[str, str, float]]:
    """Every pair of images whose footprints (:func:`footprint`) overlap by more than ``tolerance`` of the
    smaller footprint's area, as ``(id_a, id_b, fraction)`` with ``id_a`` before ``id_b`` in natural order,
    pairs sorted naturally; ``fraction`` is the intersection over the smaller area, rounded to 1e-6.
    Images without a footprint overlap nothing.  The candidate pairs (an R-tree query of the footprints'
    envelopes) are measured all at once (:func:`_overlap_fractions`: on their rectangles when in one CRS, with
    shapely on the footprints otherwise), not pair by pair."""
    import shapely

    recs = sorted(images, key=lambda d: natural_key(str(d["id"])))
    ids = [str(d["id"]) for d in recs]
    geoms, idx = [], []
    for i, g in enumerate(footprints(recs)):
        if g is not None and not g.is_empty:
            geoms.append(g)
            idx.append(i)
    if len(geoms) < 2:
        return []
    garr = np.empty(len(geoms), dtype=object)
    garr[:] = geoms
    # candidates: intersecting envelopes (no predicate: testing each pair's polygons costs more than measuring
    # it); a candidate whose footprints do not meet measures 0 and is dropped like any pair at or below tolerance
    left, right = shapely.STRtree(garr).query(garr)
    keep = left < right
    left, right = left[keep], right[keep]
    frac = _overlap_fractions(garr, [recs[i] for i in idx], left, right)
    out = [(ids[idx[a]], ids[idx[b]], round(min(float(f), 1.0), 6))
           for a, b, f in zip(left.tolist(), right.tolist(), frac.tolist()) if f > tolerance]
    return sorted(out, key=lambda t: (natural_key(t[0]), natural_key(t[1])))


def _native_boxes(recs: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Each record's ``bounds`` (NaN when it has none, or not a rectangle of positive area) and a code of its
    ``crs`` string (-1 when none): the rectangles that pairs in one CRS are measured with."""
    boxes = np.full((len(recs), 4), np.nan)
    codes = np.full(len(recs), -1)
    seen: dict[str, int] = {}
    for i, d in enumerate(recs):
        crs = d.get("crs")
        if not isinstance(crs, str):
            continue
        b = finite_bounds(d.get("bounds"))
        if b is not None and b[2] > b[0] and b[3] > b[1]:
            boxes[i] = b
            codes[i] = seen.setdefault(crs, len(seen))
    return boxes, codes


def _overlap_fractions(garr: np.ndarray, recs: Sequence[Mapping[str, Any]], left: np.ndarray,
                       right: np.ndarray) -> np.ndarray:
    """Intersection over the smaller area of each candidate pair (``garr[left]``, ``garr[right]``; ``recs``
    their records): two images in one CRS are axis-aligned rectangles there (``bounds``), measured exactly
    with arithmetic on their corners (the tiles of one grid that merely touch share 0 area); any other pair
    is measured on its longitude/latitude footprints (shapely, vectorised).  A pair of zero smaller area
    gets 0."""
    import shapely

    boxes, codes = _native_boxes(recs)
    frac = np.zeros(len(left))
    same = (codes[left] >= 0) & (codes[left] == codes[right])
    a, b = boxes[left[same]], boxes[right[same]]
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    smaller = np.minimum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    frac[same] = w * h / smaller
    other = np.flatnonzero(~same)
    if len(other):
        areas = shapely.area(garr)
        smaller = np.minimum(areas[left[other]], areas[right[other]])
        pos = smaller > 0
        inter = shapely.area(shapely.intersection(garr[left[other[pos]]], garr[right[other[pos]]]))
        frac[other[pos]] = inter / smaller[pos]
    return frac


def groups_from_pairs(ids: Iterable[str], pairs: Iterable[tuple[str, str, float]]) -> dict[str, str]:
    """``{id: group id}`` (keys in natural order) from :func:`overlapping_pairs`: connected ids share a group
    whose id is the member first in natural order."""
    parent = {str(i): str(i) for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            # the root is always the naturally-smallest member
            lo, hi = sorted((ra, rb), key=natural_key)
            parent[hi] = lo
    return {i: find(i) for i in sorted(parent, key=natural_key)}


def leakage_groups(
    images: Iterable[Mapping[str, Any]], *, tolerance: float = OVERLAP_TOLERANCE
) -> dict[str, str]:
    """``{image id: group id}`` for every image (keys in natural order): images connected by overlapping
    footprints (:func:`overlapping_pairs`, transitively) share a group; the group id is the member id first
    in natural order, so an image that overlaps nothing is its own group."""
    recs = list(images)
    return groups_from_pairs((str(d["id"]) for d in recs), overlapping_pairs(recs, tolerance=tolerance))
