"""The viewer's offline world map: Natural Earth 1:110m land (and country borders) as SVG paths.

The outline ships pre-projected in ``assets/world-110m.json`` (``{"land": d, "borders": d, "view": [w, h]}``,
SVG path data in an equirectangular projection of 1 unit per degree, ``x = lon + 180``,
``y = LAT_TOP - lat``; latitudes below :data:`LAT_BOTTOM`, Antarctica, are cut off).  It was made once
from the npm package ``world-atlas`` 2.0.2 (ISC licence, ``assets/LICENSE-world-atlas.txt``; the Natural
Earth data it packs are public domain) with::

    python -m pipeline.release.viewer.worldmap countries-110m.json > pipeline/release/viewer/assets/world-110m.json

:func:`project` is the same projection for the region markers (the page's JavaScript repeats it).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

LAT_TOP = 84.0
LAT_BOTTOM = -58.0
#: Path coordinates are rounded to this many decimals of a degree.
DECIMALS = 1
#: Douglas-Peucker tolerance (degrees) of the simplification.
TOLERANCE = 0.15


def project(lon: float, lat: float) -> tuple[float, float]:
    """Map coordinates (x right, y down, degrees) of a WGS 84 longitude/latitude."""
    return lon + 180.0, LAT_TOP - lat


def _decode_arcs(topo: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """TopoJSON arcs (quantised, delta-encoded) as lists of lon/lat points."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def _ring(arcs: list[list[tuple[float, float]]], refs: Iterable[int]) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for r in refs:
        seg = arcs[r] if r >= 0 else arcs[~r][::-1]
        pts.extend(seg if not pts else seg[1:])
    return pts


def _unwrap(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A ring that crosses the antimeridian (a longitude step over 180 degrees) made continuous, so that
    it can be clipped to -180..180 and its parts shifted by 360 degrees into place."""
    out = ring[:1]
    shift = 0.0
    for (lon0, _), (lon1, lat1) in zip(ring, ring[1:]):
        if lon1 - lon0 > 180:
            shift -= 360
        elif lon0 - lon1 > 180:
            shift += 360
        out.append((lon1 + shift, lat1))
    return out


def _polygons(geom: dict[str, Any]) -> list[list[list[int]]]:
    if geom["type"] == "Polygon":
        return [geom["arcs"]]
    if geom["type"] == "MultiPolygon":
        return list(geom["arcs"])
    return []


def _path(lines: Iterable[Iterable[tuple[float, float]]], closed: bool) -> str:
    """SVG path data of projected lines: absolute first point, relative steps, rounded."""
    scale = 10 ** DECIMALS
    out = []
    for line in lines:
        pts = [tuple(round(c * scale) for c in project(*p)) for p in line]
        pts = [p for i, p in enumerate(pts) if i == 0 or p != pts[i - 1]]
        if len(pts) < (3 if closed else 2):
            continue
        steps = [f"M{pts[0][0] / scale:g} {pts[0][1] / scale:g}"]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            steps.append(f"l{(x1 - x0) / scale:g} {(y1 - y0) / scale:g}")
        out.append("".join(steps) + ("z" if closed else ""))
    return "".join(out)


def world_paths(topo: dict[str, Any]) -> dict[str, Any]:
    """``{"land", "borders", "view"}`` from world-atlas' ``countries-110m.json`` (objects ``land`` and
    ``countries``): land polygons clipped to :data:`LAT_BOTTOM`..:data:`LAT_TOP` and simplified, and the
    arcs shared by two countries (internal borders) as lines."""
    from shapely.affinity import translate
    from shapely.geometry import LineString, Polygon, box
    from shapely.ops import unary_union

    arcs = _decode_arcs(topo)
    land = []
    for geom in topo["objects"]["land"]["geometries"]:
        for poly in _polygons(geom):
            rings = [_unwrap(_ring(arcs, refs)) for refs in poly]
            land.append(Polygon(rings[0], rings[1:]).buffer(0))
    clip = box(-180, LAT_BOTTOM, 180, LAT_TOP)
    whole = unary_union(land)
    shape = unary_union([translate(whole, xoff=dx).intersection(clip) for dx in (-360, 0, 360)]).simplify(
        TOLERANCE, preserve_topology=True)
    parts = getattr(shape, "geoms", [shape])
    rings = [list(r.coords) for p in parts for r in [p.exterior, *p.interiors]]
    uses: dict[int, int] = {}
    for geom in topo["objects"]["countries"]["geometries"]:
        for poly in _polygons(geom):
            for refs in poly:
                for r in refs:
                    uses[r if r >= 0 else ~r] = uses.get(r if r >= 0 else ~r, 0) + 1
    borders: list[list[tuple[float, float]]] = []
    for i, n in sorted(uses.items()):
        if n > 1:
            line = LineString(arcs[i]).intersection(clip).simplify(TOLERANCE)
            borders.extend(list(g.coords) for g in getattr(line, "geoms", [line]) if not g.is_empty)
    return {"land": _path(rings, closed=True), "borders": _path(borders, closed=False),
            "view": [360, LAT_TOP - LAT_BOTTOM]}


if __name__ == "__main__":  # pragma: no cover  (one-off asset generation, see the module docstring)
    with open(sys.argv[1], encoding="utf-8") as fh:
        print(json.dumps(world_paths(json.load(fh)), separators=(",", ":")))
