"""Checks of the options of STAC-backed source kinds (``stac``, ``openaerialmap``) beyond their types.

:func:`option_problem` returns ``(key, message)`` for the first bad option; :mod:`pipeline.sources.config`
turns it into an error naming the file, the source and ``options.<key>``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from pipeline.sources.stac.items import parse_interval, query_problem

NON_COG_POLICIES = ("reject", "download")
OAM_APIS = ("stac", "meta")


def bbox_problem(bbox: Any) -> str | None:
    """Why ``bbox`` is not ``[west, south, east, north]`` in WGS 84 degrees, or None."""
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return f"must be [west, south, east, north] (4 numbers), got {bbox!r}"
    w, s, e, n = bbox
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        return f"{bbox!r} is not [west, south, east, north] in degrees with west < east and south < north"
    return None


def _strings(value: list) -> bool:
    return bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def option_problem(kind: str, options: dict[str, Any]) -> tuple[str, str] | None:
    """The first ``(key, message)`` problem of a ``stac`` / ``openaerialmap`` source's options, or None."""
    if options.get("bbox") is not None:
        problem = bbox_problem(options["bbox"])
        if problem:
            return "bbox", problem
    for key in ("max_items", "limit"):
        if options.get(key) is not None and options[key] < 1:
            return key, f"must be at least 1, got {options[key]}"
    if kind == "openaerialmap" and options.get("api") not in OAM_APIS:
        return "api", f"must be one of {', '.join(OAM_APIS)}, got {options.get('api')!r}"
    for key in ("collections", "assets"):
        if options.get(key) is not None and not _strings(options[key]):
            return key, f"must be a non-empty list of names, got {options[key]!r}"
    if options.get("non_cog") not in (None, *NON_COG_POLICIES):
        return "non_cog", f"must be one of {', '.join(NON_COG_POLICIES)}, got {options['non_cog']!r}"
    if options.get("datetime") is not None:
        try:
            parse_interval(options["datetime"])
        except ValueError as exc:
            return "datetime", f"not an RFC 3339 datetime or interval: {exc}"
    if options.get("query") is not None:
        problem = query_problem(options["query"])
        if problem:
            return "query", problem
    if isinstance(options.get("filter"), str) and not options["filter"].strip():
        return "filter", "is empty"
    endpoint = options.get("endpoint_url")
    if endpoint is not None and (urlparse(endpoint).scheme not in ("http", "https") or not urlparse(endpoint).netloc):
        return "endpoint_url", f"must be an http(s) URL, got {endpoint!r}"
    return None
