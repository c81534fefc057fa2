"""OpenAerialMap catalog client (``GET {api}/meta``, hotosm/oam-api).

The API answers ``{"meta": {"provided_by", "license", "website", "page", "limit", "found"},
"results": [<record>, ...]}``; a record's ``uuid`` is the URL of the image (a COG GeoTIFF), ``_id`` the
catalog id.  Query parameters as the API takes them: ``bbox=minlon,minlat,maxlon,maxlat``,
``gsd_from``/``gsd_to`` (metres), ``acquisition_from``/``acquisition_to`` (dates), ``limit``, ``page``
(1-based).

Responses are bounded (``response_max_bytes`` of :class:`pipeline.limits.Limits`, read as a stream; JSON
nested too deep is refused, not a ``RecursionError``) and every request goes through the network policy
(:func:`pipeline.sources.netpolicy.policy_session`).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import requests

from pipeline.errors import ConfigError, FetchError, LimitExceeded, NetworkPolicyError
from pipeline.limits import DEFAULT_LIMITS, Limits, human_bytes, human_sizes
from pipeline.sources.netpolicy import check_url_limits, policy_session

#: Hard cap on pages requested in one search, whatever ``meta.found`` says.
MAX_PAGES = 1000


def item_id(item: dict[str, Any]) -> str:
    """The catalog id of a record (``_id``), as a string."""
    return str(item.get("_id", ""))


def item_license(item: dict[str, Any], default: str) -> str:
    """A record's own licence (``license``, else ``properties.license``), else ``default``."""
    props = item.get("properties") or {}
    for value in (item.get("license"), props.get("license") if isinstance(props, dict) else None):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return default


def item_attribution(item: dict[str, Any], default: str) -> str:
    """``"<provider> (<contact>)"`` from the record (either part alone when only one is set), else ``default``."""
    provider = item.get("provider")
    contact = item.get("contact")
    provider = provider.strip() if isinstance(provider, str) else ""
    contact = contact.strip() if isinstance(contact, str) else ""
    if provider and contact:
        return f"{provider} ({contact})"
    return provider or contact or default


def build_params(
    *,
    bbox: Sequence[float] | None = None,
    gsd_from: float | None = None,
    gsd_to: float | None = None,
    acquisition_from: str | None = None,
    acquisition_to: str | None = None,
    limit: int = 100,
) -> dict[str, str]:
    """The ``/meta`` query parameters (without ``page``) for the given filters."""
    params: dict[str, str] = {}
    if bbox is not None:
        if len(bbox) != 4:
            raise ConfigError(f"bbox must be [west, south, east, north], got {list(bbox)!r}")
        w, s, e, n = (float(v) for v in bbox)
        if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
            raise ConfigError(f"bbox {list(bbox)!r} is not [west, south, east, north] in degrees")
        params["bbox"] = ",".join(format(v, "g") for v in (w, s, e, n))
    if gsd_from is not None:
        params["gsd_from"] = format(float(gsd_from), "g")
    if gsd_to is not None:
        params["gsd_to"] = format(float(gsd_to), "g")
    if acquisition_from:
        params["acquisition_from"] = str(acquisition_from)
    if acquisition_to:
        params["acquisition_to"] = str(acquisition_to)
    if int(limit) < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    params["limit"] = str(int(limit))
    return params


def _read_capped(resp: requests.Response, url: str, max_bytes: int) -> bytes:
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        shown, limit = human_sizes(int(length), max_bytes)
        raise LimitExceeded(url, f"response of {shown} is over response_max_bytes ({limit})")
    chunks, n = [], 0
    for chunk in resp.iter_content(1 << 16):
        n += len(chunk)
        if n > max_bytes:
            raise LimitExceeded(url, f"response is over response_max_bytes ({human_bytes(max_bytes)})")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, full: str) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(full, f"response is not JSON: {type(exc).__name__}: {str(exc)[:100]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list) or not isinstance(
        data.get("meta"), dict
    ):
        raise FetchError(full, "unexpected response: expected an object with 'meta' and a 'results' list")
    return data


def _get_json(session: requests.Session, url: str, params: dict[str, str], timeout: float, retries: int,
              limits: Limits = DEFAULT_LIMITS) -> dict:
    last = ""
    check_url_limits(url, limits)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 10.0))
        try:
            resp = session.get(url, params=params, timeout=(timeout, timeout), stream=True)
        except NetworkPolicyError as exc:
            raise NetworkPolicyError(url, exc.reason) from None
        except requests.exceptions.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        with resp:
            full = resp.url
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                last = f"HTTP {resp.status_code} {resp.reason}"
                continue
            if resp.status_code != 200:
                raise FetchError(full, f"HTTP {resp.status_code} {resp.reason}")
            try:
                body = _read_capped(resp, full, limits.response_max_bytes)
            except requests.exceptions.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
        return _parse(body, full)
    raise FetchError(url, f"giving up after {retries + 1} attempts: {last}")


def search_catalog_with_info(
    api_url: str,
    *,
    bbox: Sequence[float] | None = None,
    gsd_from: float | None = None,
    gsd_to: float | None = None,
    acquisition_from: str | None = None,
    acquisition_to: str | None = None,
    limit: int = 100,
    max_items: int | None = None,
    session: requests.Session | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    limits: Limits | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Like :func:`search_catalog`, also returning ``{"url", "params", "found", "pages", "meta"}``.

    ``meta`` is the first page's envelope (``provided_by``, ``license``, ``website`` ...); the caller
    records it with the crawl date because the catalogue changes over time.
    """
    url = api_url.rstrip("/") + "/meta"
    params = build_params(bbox=bbox, gsd_from=gsd_from, gsd_to=gsd_to, acquisition_from=acquisition_from,
                          acquisition_to=acquisition_to, limit=limit)
    lim = limits or DEFAULT_LIMITS
    own = session is None
    sess = session if session is not None else policy_session(lim)
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    found: int | None = None
    first_meta: dict[str, Any] = {}
    page = 1
    try:
        while page <= MAX_PAGES:
            data = _get_json(sess, url, {**params, "page": str(page)}, timeout, retries, lim)
            meta = data["meta"]
            if page == 1:
                first_meta = {k: v for k, v in meta.items() if k not in ("page",)}
            try:
                found = int(meta.get("found", 0))
                page_limit = int(meta.get("limit") or limit)
            except (TypeError, ValueError, OverflowError) as exc:
                raise FetchError(url, f"unexpected 'meta' in response: {meta!r}") from exc
            results = data["results"]
            for item in results:
                if not isinstance(item, dict):
                    raise FetchError(url, f"unexpected record in 'results' on page {page}: {item!r}")
                key = item_id(item) or str(item.get("uuid", ""))
                if key in seen:  # the catalogue shifted between pages
                    continue
                seen.add(key)
                items.append(item)
                if max_items is not None and len(items) >= max_items:
                    break
            if max_items is not None and len(items) >= max_items:
                break
            if not results or len(results) < page_limit or page * page_limit >= found:
                break
            page += 1
            if page > math.ceil(found / max(page_limit, 1)) + 1:
                break
    finally:
        if own:
            sess.close()
    items.sort(key=lambda it: (item_id(it), str(it.get("uuid", ""))))
    info = {"url": url, "params": params, "found": found, "pages": page, "meta": first_meta}
    return items, info


def search_catalog(
    api_url: str,
    *,
    bbox: Sequence[float] | None = None,
    gsd_from: float | None = None,
    gsd_to: float | None = None,
    acquisition_from: str | None = None,
    acquisition_to: str | None = None,
    limit: int = 100,
    max_items: int | None = None,
    session: requests.Session | None = None,
    limits: Limits | None = None,
) -> list[dict[str, Any]]:
    """Search the OAM catalog and return the matching records, sorted by ``_id`` (then ``uuid``).

    Calls ``GET {api_url}/meta`` with the filters as the API takes them and ``page=1, 2, ...`` until
    ``page * meta.limit >= meta.found``, a short or empty page, or ``max_items`` records (taken in the
    API's order, i.e. finest GSD first, before sorting).  Records repeated across pages are dropped.
    Raises ``FetchError`` (naming the request URL) on HTTP errors or a response of the wrong shape.
    """
    items, _ = search_catalog_with_info(
        api_url, bbox=bbox, gsd_from=gsd_from, gsd_to=gsd_to, acquisition_from=acquisition_from,
        acquisition_to=acquisition_to, limit=limit, max_items=max_items, session=session, limits=limits,
    )
    return items
