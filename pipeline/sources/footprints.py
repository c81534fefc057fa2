"""Building footprints of a scene as a GeoDataFrame, whatever the upstream format.

Policies:

* Result: a GeoDataFrame with only a ``geometry`` column of 2-D (Multi)Polygons, CRS =
  ``scene.footprints_crs``; an empty frame with that CRS when the scene has no footprints.
* ``scene.extra["footprints_format"] == "xbd-json"``: the file is an xBD label JSON; the polygons are
  the WKT of ``features.lng_lat`` (lon/lat, EPSG:4326), features whose ``properties.feature_type`` is
  present and not ``"building"`` are skipped.  Otherwise (``"vector"`` or unset) the file is read with
  GDAL (GeoJSON, GPKG, ...).
* A zero-byte file, a file with no features, and — for SpaceNet scenes, whose chips without buildings
  come with empty or invalid GeoJSON — an unreadable file all mean "no buildings", not an error.
  An unreadable file of any other kind raises :class:`~pipeline.errors.AnnotationRejected`.
* Z coordinates are dropped; invalid polygons are repaired with ``shapely.make_valid`` (all of a file's
  together, in a forked child given :data:`REPAIR_MAX_S`, else the file is rejected: :func:`repair_polygons`)
  and only their polygonal parts kept; empty, null and non-polygonal geometries (points, lines) are dropped.
* When the file declares a CRS different from ``scene.footprints_crs`` the polygons are reprojected
  to ``scene.footprints_crs`` (OGC:CRS84 and EPSG:4326 count as the same: GeoJSON is lon/lat).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline import forked
from pipeline.errors import AnnotationRejected, ProcessTimedOut
from pipeline.limits import DEFAULT_LIMITS
from pipeline.scene import Scene
from pipeline.sources.localfs import PROJ_FILE_TOKENS, file_problem, read_bounded, vector_problem

#: Seconds the repair of one file's invalid polygons may take (:func:`repair_polygons`).
REPAIR_MAX_S = 30.0
#: ``Scene.extra["footprints_format"]`` values.
XBD_JSON = "xbd-json"
VECTOR = "vector"


def empty_footprints(crs: str | None) -> gpd.GeoDataFrame:
    """An empty footprint frame (geometry column only) in ``crs``."""
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def polygonal(geom: BaseGeometry | None) -> BaseGeometry | None:
    """``geom`` as a valid 2-D Polygon/MultiPolygon, or ``None`` when nothing polygonal is left (repaired here,
    however long that takes: the geometries of a file a source or an annotator supplies go through
    :func:`repair_polygons`)."""
    if geom is None or geom.is_empty:
        return None
    geom = shapely.force_2d(geom)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return _polygonal_part(geom)


def repair_polygons(geoms: Sequence[BaseGeometry | None], file: str,
                    seconds: float = REPAIR_MAX_S) -> list[BaseGeometry | None]:
    """:func:`polygonal` of each geometry of one file, its invalid ones repaired together in a forked child
    (:mod:`pipeline.forked`) that may take ``seconds``: the time GEOS's ``make_valid`` takes grows with the
    square of the crossings of a polygon's edges or faster (a star polygon of 201 vertices, ~20,000 crossings:
    41 s; of 1,601 vertices: hours), so a few kilobytes of hostile GeoJSON could otherwise hold a build for days.
    Raises :class:`~pipeline.errors.AnnotationRejected` naming ``file`` when the repair takes longer."""
    flat = [None if g is None or g.is_empty else shapely.force_2d(g) for g in geoms]
    invalid = [i for i, g in enumerate(flat) if g is not None and not g.is_valid]
    if invalid:
        try:
            fixed = forked.start(_make_valid, [flat[i] for i in invalid]).result(timeout=seconds)
        except ProcessTimedOut:
            raise AnnotationRejected(file, f"repairing its {len(invalid)} invalid polygon(s) took longer than "
                                           f"{seconds:g} s (edges that cross each other thousands of times: "
                                           "repair them in an editor)") from None
        for i, g in zip(invalid, fixed):
            flat[i] = g
    return [None if g is None else _polygonal_part(g) for g in flat]


def _make_valid(geoms: list[BaseGeometry]) -> list[BaseGeometry]:
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return list(shapely.make_valid(arr))


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygonal part of a valid 2-D geometry (None when there is none)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return None if geom.is_empty else geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon)) and not g.is_empty]
    if not parts:
        return None
    polys: list[Polygon] = []
    for p in parts:
        polys.extend(p.geoms if isinstance(p, MultiPolygon) else [p])
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def read_xbd_label(path: str | Path, max_bytes: int | None = None) -> dict[str, Any]:
    """Parse an xBD label JSON (at most ``max_bytes``, default ``sidecar_max_bytes``); raises
    AnnotationRejected when it is too large, not JSON, nested too deeply or not ``{"features": {...}}``."""
    path = Path(path)
    limit = DEFAULT_LIMITS.sidecar_max_bytes if max_bytes is None else max_bytes
    try:
        data = json.loads(read_bounded(path, limit, AnnotationRejected))
    except (OSError, ValueError, RecursionError) as exc:
        raise AnnotationRejected(str(path), f"unreadable xBD label JSON: {type(exc).__name__}: "
                                            f"{str(exc)[:120]}") from None
    feats = data.get("features") if isinstance(data, dict) else None
    if not isinstance(feats, dict) or not isinstance(feats.get("xy", []), list) or not isinstance(
        feats.get("lng_lat", []), list
    ):
        raise AnnotationRejected(str(path), "xBD label JSON has no 'features' object with 'xy'/'lng_lat' lists")
    return data


def xbd_polygons(data: dict[str, Any], key: str, path: str | Path = "") -> list[tuple[str, BaseGeometry]]:
    """``(uid, geometry)`` of the building features in ``data["features"][key]`` (``"xy"`` or ``"lng_lat"``).

    Geometries are parsed from WKT as given (Z dropped, not repaired).  Features with a
    ``feature_type`` other than ``"building"`` are skipped; a feature without uid gets ``"#<index>"``.
    Unparsable WKT raises AnnotationRejected naming ``path``.
    """
    out: list[tuple[str, BaseGeometry]] = []
    for i, feat in enumerate(data.get("features", {}).get(key, []) or []):
        props = feat.get("properties") or {}
        ftype = props.get("feature_type")
        if ftype is not None and ftype != "building":
            continue
        wkt = feat.get("wkt")
        if not wkt:
            continue
        try:
            geom = shapely.from_wkt(wkt)
        except shapely.errors.GEOSException as exc:
            raise AnnotationRejected(str(path), f"bad WKT in features.{key}[{i}]: {exc}") from exc
        if geom is None or geom.is_empty:
            continue
        out.append((str(props.get("uid", f"#{i}")), shapely.force_2d(geom)))
    return out


def same_crs(a: Any, b: Any) -> bool:
    """Whether two CRS definitions (strings, pyproj or rasterio CRS) are the same: axis order ignored,
    OGC:CRS84 == EPSG:4326 (GeoJSON is lon/lat)."""
    if isinstance(a, RioCRS):
        a = a.to_wkt()
    if isinstance(b, RioCRS):
        b = b.to_wkt()
    ca, cb = CRS.from_user_input(a), CRS.from_user_input(b)
    if ca.equals(cb, ignore_axis_order=True):
        return True
    return {ca.to_string(), cb.to_string()} <= {"EPSG:4326", "OGC:CRS84"}


def check_crs_text(text: str) -> None:
    """``ValueError`` unless ``text``, a CRS definition read from a file a source sends (xBD geotransforms, a
    GeoJSON ``crs`` member), is at most 20000 characters and makes PROJ read no file (no ``+init=``, no
    grids but the built-in ``@null``)."""
    if len(text) > 20000:
        raise ValueError("CRS definition longer than 20000 characters")
    plain = text.replace("nadgrids=@null", "")
    token = next((t.decode() for t in PROJ_FILE_TOKENS if t.decode() in plain), None)
    if token:
        raise ValueError(f"CRS definition mentions {token!r}: PROJ would read files")


def crs_string(crs: Any) -> str:
    """A compact string for a CRS: ``EPSG:<code>`` when it has one (CRS84 -> ``EPSG:4326``), else WKT."""
    c = CRS.from_user_input(crs)
    if c.to_string() == "OGC:CRS84":
        return "EPSG:4326"
    code = c.to_epsg()
    return f"EPSG:{code}" if code is not None else c.to_wkt()


def vector_crs(path: str | Path, default: str | None = "EPSG:4326") -> str | None:
    """The CRS a vector file declares, as :func:`crs_string`; ``default`` when it declares none or
    cannot be read (GeoJSON without a ``crs`` member is lon/lat by RFC 7946)."""
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            data = json.loads(read_bounded(path, DEFAULT_LIMITS.sidecar_max_bytes, AnnotationRejected) or b"null")
        except (OSError, ValueError, RecursionError, AnnotationRejected):
            return default
        name = ((data or {}).get("crs") or {}).get("properties", {}).get("name") if isinstance(data, dict) else None
        try:
            if name:
                check_crs_text(str(name))
            return crs_string(name) if name else default
        except Exception:  # noqa: BLE001 - an unusable CRS member: GeoJSON is lon/lat
            return default
    if vector_problem(path) is not None:
        return default
    try:
        import pyogrio

        info = pyogrio.read_info(path)
    except Exception:  # noqa: BLE001 - any GDAL failure means "cannot tell"
        return default
    return crs_string(info["crs"]) if info.get("crs") else default


def _clean(geoms: list[BaseGeometry | None], crs: str | None, file: str) -> gpd.GeoDataFrame:
    kept = [g for g in repair_polygons(geoms, file) if g is not None]
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries(kept, crs=crs), crs=crs)


def _read_vector(path: Path, crs: str | None, lenient: bool) -> gpd.GeoDataFrame:
    why = file_problem(path, DEFAULT_LIMITS.sidecar_max_bytes, "sidecar_max_bytes")
    if why is None and path.stat().st_size > 0:
        why = vector_problem(path)
    if why is not None:
        if lenient and why.startswith("is not"):
            return empty_footprints(crs)
        raise AnnotationRejected(str(path), why)
    if path.stat().st_size == 0:
        return empty_footprints(crs)
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for a bad file
        if lenient:
            return empty_footprints(crs)
        raise AnnotationRejected(str(path), f"unreadable footprint file: {exc}") from exc
    if len(gdf) == 0:
        return empty_footprints(crs)
    out = _clean(list(gdf.geometry), gdf.crs if gdf.crs is not None else crs, str(path))
    if crs is None:
        return out
    if out.crs is None:
        return out.set_crs(crs)
    if same_crs(out.crs, crs):
        return out.set_crs(crs, allow_override=True)
    return out.to_crs(crs)


def load_footprints(scene: Scene) -> gpd.GeoDataFrame:
    """The building polygons of ``scene`` in ``scene.footprints_crs`` (see the module policies); of a mosaic of
    chips (``scene.extra["mosaic"]``, :mod:`pipeline.sources.mosaic`), those of every chip, in its first chip's."""
    chips = ((scene.extra or {}).get("mosaic") or {}).get("chips")
    if chips:
        alone = {k: v for k, v in scene.extra.items() if k != "mosaic"}
        parts = [load_footprints(replace(scene, footprints=ch["footprints"], footprints_crs=ch.get("footprints_crs"),
                                         extra=alone)) for ch in chips if ch.get("footprints")]
        crs = scene.footprints_crs
        parts = [p.to_crs(crs) if crs and p.crs is not None and not same_crs(p.crs, crs) else p for p in parts]
        return gpd.GeoDataFrame(geometry=[g for p in parts for g in p.geometry], crs=crs) if parts \
            else empty_footprints(crs)
    crs = scene.footprints_crs
    if not scene.footprints:
        return empty_footprints(crs)
    path = Path(scene.footprints)
    if not path.is_file():
        raise AnnotationRejected(str(path), "footprint file does not exist")
    if (scene.extra or {}).get("footprints_format") == XBD_JSON:
        data = read_xbd_label(path)
        return _clean([g for _, g in xbd_polygons(data, "lng_lat", path)], crs or "EPSG:4326", str(path))
    return _read_vector(path, crs, lenient=scene.kind == "spacenet")
