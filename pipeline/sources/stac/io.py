"""The one place where STAC sources reach the network.

Everything a ``stac`` (or STAC-backed ``openaerialmap``) source reads from a remote host goes through
this module, so that a network policy (e.g. refusing loopback / private addresses) needs to be added
in one function, :func:`check_url`:

* JSON documents (catalogs, collections, items, API pages) over HTTP(S) through :func:`http_session`
  (a ``requests.Session`` that calls :func:`check_url` for every request it sends, redirects
  included), over S3 through :func:`pipeline.sources.s3.s3_client`, or from local files: :func:`read_json`;
* pystac-client's requests: :func:`api_io` hands it the same kind of session;
* pixel reads: :func:`gdal_path` turns an asset href into a GDAL ``/vsicurl/`` or ``/vsis3/`` path
  (checking the URL) and :func:`gdal_options` gives the settings for efficient range reads;
* :class:`NetworkStats` measures the bytes GDAL downloaded (GDAL's own network statistics), and
  :class:`Traffic` the bytes of the JSON documents, for the fetch record.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import json
import os
import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.errors import FetchError

#: Seconds to wait for a connection and for each read (JSON and GDAL range requests alike).
TIMEOUT_S = 30.0
#: Attempts for a failed request (5xx, 429, connection errors) after the first.
RETRIES = 3
REMOTE_SCHEMES = ("http", "https", "s3")

#: GDAL settings for reading parts of remote COGs with HTTP range requests.
GDAL_RANGE_OPTIONS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing, no side-car probing
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",  # one request for adjacent tiles
    "GDAL_HTTP_MULTIRANGE": "PARALLEL",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": 64 * 1024 * 1024,
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,  # the header of a COG in one request
    "GDAL_HTTP_TIMEOUT": int(TIMEOUT_S),
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    "GDAL_HTTP_MAX_RETRY": RETRIES,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "CPL_VSIL_NETWORK_STATS_ENABLED": "YES",
}
_RASTER_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")


def scheme_of(href: str) -> str:
    """``http``, ``https``, ``s3`` or ``file`` (a local path or ``file://`` URL)."""
    parsed = urlparse(href)
    return parsed.scheme if parsed.scheme in REMOTE_SCHEMES else "file"


def local_path(href: str) -> Path:
    """The local path of a ``file://`` URL or plain path."""
    parsed = urlparse(href)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(os.path.expanduser(href))


def check_url(url: str) -> None:
    """Raise ``FetchError`` when ``url`` may not be requested.  Every remote access of a STAC source
    passes here first (a network policy belongs in this function)."""
    parsed = urlparse(url)
    if parsed.scheme not in REMOTE_SCHEMES:
        raise FetchError(url, f"unsupported URL scheme '{parsed.scheme}' (allowed: {', '.join(REMOTE_SCHEMES)})")
    if not parsed.netloc:
        raise FetchError(url, "URL has no host")


def check_s3(href: str, endpoint_url: str | None) -> None:
    """:func:`check_url` for an ``s3://`` URL and the endpoint it will be read from."""
    check_url(href)
    if endpoint_url:
        check_url(endpoint_url)


@dataclass
class Traffic:
    """Bytes of response bodies received by a :func:`http_session` (thread-safe counter)."""

    bytes: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            self.requests += 1


class _Session(requests.Session):
    def __init__(self, traffic: Traffic | None):
        super().__init__()
        self.traffic = traffic

    def send(self, request, **kwargs):  # noqa: ANN001  (requests' signature)
        check_url(request.url)
        resp = super().send(request, **kwargs)
        if self.traffic is not None and not kwargs.get("stream"):
            self.traffic.add(len(resp.content))
        return resp


def http_session(traffic: Traffic | None = None) -> requests.Session:
    """A session for STAC requests: URL check on every request, retries on 5xx/429/connection errors,
    and (when ``traffic`` is given) counting of non-streamed response bytes."""
    sess = _Session(traffic)
    retry = Retry(total=RETRIES, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "HEAD", "POST"), respect_retry_after_header=True,
                  raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    sess.mount("http://", adapter)
    sess.mount("https://", adapter)
    sess.headers["User-Agent"] = "oem-pipeline (STAC source)"
    return sess


def read_bytes(href: str, *, session: requests.Session, endpoint_url: str | None = None) -> bytes:
    """The content at ``href`` (http(s) URL, ``s3://`` URL, local path or ``file://`` URL).

    Raises ``FetchError(href, reason)`` when it cannot be read."""
    kind = scheme_of(href)
    if kind in ("http", "https"):
        try:
            resp = session.get(href, timeout=(TIMEOUT_S, TIMEOUT_S))
        except requests.exceptions.RequestException as exc:
            raise FetchError(href, f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise FetchError(href, f"HTTP {resp.status_code} {resp.reason}")
        return resp.content
    if kind == "s3":
        import botocore.exceptions

        from pipeline.sources.s3 import parse_s3_url, s3_client

        check_s3(href, endpoint_url)
        bucket, key = parse_s3_url(href)
        try:
            body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise FetchError(href, f"S3 error: {exc}") from exc
        if isinstance(session, _Session) and session.traffic is not None:
            session.traffic.add(len(data))
        return data
    path = local_path(href)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(str(path), f"cannot read: {exc.strerror or exc}") from exc


def read_json(href: str, *, session: requests.Session, endpoint_url: str | None = None) -> Any:
    """The JSON document at ``href``; ``FetchError`` naming it when it cannot be read or parsed."""
    data = read_bytes(href, session=session, endpoint_url=endpoint_url)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise FetchError(href, f"invalid JSON: {exc}") from exc


def api_io(session: requests.Session):
    """A pystac-client ``StacApiIO`` whose requests go through ``session`` (and :func:`check_url`)."""
    from pystac_client.stac_api_io import StacApiIO

    io = StacApiIO(timeout=(TIMEOUT_S, TIMEOUT_S), max_retries=None)
    io.session = session
    return io


# --------------------------------------------------------------------------------------------- GDAL


def gdal_path(href: str) -> str:
    """The GDAL path of an asset: ``/vsicurl/<url>`` for http(s), ``/vsis3/<bucket>/<key>`` for s3,
    the file path for local files.  Remote URLs pass :func:`check_url`."""
    kind = scheme_of(href)
    if kind in ("http", "https"):
        check_url(href)
        return "/vsicurl/" + href
    if kind == "s3":
        check_url(href)  # the endpoint: gdal_options
        parsed = urlparse(href)
        return f"/vsis3/{parsed.netloc}/{parsed.path.lstrip('/')}"
    return str(local_path(href))


def gdal_options(href: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """GDAL configuration for range reads of ``href`` (see :data:`GDAL_RANGE_OPTIONS`).

    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` is the asset's own suffix (plus ``.tif``/``.tiff``), so GDAL
    never probes side-cars; s3 reads are anonymous and use ``endpoint_url`` like :mod:`pipeline.sources.s3`."""
    opts = dict(GDAL_RANGE_OPTIONS)
    suffix = posixpath.splitext(urlparse(href).path)[1]
    opts["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(dict.fromkeys((*_RASTER_SUFFIXES, suffix) if suffix
                                                                      else _RASTER_SUFFIXES))
    if not suffix:
        opts.pop("CPL_VSIL_CURL_ALLOWED_EXTENSIONS")
    if scheme_of(href) == "s3":
        opts.update(AWS_NO_SIGN_REQUEST="YES", AWS_REGION="us-east-1")
        if endpoint_url:
            check_url(endpoint_url)
            ep = urlparse(endpoint_url)
            opts.update(AWS_S3_ENDPOINT=ep.netloc, AWS_HTTPS="YES" if ep.scheme == "https" else "NO",
                        AWS_VIRTUAL_HOSTING="FALSE")
    return opts


@functools.lru_cache(maxsize=1)
def _libgdal():
    """The GDAL library rasterio uses (for its network statistics), or None."""
    import rasterio

    here = os.path.dirname(rasterio.__file__)
    candidates = sorted(glob.glob(os.path.join(here, os.pardir, "rasterio.libs", "libgdal*.so*")))
    candidates += sorted(glob.glob(os.path.join(here, ".dylibs", "libgdal*.dylib")))
    found = ctypes.util.find_library("gdal")
    if found:
        candidates.append(found)
    for cand in candidates:
        try:
            lib = ctypes.CDLL(cand)
            lib.VSINetworkStatsGetAsSerializedJSON.restype = ctypes.c_void_p
            lib.VSINetworkStatsGetAsSerializedJSON.argtypes = [ctypes.c_void_p]
            lib.VSIFree.argtypes = [ctypes.c_void_p]
            lib.VSINetworkStatsReset.restype = None
            lib.VSICurlClearCache.restype = None
            return lib
        except (OSError, AttributeError):
            continue
    return None


class NetworkStats:
    """Bytes GDAL downloads inside the block (``with NetworkStats() as st: ...; st.bytes``).

    Uses GDAL's network statistics (``CPL_VSIL_NETWORK_STATS_ENABLED``, set by :func:`gdal_options`;
    enter this block inside that environment).  ``bytes`` is None when the statistics are unavailable.
    The counters are process-wide: one measured block at a time (a lock makes sure of it)."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.bytes: int | None = None
        self.requests: int | None = None

    def __enter__(self) -> NetworkStats:
        self._lock.acquire()
        lib = _libgdal()
        if lib is not None:
            lib.VSINetworkStatsReset()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            lib = _libgdal()
            if lib is None:
                return
            ptr = lib.VSINetworkStatsGetAsSerializedJSON(None)
            if not ptr:
                return
            try:
                stats = json.loads(ctypes.string_at(ptr).decode())
            finally:
                lib.VSIFree(ptr)
            methods = stats.get("methods", {}) if isinstance(stats, dict) else {}
            self.bytes = sum(int(m.get("downloaded_bytes", 0)) for m in methods.values())
            self.requests = sum(int(m.get("count", 0)) for m in methods.values())
        finally:
            self._lock.release()


def clear_gdal_cache() -> None:
    """Forget what GDAL cached of remote files (a later fetch reads them afresh)."""
    lib = _libgdal()
    if lib is not None:
        lib.VSICurlClearCache()
