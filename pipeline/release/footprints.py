"""Image footprints in WGS 84 for the release's catalogs (STAC items and collection, the GeoParquet index): the
tile's native rectangle with its four corners transformed to lon/lat (no Luigi here)."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def _to_lonlat(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def footprint_lonlat(rec: dict[str, Any], ndigits: int = 7) -> list[list[float]]:
    """Closed counter-clockwise ring (lon, lat) of an image record: its native ``bounds`` rectangle with
    the corners transformed from ``crs`` to WGS 84; ``bounds_lonlat`` as a box when that fails."""
    try:
        minx, miny, maxx, maxy = (float(v) for v in rec["bounds"])
        t = _to_lonlat(str(rec["crs"]))
        corners = [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy)]
        ring = [[round(float(x), ndigits), round(float(y), ndigits)]
                for x, y in (t.transform(cx, cy) for cx, cy in corners)]
        if not all(map(lambda p: all(map(lambda v: v == v and abs(v) != float("inf"), p)), ring)):
            raise ValueError("non-finite coordinates")
    except Exception:  # noqa: BLE001  (unknown CRS, malformed bounds: fall back to the lon/lat box)
        w, s, e, n = (round(float(v), ndigits) for v in rec["bounds_lonlat"])
        ring = [[w, s], [e, s], [e, n], [w, n]]
    return ring + [list(ring[0])]


def _corners(records: Sequence[dict[str, Any]]):
    """Per CRS of ``records``: ``(indices, lon, lat, ok)``, the four corners of each record's ``bounds``
    transformed in one call (``lon``, ``lat``: arrays of shape (n, 4); ``ok``: all finite), or ``(indices, None,
    None, None)`` when the CRS or a bounds value cannot be used (those records go record by record)."""
    import numpy as np

    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(str(rec.get("crs")), []).append(i)
    for crs, idx in groups.items():
        try:
            b = np.array([[float(v) for v in records[i]["bounds"]] for i in idx], dtype=float).reshape(-1, 4)
            xs = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0]], 1).ravel()
            ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], 1).ravel()
            lon, lat = _to_lonlat(crs).transform(xs, ys)
            lon, lat = np.asarray(lon).reshape(-1, 4), np.asarray(lat).reshape(-1, 4)
            ok = np.isfinite(lon).all(axis=1) & np.isfinite(lat).all(axis=1)
        except Exception:  # noqa: BLE001  (unknown CRS, malformed bounds: record by record)
            yield idx, None, None, None
            continue
        yield idx, lon, lat, ok


def footprints_lonlat(records: Sequence[dict[str, Any]], ndigits: int = 7) -> list[list[list[float]]]:
    """:func:`footprint_lonlat` of every record, the same rings, with one coordinate transformation per CRS
    (instead of one per record: 5,000 records 0.23 -> 0.06 s)."""
    out: list[list[list[float]] | None] = [None] * len(records)
    for idx, lon, lat, ok in _corners(records):
        for k, i in enumerate(idx):
            if ok is None or not ok[k]:
                out[i] = footprint_lonlat(records[i], ndigits)
                continue
            ring = [[round(float(x), ndigits), round(float(y), ndigits)] for x, y in zip(lon[k], lat[k])]
            out[i] = ring + [list(ring[0])]
    return out  # type: ignore[return-value]


def footprints_bbox(records: Sequence[dict[str, Any]], ndigits: int = 7) -> list[float] | None:
    """``[west, south, east, north]`` over the :func:`footprints_lonlat` rings of ``records`` (None for none),
    without making the rings: the extremes of the transformed corners rounded once, which are the extremes of the
    rounded corners (rounding never reverses an order)."""
    if not records:
        return None
    lo, hi = [float("inf")] * 2, [float("-inf")] * 2
    for idx, lon, lat, ok in _corners(records):
        if ok is not None and ok.any():
            lo = [min(lo[0], float(lon[ok].min())), min(lo[1], float(lat[ok].min()))]
            hi = [max(hi[0], float(lon[ok].max())), max(hi[1], float(lat[ok].max()))]
        for k, i in enumerate(idx):
            if ok is None or not ok[k]:
                for x, y in footprint_lonlat(records[i], ndigits):
                    lo, hi = [min(lo[0], x), min(lo[1], y)], [max(hi[0], x), max(hi[1], y)]
    return [round(v, ndigits) for v in (lo[0], lo[1], hi[0], hi[1])]


def epsg_of(crs: str) -> int | None:
    """The integer EPSG code of ``"EPSG:<n>"``, else None."""
    auth, _, code = str(crs).partition(":")
    return int(code) if auth.upper() == "EPSG" and code.isdigit() else None
