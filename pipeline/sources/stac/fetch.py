"""Fetch a STAC source (kind ``stac``, and ``openaerialmap`` through OpenAerialMap's STAC API).

Layout written into ``dest`` (``data/raw/<source>/files/``)::

    items/<scene>.json     the STAC item as found; images/<scene>.tif: the asset, whole or its bbox window
    downloads/<scene>.*    a whole non-COG asset a window was cut from (``options.non_cog: download``)
    stac-index.json        written last: one entry per scene (licence, attribution, acquisition time, self link,
                           asset, how it was read, bytes transferred, CRS/GSD checks) and one per rejected
                           item (file, stage, reason); the adapter reads only this and the files it names

Reading policy per item (first asset key of ``options.assets`` the item has):

* no ``bbox``: the whole file (http(s): :func:`pipeline.sources.download.download`, resumed and checked against
  ``options.sha256`` (keyed by the asset's file name) or the asset's ``file:checksum``; s3:
  :func:`pipeline.sources.s3.download_key`; a local file is hard-linked or copied);
* with a ``bbox``: the pixel window covering it is read with HTTP range requests (GDAL ``/vsicurl/`` or ``/vsis3/``)
  and written as a local GeoTIFF (same grid, same pixels).  This needs a Cloud-Optimized GeoTIFF: any other asset
  is rejected (``options.non_cog: download`` downloads it whole and cuts the window locally instead).  A window
  that is the whole image is downloaded whole.
* an extract or download whose inputs (asset href, bbox, item ``updated``/checksum/size) are those of the
  previous fetch (or of the raw folder this one started from), and whose file still has the recorded sha256, is
  reused without any request.

Per-item problems (an item whose licence ``options.licences`` does not list, refused before its asset is read;
unreadable or broken item, no such asset, asset missing or unreadable, not a COG, CRS differing from the item's, no
overlap with the bbox, an asset URL or redirect the network policy refuses, a download over a limit) reject that
item only: an index row and a ``rejects.csv`` row naming the item or asset URL. Transient failures (5xx, 408, 429,
timeouts, refused connections, after the retries) raise :class:`TransientFetchError` instead: the source's fetch
fails and a rerun tries again, rather than recording a reject that a complete fetch would never revisit.

Every request is made under the network policy and the limits of the build (``limits``, :mod:`.io`): the location,
every API page, catalog, item and asset URL, every redirect and connection; a location the policy refuses fails.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import posixpath
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import rasterio
import rasterio.errors
from pystac.utils import make_absolute_href
from rasterio.windows import Window

from pipeline import atomic
from pipeline.errors import FetchError, ItemRejected, NetworkPolicyError, TransientFetchError
from pipeline.licences import licence_refused
from pipeline.limits import DEFAULT_LIMITS, Limits
from pipeline.sources.adapters.base import safe_id
from pipeline.sources.cog_window import cog_problems, extract_window, is_full, verify_georef, window_for_bbox
from pipeline.sources.config import SourceConfig
from pipeline.sources.download import download, file_digests
from pipeline.sources.localfs import check_file
from pipeline.sources.stac.io import (
    ByteCounter,
    NetworkStats,
    Traffic,
    asset_driver,
    check_s3,
    clear_gdal_cache,
    gdal_options,
    gdal_source,
    http_session,
    local_path,
    scheme_of,
)
from pipeline.sources.stac.items import (
    DEFAULT_ASSETS,
    acquired,
    declared_crs,
    declared_gsd,
    file_sha256,
    item_attribution,
    item_license,
    pick_asset,
)
from pipeline.sources.stac.search import Found, StacQuery, find_items, stac_query

INDEX = "stac-index.json"
MAX_SEARCH_ROUNDS = 5  #: ``max_items`` counts scenes: searches for more when rejects took places
ITEMS, IMAGES, DOWNLOADS = "items", "images", "downloads"

Progress = Callable[[int, int | None], None]
_HTTP_CODE = re.compile(r"HTTP (?:response code: )?(\d{3})")
_TRANSIENT_WORDS = ("giving up after", "timed out", "timeout", "couldn't connect", "could not connect",
                    "connection refused", "connection reset", "could not resolve", "cannot resolve host")


def _transient(message: str) -> bool:
    m = _HTTP_CODE.search(message)
    if m:
        code = int(m.group(1))
        return code >= 500 or code in (408, 429)
    return any(w in message.lower() for w in _TRANSIENT_WORDS)


@dataclass
class _Ctx:
    source: SourceConfig
    dest: Path
    query: StacQuery
    assets: tuple[str, ...]
    non_cog: str
    endpoint_url: str | None
    previous: dict[str, dict]
    limits: Limits = DEFAULT_LIMITS
    session: Any = None
    used_ids: set[str] = field(default_factory=set)


def _previous(dest: Path) -> dict[str, dict]:
    try:
        index = json.loads((dest / INDEX).read_text())
        return {e["scene_id"]: e for e in index.get("scenes", []) if isinstance(e, dict) and "scene_id" in e}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def fetch_stac(source: SourceConfig, dest: Path, *, progress: Progress | None = None,
               limits: Limits | None = None) -> dict[str, Any]:
    """Fetch the items of ``source`` into ``dest`` and return the fetch record (see
    :func:`pipeline.sources.fetch.fetch_source`) with ``items`` (one summary per scene), ``rejects`` and
    ``transfer`` (``bytes`` in all; ``metadata_bytes`` of JSON, ``asset_bytes`` of pixels).  ``limits``
    (default :data:`pipeline.limits.DEFAULT_LIMITS`): the network policy and the download bounds."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    opts = source.options or {}
    lim = limits or DEFAULT_LIMITS
    traffic = Traffic()
    ctx = _Ctx(source=source, dest=dest, query=stac_query(source),
               assets=tuple(opts.get("assets") or DEFAULT_ASSETS), non_cog=opts.get("non_cog") or "reject",
               endpoint_url=opts.get("endpoint_url"), previous=_previous(dest), limits=lim,
               session=http_session(limits=lim))
    search_session = http_session(traffic, lim)
    wanted = ctx.query.max_items
    try:
        for _ in range(MAX_SEARCH_ROUNDS):
            found, info = find_items(source.location, ctx.query, session=search_session,
                                     endpoint_url=ctx.endpoint_url)
            ctx.used_ids.clear()
            scenes, rejects, files = _fetch_all(ctx, found, progress)
            if wanted is None or len(scenes) >= wanted or not info.get("truncated"):
                break
            # items whose asset failed took scene places: search again for as many more (what was read is
            # reused from the cache, the rejects come back in the same order)
            ctx.previous.update({e["scene_id"]: e for e in scenes})
            cap = int(ctx.query.max_items or 0)
            ctx.query = dataclasses.replace(ctx.query, max_items=cap + wanted - len(scenes))
    finally:
        search_session.close()
        ctx.session.close()
        clear_gdal_cache()
    accessed = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    catalog = {**info, "accessed": accessed}
    atomic.write_json(dest / INDEX, {"source": source.name, "catalog": catalog, "scenes": scenes, "rejects": rejects})
    _prune(dest, {e["image"] for e in scenes} | {e["item"] for e in scenes})
    asset_bytes = sum(e["transferred"] or 0 for e in scenes)
    return {
        "source": source.name, "kind": source.kind, "location": source.location, "license": source.license,
        "attribution": source.attribution, "root": str(dest), "files": sorted(files, key=lambda f: f["path"]),
        "archives": [], "catalog": catalog,
        "items": [{k: v for k, v in e.items() if k != "cache_key"} for e in scenes],
        "rejects": rejects,
        "transfer": {"bytes": traffic.bytes + asset_bytes, "metadata_bytes": traffic.bytes,
                     "metadata_requests": traffic.requests, "asset_bytes": asset_bytes},
    }


def _fetch_all(ctx: _Ctx, found: list[Found], progress: Progress | None
               ) -> tuple[list[dict], list[dict], list[dict]]:
    """Fetch each candidate in order: the index entries of the scenes, the reject rows and the files."""
    scenes: list[dict] = []
    rejects: list[dict] = []
    files: list[dict] = []
    for i, one in enumerate(found):
        if ctx.query.max_items is not None and len(scenes) >= ctx.query.max_items:
            break
        try:
            entry, entry_files = _fetch_item(ctx, one)
            scenes.append(entry)
            files.extend(entry_files)
        except ItemRejected as exc:
            rejects.append({"scene_id": exc.scene_id, "item_id": one.item_id, "file": exc.file,
                            "stage": exc.reject_stage, "reason": exc.reason})
        if progress is not None:
            progress(i + 1, len(found))
    return scenes, rejects, files


def _prune(dest: Path, keep: set[str]) -> None:
    """Remove images and items that the index does not list (rejected now, or gone from the catalog)."""
    for folder in (ITEMS, IMAGES):
        for path in sorted((dest / folder).glob("*")):
            if path.is_file() and path.relative_to(dest).as_posix() not in keep:
                path.unlink()


def _scene_id(ctx: _Ctx, item: dict) -> str:
    """``safe_id(id)`` (``oam-<id>`` for kind ``openaerialmap``, whose STAC ids are the catalog's ``_id``, as
    the ``/meta`` path names scenes), or with the collection prepended when another item has that id."""
    prefix = "oam-" if ctx.source.kind == "openaerialmap" else ""
    for text in (f"{prefix}{item['id']}", f"{prefix}{item.get('collection') or 'item'}-{item['id']}"):
        try:
            sid = safe_id(text)
        except ValueError:
            continue
        if sid not in ctx.used_ids:
            ctx.used_ids.add(sid)
            return sid
    raise ItemRejected(str(item["id"]), "item id is used by another item of this source", stage="catalog")


def _fetch_item(ctx: _Ctx, one: Found) -> tuple[dict, list[dict]]:
    item = one.item
    if one.problem is not None or item is None:
        raise ItemRejected(one.base, f"broken STAC item: {one.problem or 'not read'}", stage="catalog")
    sid = _scene_id(ctx, item)
    picked = pick_asset(item, ctx.assets)
    if picked is None:
        have = ", ".join(sorted(item.get("assets") or {})) or "none"
        raise ItemRejected(one.self_href, f"no asset {' / '.join(ctx.assets)} (the item has: {have})",
                           scene_id=sid, stage="catalog")
    key, asset = picked
    href = make_absolute_href(asset["href"], one.base)
    lic = item_license(item, one.parents, ctx.source.license)
    if (refused := licence_refused(lic, (ctx.source.options or {}).get("licences"))) is not None:  # asset unread
        raise ItemRejected(one.self_href, refused, scene_id=sid, stage="catalog")
    attr = item_attribution(item, one.parents, ctx.source.attribution)
    item_rel = f"{ITEMS}/{sid}.json"
    atomic.write_json(ctx.dest / item_rel, item)
    image = _image(ctx, sid, item, key, asset, href)
    props = item.get("properties") or {}
    entry = {
        "scene_id": sid, "item_id": item["id"], "collection": item.get("collection"), "self": one.self_href,
        "item": item_rel, "asset": key, "href": href, "media_type": asset.get("type"),
        "license": lic, "attribution": attr, "acquired": acquired(item), "title": props.get("title"),
        "platform": props.get("oam:platform_type") or props.get("platform"), "gsd": declared_gsd(item, asset),
        **image,
    }
    item_digest = file_digests(ctx.dest / item_rel)["sha256"]
    files = [
        {"path": image["image"], "url": href, "bytes": image["bytes"], "sha256": image["sha256"], "license": lic,
         "attribution": attr, "read": image["read"], "transferred": image["transferred"]},
        {"path": item_rel, "url": one.self_href, "bytes": (ctx.dest / item_rel).stat().st_size,
         "sha256": item_digest, "license": lic, "attribution": attr},
    ]
    return entry, files


def _cache_key(ctx: _Ctx, item: dict, key: str, asset: dict, href: str) -> str:
    props = item.get("properties") or {}
    blob = {"href": href, "asset": key, "bbox": ctx.query.bbox, "non_cog": ctx.non_cog,
            "updated": asset.get("updated") or props.get("updated"), "checksum": asset.get("file:checksum"),
            "size": asset.get("file:size"), "crs": declared_crs(item, asset)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _suffix(href: str) -> str:
    suffix = posixpath.splitext(urlparse(href).path)[1].lower()
    return suffix if suffix in (".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg", ".img") else ".tif"


def _image(ctx: _Ctx, sid: str, item: dict, key: str, asset: dict, href: str) -> dict[str, Any]:
    """Get the asset (see the module docstring); returns the index fields of the image."""
    cache_key = _cache_key(ctx, item, key, asset, href)
    prev = ctx.previous.get(sid)
    if prev and prev.get("cache_key") == cache_key and (ctx.dest / prev["image"]).is_file():
        if file_digests(ctx.dest / prev["image"])["sha256"] == prev.get("sha256"):
            keep = ("image", "read", "window", "checks", "bytes", "sha256", "cache_key")
            return {**{k: prev.get(k) for k in keep}, "transferred": 0, "reused": True}
    target = ctx.dest / IMAGES / f"{sid}{_suffix(href) if ctx.query.bbox is None else '.tif'}"
    try:
        if ctx.query.bbox is None:
            read, window, moved = "whole", None, _whole(ctx, asset, href, target)
            checks = _check_local(target, item, asset, href, sid)
        else:
            read, window, moved, checks = _windowed(ctx, sid, item, key, asset, href, target)
    except TransientFetchError:
        raise
    except FetchError as exc:
        if _transient(exc.reason) and not isinstance(exc, NetworkPolicyError):
            raise TransientFetchError(exc.file, exc.reason) from exc
        raise ItemRejected(exc.file, f"asset '{key}': {exc.reason}", scene_id=sid) from None
    digests = file_digests(target)
    return {"image": target.relative_to(ctx.dest).as_posix(), "read": read, "window": window, "checks": checks,
            "bytes": target.stat().st_size, "sha256": digests["sha256"], "transferred": moved,
            "cache_key": cache_key, "reused": False}


def _whole(ctx: _Ctx, asset: dict, href: str, target: Path) -> int | None:
    """Download (or link) the whole asset to ``target``; returns the bytes transferred."""
    kind = scheme_of(href)
    table = (ctx.source.options or {}).get("sha256") or {}
    want = table.get(posixpath.basename(urlparse(href).path)) or table.get(target.name) or file_sha256(asset)
    if kind in ("http", "https"):
        counter = ByteCounter()
        download(href, target, sha256=want, session=ctx.session, progress=counter, limits=ctx.limits)
        return counter.total
    if kind == "s3":
        from pipeline.sources.s3 import download_key, parse_s3_url

        check_s3(href, ctx.endpoint_url, ctx.limits)
        bucket, key = parse_s3_url(href)
        got = download_key(bucket, key, target, endpoint_url=ctx.endpoint_url)
        if want and got["sha256"] != want:
            target.unlink(missing_ok=True)
            raise FetchError(href, f"sha256 mismatch: expected {want}, got {got['sha256']}")
        return 0 if got["skipped"] else got["bytes"]
    src = local_path(href)
    check_file(src, ctx.limits.local_file_max_bytes)  # a regular file (no FIFO, device, pseudo-file), bounded
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(target) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    if want and file_digests(target)["sha256"] != want:
        target.unlink()
        raise FetchError(str(src), f"sha256 mismatch: expected {want}")
    return 0


def _open(path: str, href: str) -> rasterio.io.DatasetReader:
    """Open an asset with the one driver :func:`pipeline.sources.stac.io.asset_driver` allows."""
    driver = asset_driver(path)
    if driver is None:
        raise rasterio.errors.RasterioIOError(f"{posixpath.basename(urlparse(href).path) or href} is not a GeoTIFF, "
                                              "PNG or JPEG file")
    return rasterio.open(path, driver=driver)


def _check_local(path: Path, item: dict, asset: dict, href: str, sid: str) -> dict[str, Any]:
    try:
        with _open(str(path), href) as ds:
            reason, checks = verify_georef(ds, declared_crs(item, asset), declared_gsd(item, asset))
    except rasterio.errors.RasterioIOError as exc:
        reason, checks = f"not a readable raster: {exc}", {}
    if reason:
        path.unlink(missing_ok=True)
        raise ItemRejected(href, reason, scene_id=sid)
    return checks


def _windowed(ctx: _Ctx, sid: str, item: dict, key: str, asset: dict, href: str, target: Path
              ) -> tuple[str, list[int] | None, int | None, dict[str, Any]]:
    """Cut the bbox window out of the asset: range reads of a remote COG, else see the module docstring."""
    bbox = ctx.query.bbox
    if bbox is None:
        raise ValueError("a windowed read needs options.bbox")
    path, probed = gdal_source(href, ctx.limits, session=ctx.session)
    opts = gdal_options(path.removeprefix("/vsicurl/") if path.startswith("/vsicurl/") else href, ctx.endpoint_url,
                        ctx.limits)
    remote = scheme_of(href) != "file"
    mode = "window" if remote else "local window"
    with rasterio.Env(**opts), NetworkStats() as stats:
        try:
            ds = _open(path, href)
        except rasterio.errors.RasterioIOError as exc:
            if _transient(str(exc)):
                raise TransientFetchError(href, f"asset '{key}' cannot be opened now: {exc}") from exc
            raise ItemRejected(href, f"asset '{key}' cannot be opened: {exc}", scene_id=sid) from None
        with ds:
            reason, checks = verify_georef(ds, declared_crs(item, asset), declared_gsd(item, asset))
            if reason:
                raise ItemRejected(href, reason, scene_id=sid)
            window = window_for_bbox(ds, bbox)
            if window is None:
                raise ItemRejected(href, f"the file does not overlap options.bbox {list(bbox)}", scene_id=sid)
            win = [int(window.col_off), int(window.row_off), int(window.width), int(window.height)]
            if is_full(ds, window):
                mode = "whole"
            elif remote:
                problems = cog_problems(path, opts)
                if problems and ctx.non_cog != "download":
                    raise ItemRejected(href, f"asset '{key}' is not a Cloud-Optimized GeoTIFF ({'; '.join(problems)}): "
                                             "a windowed read would fetch most of it (options.non_cog: download "
                                             "fetches it whole)", scene_id=sid)
                mode = "download+window" if problems else mode
            if mode in ("window", "local window"):
                extract_window(ds, window, target)
    moved = (None if stats.bytes is None else stats.bytes + probed) if remote else 0
    if mode == "whole":
        moved = (moved or 0) + (_whole(ctx, asset, href, target) or 0)
        return mode, None, moved, checks
    if mode == "download+window":
        whole = ctx.dest / DOWNLOADS / f"{sid}{_suffix(href)}"
        moved = (moved or 0) + (_whole(ctx, asset, href, whole) or 0)
        with _open(str(whole), href) as ds:
            extract_window(ds, Window(*win), target)
    return mode, win, moved, checks
