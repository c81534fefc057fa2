"""Facts read from STAC items (plain dicts): licence, attribution, acquisition time, declared CRS and GSD,
the asset to use, and the client-side filters (bbox, datetime, ``query``) for catalogs that cannot
filter themselves.  Pure functions: nothing here touches the network or the disk.
"""
from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Asset keys tried in order when a source does not set ``options.assets``.
DEFAULT_ASSETS = ("visual", "image")
#: ``license`` values that mean "see the license links".
_LINKED_LICENSES = ("other", "proprietary", "various")
#: Operators of the STAC API query extension evaluated client-side.
QUERY_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "startsWith", "endsWith", "contains", "in")
_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt ].*)?)?)?$")



# --------------------------------------------------------------------------------------------- shape


def item_problem(item: Any) -> str | None:
    """Why ``item`` (a parsed JSON value) is not a usable STAC item, or None."""
    if not isinstance(item, dict):
        return f"not a JSON object but {type(item).__name__}"
    if item.get("type") != "Feature":
        return f"'type' is {item.get('type')!r}, not 'Feature'"
    if not isinstance(item.get("id"), str) or not item["id"].strip():
        return "missing 'id'"
    geom = item.get("geometry")
    if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon") or not geom.get("coordinates"):
        return "missing geometry (a Polygon or MultiPolygon footprint is needed)"
    if not isinstance(item.get("properties"), dict):
        return "missing 'properties'"
    if not isinstance(item.get("assets"), dict):
        return "missing 'assets'"
    try:
        item_bbox(item)
    except (TypeError, ValueError) as exc:
        return f"unusable geometry: {exc}"
    return None


def _coords(geom: dict) -> Iterable[Sequence[float]]:
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    for poly in polys:
        for ring in poly:
            yield from ring


def item_bbox(item: dict) -> tuple[float, float, float, float]:
    """``[west, south, east, north]`` of the item: its ``bbox`` (2D part), else the geometry's bounds."""
    bbox = item.get("bbox")
    if isinstance(bbox, list) and len(bbox) in (4, 6):
        half = len(bbox) // 2
        return float(bbox[0]), float(bbox[1]), float(bbox[half]), float(bbox[half + 1])
    pts = [(float(p[0]), float(p[1])) for p in _coords(item["geometry"])]
    if not pts:
        raise ValueError("geometry has no coordinates")
    xs, ys = zip(*pts)
    return min(xs), min(ys), max(xs), max(ys)


def bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


# --------------------------------------------------------------------------------------------- time


def _parse_instant(text: str, end: bool) -> _dt.datetime | None:
    """A datetime from an RFC 3339 string or a partial date (``2024``, ``2024-06``, ``2024-06-01``);
    a partial date means its first instant, or with ``end`` its last.  ``..`` / empty mean open."""
    text = text.strip()
    if text in ("", ".."):
        return None
    m = _DATE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an RFC 3339 datetime or a date")
    if "T" in text.upper() or " " in text:
        value = _dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    start = _dt.datetime(year, int(month or 1), int(day or 1), tzinfo=_dt.UTC)
    if not end:
        return start
    if day:
        nxt = start + _dt.timedelta(days=1)
    elif month:
        nxt = (start.replace(day=28) + _dt.timedelta(days=4)).replace(day=1)
    else:
        nxt = start.replace(year=year + 1)
    return nxt - _dt.timedelta(microseconds=1)


def parse_interval(text: str) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """``"2024-01-01/2024-06-30"``, ``"2024"``, ``"../2024-06"`` ... -> (start, end), None = open.

    ``ValueError`` for anything else (also when both ends are open or start > end)."""
    parts = text.split("/")
    if len(parts) == 1:
        start, end = _parse_instant(parts[0], False), _parse_instant(parts[0], True)
    elif len(parts) == 2:
        start, end = _parse_instant(parts[0], False), _parse_instant(parts[1], True)
    else:
        raise ValueError(f"{text!r} has more than one '/'")
    if start is None and end is None:
        raise ValueError(f"{text!r} is open at both ends")
    if start is not None and end is not None and start > end:
        raise ValueError(f"{text!r} ends before it starts")
    return start, end


def acquired(item: dict) -> str | None:
    """The acquisition time: ``properties.datetime``, else ``start_datetime``."""
    props = item.get("properties") or {}
    for key in ("datetime", "start_datetime"):
        if isinstance(props.get(key), str) and props[key]:
            return props[key]
    return None


def item_interval(item: dict) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    props = item.get("properties") or {}
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    conv = lambda v, e: _parse_instant(v, e) if isinstance(v, str) else None  # noqa: E731
    return conv(start, False), conv(end, True)


def in_interval(item: dict, interval: tuple[_dt.datetime | None, _dt.datetime | None]) -> bool:
    """Whether the item's time (instant or range) overlaps ``interval``; an item without time does not."""
    try:
        start, end = item_interval(item)
    except ValueError:
        return False
    if start is None and end is None:
        return False
    lo, hi = interval
    return not ((hi is not None and start is not None and start > hi) or
                (lo is not None and end is not None and end < lo))


# --------------------------------------------------------------------------------------------- query


def query_problem(query: Any) -> str | None:
    """Why ``query`` is not a STAC API query-extension object, or None."""
    if not isinstance(query, dict) or not query:
        return "must be a mapping of property -> {operator: value}"
    for prop, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            return f"'{prop}' must map operators to values"
        for op in ops:
            if op not in QUERY_OPS:
                return f"'{prop}': unknown operator '{op}' (known: {', '.join(QUERY_OPS)})"
    return None


def _property(item: dict, name: str) -> Any:
    if name in ("id", "collection"):
        return item.get(name)
    return (item.get("properties") or {}).get(name.removeprefix("properties."))


def _compare(value: Any, op: str, want: Any) -> bool:
    try:
        if op == "eq":
            return value == want
        if op == "neq":
            return value != want
        if op == "in":
            return value in want
        if value is None:
            return False
        if op in ("lt", "lte", "gt", "gte"):
            return {"lt": value < want, "lte": value <= want, "gt": value > want, "gte": value >= want}[op]
        text = str(value)
        return {"startsWith": text.startswith(str(want)), "endsWith": text.endswith(str(want)),
                "contains": str(want) in text}[op]
    except TypeError:
        return False


def matches_query(item: dict, query: dict | None) -> bool:
    """Client-side evaluation of the query extension (every condition must hold)."""
    if not query:
        return True
    return all(_compare(_property(item, prop), op, want)
               for prop, ops in query.items() for op, want in ops.items())


# --------------------------------------------------------------------------------------------- licence


def _links(obj: dict, rel: str) -> list[dict]:
    return [lk for lk in obj.get("links") or [] if isinstance(lk, dict) and lk.get("rel") == rel]


def _license_of(obj: dict, is_item: bool) -> str | None:
    value = (obj.get("properties") or {}).get("license") if is_item else obj.get("license")
    value = value.strip() if isinstance(value, str) else ""
    links = [str(lk.get("title") or lk["href"]) for lk in _links(obj, "license") if lk.get("href")]
    if value and value.lower() not in _LINKED_LICENSES:
        return value
    if links:
        return f"{value}: {'; '.join(links)}" if value else "; ".join(links)
    return value or None


def item_license(item: dict, parents: Sequence[dict], default: str) -> str:
    """The item's ``license`` (SPDX id; ``other``/``proprietary``/``various`` are completed by its license
    links), else that of the nearest parent collection/catalog that has one, else ``default``."""
    for obj, is_item in [(item, True), *((p, False) for p in parents)]:
        found = _license_of(obj, is_item)
        if found:
            return found
    return default


def _provider_names(providers: Any) -> list[str]:
    if not isinstance(providers, list):
        return []
    valid = [p for p in providers if isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"].strip()]
    credited = [p for p in valid if {"licensor", "producer"} & set(p.get("roles") or [])]
    return list(dict.fromkeys(p["name"].strip() for p in (credited or valid)))


def item_attribution(item: dict, parents: Sequence[dict], default: str) -> str:
    """Provider names (licensors and producers first) of the item (``providers`` in its properties or at
    the top level, as OpenAerialMap writes them; else its ``provider`` string), else of the nearest
    parent that lists providers, else ``default``."""
    props = item.get("properties") or {}
    names = _provider_names(props.get("providers")) or _provider_names(item.get("providers"))
    if not names and isinstance(props.get("provider"), str) and props["provider"].strip():
        names = [props["provider"].strip()]
    for parent in parents:
        if names:
            break
        names = _provider_names(parent.get("providers"))
    return "; ".join(names) if names else default


# --------------------------------------------------------------------------------------------- assets


def pick_asset(item: dict, keys: Sequence[str]) -> tuple[str, dict] | None:
    """The first of ``keys`` that the item has as an asset with an ``href``: ``(key, asset)``."""
    assets = item.get("assets") or {}
    for key in keys:
        asset = assets.get(key)
        if isinstance(asset, dict) and isinstance(asset.get("href"), str) and asset["href"].strip():
            return key, asset
    return None


def declared_crs(item: dict, asset: dict) -> str | None:
    """The CRS the item declares for the asset: ``proj:code`` / ``proj:epsg`` of the asset, else of the
    item's properties (projection extension v2 and v1)."""
    for obj in (asset, item.get("properties") or {}):
        code = obj.get("proj:code")
        if isinstance(code, str) and code.strip():
            return code.strip()
        epsg = obj.get("proj:epsg")
        if isinstance(epsg, int) and not isinstance(epsg, bool):
            return f"EPSG:{epsg}"
    return None


def declared_gsd(item: dict, asset: dict) -> float | None:
    """``gsd`` of the asset, else of the item's properties."""
    for obj in (asset, item.get("properties") or {}):
        value = obj.get("gsd")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def rgb_bands(asset: dict) -> list[int] | None:
    """The numbers (from 1) of the asset's red, green and blue bands by the common names its band list gives them
    (``eo:bands``, STAC 1.0's eo extension, or STAC 1.1's ``bands`` with ``eo:common_name``); None unless each of
    the three is named exactly once (``options.bands`` of the source overrides it: :mod:`pipeline.raster.plan`)."""
    bands = asset.get("eo:bands") or asset.get("bands")
    if not isinstance(bands, list):
        return None
    names = [b.get("common_name") or b.get("eo:common_name") if isinstance(b, dict) else None for b in bands]
    out = [names.index(c) + 1 for c in ("red", "green", "blue") if names.count(c) == 1]
    return out if len(out) == 3 else None


def self_link(item: dict) -> str | None:
    for lk in _links(item, "self"):
        if isinstance(lk.get("href"), str):
            return lk["href"]
    return None


def file_sha256(asset: dict) -> str | None:
    """The sha256 hex digest from the asset's ``file:checksum`` multihash (``1220`` + 64 hex), if any."""
    value = asset.get("file:checksum")
    if isinstance(value, str) and re.fullmatch(r"1220[0-9a-fA-F]{64}", value):
        return value[4:].lower()
    return None
