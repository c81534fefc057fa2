"""A real loopback HTTP server for STAC tests: a small STAC API, static catalogs and range-served files.

* ``/api``: a STAC API (landing page with ``conformsTo``, ``/conformance``, ``/collections``,
  ``/collections/{id}``, ``/collections/{id}/items`` and ``/search`` by GET and POST with ``collections``,
  ``bbox``, ``datetime``, ``query`` (gte/lte/eq) and ``limit``, paged with ``next`` links carrying a
  ``token``), answering from :attr:`StacServer.collections` / :attr:`StacServer.items`;
* any other path in :attr:`StacServer.docs` (JSON objects, or raw bytes for broken documents);
* :attr:`StacServer.files`: bytes served with ``Range: bytes=a-b`` / ``a-`` / ``-n`` (206 with
  ``Content-Range``; 416 past the end), ``Accept-Ranges`` and ``HEAD``; the body bytes sent per path are
  counted in :attr:`StacServer.sent`;
* :attr:`StacServer.redirects`: a path answered with ``302`` to the URL it maps to.

The filters are implemented here independently of the pipeline's own client-side filters.  COG and plain
GeoTIFF writers (real files, written with rasterio) are at the end.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
from rasterio.io import MemoryFile

from tests.loopback import _Server

API = "/api"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _when(text: str | None) -> dt.datetime | None:
    if not text or text == "..":
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _item_matches(item: dict, collections, bbox, interval, query) -> bool:
    if collections and item.get("collection") not in collections:
        return False
    if bbox:
        b = item["bbox"]
        if b[2] < bbox[0] or bbox[2] < b[0] or b[3] < bbox[1] or bbox[3] < b[1]:
            return False
    props = item["properties"]
    if interval:
        lo, hi = (_when(p) for p in interval.split("/")) if "/" in interval else (_when(interval),) * 2
        start = _when(props.get("start_datetime") or props.get("datetime"))
        end = _when(props.get("end_datetime") or props.get("datetime"))
        if (hi and start > hi) or (lo and end < lo):
            return False
    for prop, ops in (query or {}).items():
        value = props.get(prop)
        for op, want in ops.items():
            if op == "eq":
                ok = value == want
            elif op in ("gte", "lte"):
                ok = value is not None and (value >= want if op == "gte" else value <= want)
            else:
                raise KeyError(op)
            if not ok:
                return False
    return True


class StacServer:
    """``with StacServer() as srv:``; ``srv.url(path)``."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.collections: list[dict] = []
        self.items: list[dict] = []
        self.conformance = list(CONFORMANCE)
        self.requests: list[dict[str, Any]] = []
        self.sent: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer._handle(self, "GET")

            def do_HEAD(self) -> None:  # noqa: N802
                outer._handle(self, "HEAD")

            def do_POST(self) -> None:  # noqa: N802
                outer._handle(self, "POST")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> StacServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()

    # -- serving -----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        path, query = parsed.path, parse_qs(parsed.query)
        body = None
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = json.loads(h.rfile.read(length) or b"{}")
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query, "body": body,
                                  "range": h.headers.get("Range")})
        if path in self.redirects:
            h.send_response(302)
            h.send_header("Location", self.redirects[path])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if path in self.files:
            return self._serve_file(h, method, path)
        if path == API or path.startswith(API + "/"):
            status, obj = self._api(method, path[len(API):].rstrip("/"), query, body)
        elif path in self.docs:
            status, obj = 200, self.docs[path]
        else:
            status, obj = 404, {"code": "NotFound", "description": path}
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _serve_file(self, h: BaseHTTPRequestHandler, method: str, path: str) -> None:
        data = self.files[path]
        start, end, status = 0, len(data) - 1, 200
        rng = h.headers.get("Range")
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if not m or not (m.group(1) or m.group(2)):
                h.send_error(400, f"unsupported Range {rng!r}")
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:
                start = max(0, len(data) - int(m.group(2)))
            if start >= len(data) or start > end:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        h.send_response(status)
        h.send_header("Content-Type", "image/tiff")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)
            with self._lock:
                self.sent[path] += len(body)

    # -- the STAC API ------------------------------------------------------------------------
    def _links(self, *rels: tuple[str, str]) -> list[dict]:
        return [{"rel": rel, "href": self.url(API + href), "type": "application/json"} for rel, href in rels]

    def _api(self, method: str, sub: str, query: dict, body: dict | None) -> tuple[int, Any]:
        if sub == "":
            links = self._links(("self", ""), ("root", ""), ("conformance", "/conformance"),
                                ("data", "/collections"))
            links += [{"rel": "search", "href": self.url(API + "/search"), "type": "application/geo+json",
                       "method": m} for m in ("GET", "POST")]
            return 200, {"type": "Catalog", "id": "loopback-stac", "stac_version": "1.0.0",
                         "description": "loopback STAC API", "conformsTo": self.conformance, "links": links}
        if sub == "/conformance":
            return 200, {"conformsTo": self.conformance}
        if sub == "/collections":
            return 200, {"collections": [self._collection(c) for c in self.collections],
                         "links": self._links(("self", "/collections"), ("root", ""))}
        m = re.fullmatch(r"/collections/([^/]+)(/items)?", sub)
        if m:
            coll = next((c for c in self.collections if c["id"] == m.group(1)), None)
            if coll is None:
                return 404, {"code": "NotFound", "description": f"collection {m.group(1)}"}
            if not m.group(2):
                return 200, self._collection(coll)
            params = {k: v[0] for k, v in query.items()}
            params["collections"] = coll["id"]
            return 200, self._page(params, f"/collections/{coll['id']}/items", "GET")
        if sub == "/search":
            if method == "POST":
                params = dict(body or {})
            else:
                params = {k: v[0] for k, v in query.items()}
            return 200, self._page(params, "/search", method)
        return 404, {"code": "NotFound", "description": sub}

    def _collection(self, coll: dict) -> dict:
        return {**coll, "links": self._links(("self", f"/collections/{coll['id']}"), ("root", ""),
                                             ("items", f"/collections/{coll['id']}/items"))}

    def _page(self, params: dict, endpoint: str, method: str) -> dict:
        def listed(v):
            return v.split(",") if isinstance(v, str) else v

        collections = listed(params.get("collections"))
        bbox = [float(v) for v in listed(params["bbox"])] if params.get("bbox") else None
        q = params.get("query")
        q = json.loads(q) if isinstance(q, str) else q
        hits = [it for it in sorted(self.items, key=lambda i: i["id"])
                if _item_matches(it, collections, bbox, params.get("datetime"), q)]
        limit, token = int(params.get("limit") or 10), int(params.get("token") or 0)
        page = hits[token:token + limit]
        links = self._links(("root", ""))
        if token + limit < len(hits):
            if method == "POST":
                links.append({"rel": "next", "href": self.url(API + endpoint), "method": "POST",
                              "body": {"token": token + limit}, "merge": True, "type": "application/geo+json"})
            else:
                nxt = {**params, "token": token + limit}
                nxt = {k: (",".join(map(str, v)) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict)
                           else v) for k, v in nxt.items()}
                links.append({"rel": "next", "href": f"{self.url(API + endpoint)}?{urlencode(nxt)}",
                              "type": "application/geo+json"})
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(hits), "numberReturned": len(page)}


# --------------------------------------------------------------------------------------------- rasters


def texture(width: int, height: int, seed: int) -> np.ndarray:
    """3-band uint8 pixels with structure and noise (compresses like imagery, not like a flat field)."""
    rng = np.random.default_rng(seed)
    y = np.arange(height, dtype=np.uint16)[:, None]
    x = np.arange(width, dtype=np.uint16)[None, :]
    out = np.empty((3, height, width), np.uint8)
    for band, (fx, fy) in enumerate(((7, 5), (3, 0), (11, 9))):
        pattern = (x // fx % 216) + (y // fy % 216 if fy else 0 * y)
        noise = rng.integers(0, 40, size=(min(height, 1000), min(width, 1000)), dtype=np.uint8)
        reps = (-(-height // noise.shape[0]), -(-width // noise.shape[1]))
        out[band] = (pattern % 216).astype(np.uint8) + np.tile(noise, reps)[:height, :width]
    return out


def geotiff_bytes(pixels: np.ndarray, crs: str, transform, *, cog: bool = True, compress: str = "DEFLATE") -> bytes:
    """A real GeoTIFF: a COG (GDAL's COG driver, 512x512 tiles, overviews) or, with ``cog=False``, a plain
    striped GeoTIFF (not tiled: no efficient windowed reads)."""
    count, height, width = pixels.shape
    profile = {"width": width, "height": height, "count": count, "dtype": pixels.dtype.name, "crs": crs,
               "transform": transform}
    if cog:
        profile.update(driver="COG", compress=compress, blocksize=512, overview_resampling="average")
        if compress.upper() == "JPEG":
            profile["quality"] = 90
    else:
        profile.update(driver="GTiff", compress="deflate")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(pixels)
        return mem.read()


def read_window(data: bytes, window) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(window=window)


__all__ = ["StacServer", "texture", "geotiff_bytes", "read_window"]
