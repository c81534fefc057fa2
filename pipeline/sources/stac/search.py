"""Find the items of a STAC source: search a STAC API with pystac-client, or walk a static catalog.

:func:`find_items` returns one :class:`Found` per candidate item in a stable order (sorted by item id,
then href), each with the chain of catalogs/collections above it (for licence and provider fallbacks)
or, for an item that could not be read or is not a usable STAC item, the problem.  A location that is
unreadable, or neither an API landing page nor a catalog/collection, raises ``FetchError``.

Filters: ``collections``, ``bbox`` (WGS 84 ``[west, south, east, north]``), ``datetime`` (RFC 3339
interval), ``query`` (STAC API query extension) are sent to an API that supports them and evaluated
client-side otherwise; ``filter`` (CQL2) needs an API that declares the filter conformance class.
``max_items`` caps the *usable* candidates (items that could be read and are STAC items), in search order:
broken items are returned too but do not count; the search record's ``truncated`` says the cap was reached.
"""
from __future__ import annotations

import collections as _collections
from dataclasses import dataclass, field
from typing import Any, cast

import requests
from pystac.utils import make_absolute_href

from pipeline.errors import FetchError
from pipeline.sources.config import SourceConfig
from pipeline.sources.stac.io import api_io, read_json
from pipeline.sources.stac.items import (
    bbox_intersects,
    in_interval,
    item_bbox,
    item_problem,
    matches_query,
    parse_interval,
    self_link,
)

#: Default ``collections`` of the ``openaerialmap`` kind on OpenAerialMap's STAC API.
OAM_COLLECTIONS = ("openaerialmap",)
Bbox = tuple[float, float, float, float]
#: Catalog documents read in one static walk at most (a guard against link cycles and huge catalogs).
MAX_DOCUMENTS = 100_000


@dataclass(frozen=True)
class StacQuery:
    """What to look for (see the module docstring)."""

    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    query: dict | None = None
    filter: Any = None
    max_items: int | None = None
    limit: int = 100

    def wants(self, item: dict, *, spatial: bool = True) -> bool:
        """Client-side filters: bbox, datetime, query (``spatial=False`` skips the bbox)."""
        if spatial and self.bbox is not None and not bbox_intersects(item_bbox(item), self.bbox):
            return False
        if self.datetime and not in_interval(item, parse_interval(self.datetime)):
            return False
        return matches_query(item, self.query)


def stac_query(source: SourceConfig) -> StacQuery:
    """The search of a ``stac`` source, or of an ``openaerialmap`` source on the STAC API (its
    ``acquisition_from/to`` become the datetime interval, ``gsd_from/to`` a ``query`` on ``gsd``)."""
    o = source.options or {}
    bbox = cast(Bbox, tuple(float(v) for v in o["bbox"])) if o.get("bbox") else None
    if source.kind == "openaerialmap":
        dt = None
        if o.get("acquisition_from") or o.get("acquisition_to"):
            dt = f"{o.get('acquisition_from') or '..'}/{o.get('acquisition_to') or '..'}"
        gsd = {op: float(o[key]) for op, key in (("gte", "gsd_from"), ("lte", "gsd_to")) if o.get(key) is not None}
        return StacQuery(collections=tuple(o.get("collections") or OAM_COLLECTIONS), bbox=bbox, datetime=dt,
                         query={"gsd": gsd} if gsd else None, max_items=o.get("max_items"),
                         limit=int(o.get("limit") or 100))
    return StacQuery(collections=tuple(o["collections"]) if o.get("collections") else None, bbox=bbox,
                     datetime=o.get("datetime"), query=o.get("query"), filter=o.get("filter"),
                     max_items=o.get("max_items"), limit=int(o.get("limit") or 100))


@dataclass
class Found:
    """A candidate item: ``base`` is the URL/path it was read from (relative asset hrefs resolve against
    it), ``item`` the parsed item or None, ``parents`` the catalogs/collections above it (nearest first),
    ``problem`` why it cannot be used (then ``item`` may be None)."""

    base: str
    item: dict | None
    parents: list[dict] = field(default_factory=list)
    problem: str | None = None

    @property
    def self_href(self) -> str:
        """The item's own ``self`` link (made absolute), else where it was read."""
        link = self_link(self.item) if isinstance(self.item, dict) else None
        return make_absolute_href(link, self.base) if link else self.base

    @property
    def item_id(self) -> str:
        return str(self.item.get("id", "")) if isinstance(self.item, dict) else ""


def _conformance(root: dict, location: str, session: requests.Session) -> list[str]:
    classes = root.get("conformsTo")
    if isinstance(classes, list):
        return [str(c) for c in classes]
    for link in root.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "conformance" and link.get("href"):
            doc = read_json(make_absolute_href(link["href"], location), session=session)
            if isinstance(doc, dict) and isinstance(doc.get("conformsTo"), list):
                return [str(c) for c in doc["conformsTo"]]
    return []


def _declares(classes: list[str], suffix: str) -> bool:
    return any(c.rstrip("/").endswith(suffix) for c in classes)


def _features(classes: list[str]) -> bool:
    """OGC API Features core (``/collections/{id}/items``), as STAC APIs declare it."""
    return any("ogcapi-features" in c and (c.rstrip("/").endswith("/conf/core") or c.endswith("/ogcapi-features"))
               for c in classes)


def find_items(location: str, q: StacQuery, *, session: requests.Session,
               endpoint_url: str | None = None) -> tuple[list[Found], dict[str, Any]]:
    """The candidate items at ``location`` and a description of the search (for the fetch record)."""
    root = read_json(location, session=session, endpoint_url=endpoint_url)
    if not isinstance(root, dict):
        raise FetchError(location, "not a STAC API landing page, catalog or collection (not a JSON object)")
    classes = _conformance(root, location, session) if "links" in root else []
    if _declares(classes, "/item-search") or _features(classes):
        found, info = _search_api(location, root, classes, q, session)
    elif root.get("type") in ("Catalog", "Collection") or (root.get("links") and root.get("id")):
        if q.filter is not None:
            raise FetchError(location, "options.filter (CQL2) needs a STAC API that supports it; "
                                       "this is a static catalog (use options.query instead)")
        found, info = _walk_static(location, root, q, session, endpoint_url)
    else:
        raise FetchError(location, "not a STAC API landing page, catalog or collection "
                                   f"(type {root.get('type')!r}, no 'conformsTo')")
    found.sort(key=lambda f: (f.item_id, f.base))
    usable = sum(1 for f in found if f.problem is None)
    info.update(url=location, found=len(found), rejected=len(found) - usable,
                truncated=q.max_items is not None and usable >= q.max_items)
    return found, info


# --------------------------------------------------------------------------------------------- API


def _api_item(page_url: str, item: Any, q: StacQuery, parents: list[dict], client_side: bool) -> Found | None:
    problem = item_problem(item)
    base = page_url
    if isinstance(item, dict):
        link = self_link(item)
        if link:
            base = make_absolute_href(link, page_url)
        elif isinstance(item.get("id"), str) and isinstance(item.get("collection"), str):
            base = f"{page_url.rstrip('/')}/collections/{item['collection']}/items/{item['id']}"
    if problem is None and client_side and not q.wants(item):
        return None
    return Found(base=base, item=item if isinstance(item, dict) else None, parents=parents, problem=problem)


def _search_api(location: str, root: dict, classes: list[str], q: StacQuery,
                session: requests.Session) -> tuple[list[Found], dict[str, Any]]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    can_search = _declares(classes, "/item-search")
    can_query = _declares(classes, "/item-search#query")
    can_filter = any("filter" in c for c in classes) and can_search
    if q.filter is not None and not can_filter:
        raise FetchError(location, "options.filter (CQL2) is not supported by this API "
                                   "(no filter conformance class); use options.query or bbox/datetime")
    io = api_io(session)
    collection_docs: dict[str, list[dict]] = {}

    def parents_of(item: Any) -> list[dict]:
        cid = item.get("collection") if isinstance(item, dict) else None
        if not isinstance(cid, str):
            return []
        if cid not in collection_docs:
            try:
                coll = client.get_collection(cid)
                collection_docs[cid] = [coll.to_dict(include_self_link=False)] if coll is not None else []
            except Exception:  # noqa: BLE001  (a collection we cannot read only loses the fallbacks)
                collection_docs[cid] = []
        return collection_docs[cid]

    found: list[Found] = []
    usable = 0  # max_items counts usable items: a broken one does not take a scene's place
    try:
        client = Client.open(location, stac_io=io)
        if can_search:
            search = client.search(
                collections=list(q.collections) if q.collections else None, bbox=q.bbox, datetime=q.datetime,
                query=q.query if can_query else None, filter=q.filter, limit=q.limit,
            )
            pages = search.pages_as_dicts()
            params = search.get_parameters()
        else:  # OGC API Features only: the items of each collection, filtered here
            cids = list(q.collections) if q.collections else [c.id for c in client.get_collections()]
            params = {"bbox": q.bbox, "datetime": q.datetime, "limit": q.limit}
            pages = (page for cid in cids for page in io.get_pages(
                f"{location.rstrip('/')}/collections/{cid}/items",
                parameters={k: (",".join(map(str, v)) if k == "bbox" else v) for k, v in params.items() if v}))
        client_side = not can_search or (q.query is not None and not can_query)
        for page in pages:
            for item in page.get("features") or []:
                one = _api_item(location, item, q, parents_of(item), client_side)
                if one is not None:
                    found.append(one)
                    usable += one.problem is None
                if q.max_items is not None and usable >= q.max_items:
                    break
            if q.max_items is not None and usable >= q.max_items:
                break
    except APIError as exc:
        cause = exc.__context__  # pystac-client wraps whatever its session raised
        if isinstance(cause, FetchError):  # the network policy, a limit: keep the named error
            raise cause from None
        raise FetchError(location, f"STAC API error: {exc}") from exc
    info = {"type": "api", "search": bool(can_search), "query_supported": can_query, "filter_supported": can_filter,
            "parameters": {k: v for k, v in params.items() if v is not None}}
    return found, info


# --------------------------------------------------------------------------------------------- static


def _links(doc: dict, rel: str, base: str) -> list[str]:
    hrefs = [lk["href"] for lk in doc.get("links") or []
             if isinstance(lk, dict) and lk.get("rel") == rel and isinstance(lk.get("href"), str)]
    return sorted(make_absolute_href(h, base) for h in hrefs)


def _extent_misses(doc: dict, bbox: tuple | None) -> bool:
    """Whether a collection's spatial extent lies entirely outside ``bbox``."""
    if bbox is None or doc.get("type") != "Collection":
        return False
    boxes = (((doc.get("extent") or {}).get("spatial") or {}).get("bbox")) or []
    try:
        rects = [(float(b[0]), float(b[1]), float(b[len(b) // 2]), float(b[len(b) // 2 + 1])) for b in boxes]
    except (TypeError, ValueError, IndexError):
        return False
    return bool(rects) and not bbox_intersects(rects[0], bbox)  # the first box is the overall extent


def _walk_static(location: str, root: dict, q: StacQuery, session: requests.Session,
                 endpoint_url: str | None) -> tuple[list[Found], dict[str, Any]]:
    """Breadth-first over ``child`` links; items (``item`` links) of the selected collections.

    With ``collections`` set, a collection is entered when its id is listed or it lies below a listed
    one; catalogs (not collections) are always entered.  Collections whose extent misses the bbox are
    skipped.  A child that cannot be read is reported like a broken item (its href, the reason)."""
    found: list[Found] = []
    queue: _collections.deque[tuple[str, dict, list[dict], bool]] = _collections.deque([(location, root, [], False)])
    seen = {location}
    documents = 1
    wanted = set(q.collections or ())
    full = lambda: q.max_items is not None and sum(f.problem is None for f in found) >= q.max_items  # noqa: E731
    while queue and not full():
        href, doc, parents, inside = queue.popleft()
        selected = inside or not wanted or doc.get("id") in wanted
        if _extent_misses(doc, q.bbox):
            continue
        chain = [doc, *parents]
        if selected:
            for item_href in _links(doc, "item", href):
                if full():
                    break
                if item_href in seen:
                    continue
                seen.add(item_href)
                one = _static_item(item_href, chain, q, session, endpoint_url)
                if one is not None:
                    found.append(one)
        for child_href in _links(doc, "child", href):
            if child_href in seen or documents >= MAX_DOCUMENTS:
                continue
            seen.add(child_href)
            documents += 1
            try:
                child = read_json(child_href, session=session, endpoint_url=endpoint_url)
            except FetchError as exc:
                found.append(Found(base=child_href, item=None, parents=chain, problem=exc.reason))
                continue
            if not isinstance(child, dict):
                found.append(Found(base=child_href, item=None, parents=chain, problem="not a JSON object"))
                continue
            if wanted and not selected and child.get("type") == "Collection" and child.get("id") not in wanted:
                continue
            queue.append((child_href, child, chain, selected))
    info = {"type": "static", "documents": documents + len(found),
            "parameters": {k: v for k, v in (("collections", list(wanted) or None), ("bbox", q.bbox),
                                             ("datetime", q.datetime), ("query", q.query)) if v}}
    return found, info


def _static_item(href: str, chain: list[dict], q: StacQuery, session: requests.Session,
                 endpoint_url: str | None) -> Found | None:
    try:
        item = read_json(href, session=session, endpoint_url=endpoint_url)
    except FetchError as exc:
        return Found(base=href, item=None, parents=chain, problem=exc.reason)
    problem = item_problem(item)
    if problem is None and not q.wants(item):
        return None
    return Found(base=href, item=item if isinstance(item, dict) else None, parents=chain, problem=problem)
