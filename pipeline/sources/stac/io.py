"""The one place where STAC sources reach the network, under the network policy.

Everything a ``stac`` (or STAC-backed ``openaerialmap``) source reads from a remote host goes through
this module, and every remote access passes the network policy of the build's
:class:`pipeline.limits.Limits` (:mod:`pipeline.sources.netpolicy`: loopback, link-local, private, multicast
addresses refused unless ``allow_private_networks`` / ``allowed_networks``):

* :func:`check_url`: the URL's scheme and host, then, for http(s), every address the host resolves to
  (:func:`pipeline.sources.netpolicy.check_url_limits`); :func:`check_s3` also checks an S3 ``endpoint_url``.
* JSON documents (catalogs, collections, items, API pages) over HTTP(S) through :func:`http_session`: a
  ``requests.Session`` that calls :func:`check_url` for every request it sends, redirects included, whose
  connections check the address they reached and whose redirects are checked before they are followed
  (:func:`pipeline.sources.netpolicy.apply_policy`); over S3 through :func:`pipeline.sources.s3.s3_client`;
  or from local files: :func:`read_json`, at most ``response_max_bytes`` (``sidecar_max_bytes`` for a local
  file), JSON nested too deeply refused;
* pystac-client's requests: :func:`api_io` hands it the same session;
* pixel reads: :func:`gdal_source` / :func:`gdal_path` turn an asset href into a GDAL path: ``/vsicurl/`` of the
  URL the redirect chain ends at, every hop checked first (:func:`pipeline.sources.netpolicy.follow_redirects`:
  GDAL cannot be told not to follow redirects), or ``/vsis3/``; :func:`gdal_options` gives the settings for
  efficient range reads merged with the policy's bounded GDAL HTTP settings
  (:func:`pipeline.sources.netpolicy.gdal_http_options`);
* :class:`NetworkStats` measures the bytes GDAL downloaded (GDAL's own network statistics), and
  :class:`Traffic` the bytes of the JSON documents, for the fetch record.

The session carries the limits (``session.limits``, :func:`limits_of`), so the functions that take a session
apply the same policy.
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
from urllib3.util.retry import Retry

from pipeline.errors import FetchError, LimitExceeded, NetworkPolicyError
from pipeline.limits import DEFAULT_LIMITS, Limits, human_bytes
from pipeline.sources import netpolicy

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


def check_url(url: str, limits: Limits | None = None) -> None:
    """Raise ``FetchError`` when ``url`` may not be requested: a scheme other than http(s)/s3, no host, or
    (``NetworkPolicyError``) an http(s) host resolving to an address the network policy of ``limits`` refuses.
    Every remote access of a STAC source passes here first."""
    parsed = urlparse(url)
    if parsed.scheme not in REMOTE_SCHEMES:
        raise FetchError(url, f"unsupported URL scheme '{parsed.scheme}' (allowed: {', '.join(REMOTE_SCHEMES)})")
    if not parsed.netloc:
        raise FetchError(url, "URL has no host")
    if parsed.scheme in ("http", "https"):  # an s3:// "host" is a bucket: its endpoint is checked instead
        netpolicy.check_url_limits(url, limits)


def check_s3(href: str, endpoint_url: str | None, limits: Limits | None = None) -> None:
    """:func:`check_url` for an ``s3://`` URL and the endpoint it will be read from (AWS's when None)."""
    check_url(href, limits)
    if endpoint_url:
        check_url(endpoint_url, limits)


def limits_of(session: requests.Session | None) -> Limits:
    """The limits an :func:`http_session` was made with (the defaults for any other session)."""
    return getattr(session, "limits", None) or DEFAULT_LIMITS


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
    def __init__(self, traffic: Traffic | None, limits: Limits):
        super().__init__()
        self.traffic = traffic
        self.limits = limits

    def send(self, request, **kwargs):  # noqa: ANN001  (requests' signature)
        check_url(request.url, self.limits)
        resp = super().send(request, **kwargs)
        if self.traffic is not None and not kwargs.get("stream"):
            self.traffic.add(len(resp.content))
        return resp


def http_session(traffic: Traffic | None = None, limits: Limits | None = None) -> requests.Session:
    """A session for STAC requests under the network policy of ``limits`` (URL check on every request and
    redirect, peer check on every connection: :func:`pipeline.sources.netpolicy.apply_policy`), retries on
    5xx/429/connection errors, and (when ``traffic`` is given) counting of non-streamed response bytes."""
    sess = _Session(traffic, limits or DEFAULT_LIMITS)
    retry = Retry(total=RETRIES, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "HEAD", "POST"), respect_retry_after_header=True,
                  raise_on_status=False)
    netpolicy.apply_policy(sess, sess.limits, max_retries=retry)
    sess.headers["User-Agent"] = "oem-pipeline (STAC source)"
    return sess


def _too_big(href: str, max_bytes: int) -> LimitExceeded:
    return LimitExceeded(href, f"document is over response_max_bytes ({human_bytes(max_bytes)})")


def _read_http(href: str, session: requests.Session, max_bytes: int) -> bytes:
    chunks, n = [], 0
    try:
        with session.get(href, timeout=(TIMEOUT_S, TIMEOUT_S), stream=True) as resp:
            if resp.status_code != 200:
                raise FetchError(href, f"HTTP {resp.status_code} {resp.reason}")
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _too_big(href, max_bytes)
            for chunk in resp.iter_content(1 << 16):
                n += len(chunk)
                if n > max_bytes:
                    raise _too_big(href, max_bytes)
                chunks.append(chunk)
    except requests.exceptions.RequestException as exc:
        raise FetchError(href, f"{type(exc).__name__}: {exc}") from exc
    traffic = getattr(session, "traffic", None)
    if traffic is not None:
        traffic.add(n)
    return b"".join(chunks)


def _read_s3(href: str, session: requests.Session, endpoint_url: str | None, max_bytes: int) -> bytes:
    import botocore.exceptions

    from pipeline.sources.s3 import parse_s3_url, s3_client

    check_s3(href, endpoint_url, limits_of(session))
    bucket, key = parse_s3_url(href)
    try:
        body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]
        try:
            data = body.read(max_bytes + 1)
        finally:
            body.close()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise FetchError(href, f"S3 error: {exc}") from exc
    if len(data) > max_bytes:
        raise _too_big(href, max_bytes)
    traffic = getattr(session, "traffic", None)
    if traffic is not None:
        traffic.add(len(data))
    return data


def read_bytes(href: str, *, session: requests.Session, endpoint_url: str | None = None) -> bytes:
    """The content at ``href`` (http(s) URL, ``s3://`` URL, local path or ``file://`` URL), under the limits of
    ``session`` (:func:`limits_of`): at most ``response_max_bytes`` (a local file: ``sidecar_max_bytes``, and a
    regular file).  Raises ``FetchError(href, reason)`` when it cannot be read (``LimitExceeded`` when too big,
    ``NetworkPolicyError`` when the policy refuses it)."""
    limits = limits_of(session)
    kind = scheme_of(href)
    if kind in ("http", "https"):
        return _read_http(href, session, limits.response_max_bytes)
    if kind == "s3":
        return _read_s3(href, session, endpoint_url, limits.response_max_bytes)
    from pipeline.sources.localfs import read_bounded

    return read_bounded(local_path(href), limits.sidecar_max_bytes, FetchError)


def read_json(href: str, *, session: requests.Session, endpoint_url: str | None = None) -> Any:
    """The JSON document at ``href``; ``FetchError`` naming it when it cannot be read or parsed."""
    data = read_bytes(href, session=session, endpoint_url=endpoint_url)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FetchError(href, f"invalid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


def api_io(session: requests.Session):
    """A pystac-client ``StacApiIO`` whose requests go through ``session`` (and :func:`check_url`)."""
    from pystac_client.stac_api_io import StacApiIO

    io = StacApiIO(timeout=(TIMEOUT_S, TIMEOUT_S), max_retries=None)
    io.session = session
    return io


# --------------------------------------------------------------------------------------------- GDAL

def asset_driver(path: str) -> str | None:
    """The only GDAL driver an asset at the GDAL ``path`` is opened with: ``GTiff`` for a remote one (a
    windowed read needs a Cloud-Optimized GeoTIFF), for a local file the driver its first bytes name
    (:func:`pipeline.sources.localfs.raster_driver`: GeoTIFF, PNG, JPEG), else None (not opened).  So a
    ``.tif`` that holds VRT or ``GDAL_WMS`` XML (recipes that read other files or URLs) reads nothing."""
    if path.startswith(("/vsicurl/", "/vsis3/")):
        return "GTiff"
    from pipeline.sources.localfs import raster_driver

    return raster_driver(path)


def gdal_source(href: str, limits: Limits | None = None, *, session: requests.Session | None = None
                ) -> tuple[str, int]:
    """``(GDAL path, bytes received finding it)`` of an asset: for http(s) ``/vsicurl/<URL>`` of the URL its
    redirect chain ends at, every hop checked by the network policy first (GDAL follows redirects itself and
    cannot be told not to: :func:`pipeline.sources.netpolicy.follow_redirects`, one ``Range: bytes=0-0``
    request per hop, its byte counted); ``/vsis3/<bucket>/<key>`` for s3 (the endpoint is checked by
    :func:`gdal_options`); the file path for local files."""
    kind = scheme_of(href)
    if kind in ("http", "https"):
        check_url(href, limits)
        try:
            final, probed = netpolicy.follow_redirects(href, limits, session=session, timeout=TIMEOUT_S)
        except NetworkPolicyError as exc:
            if exc.file == href:
                raise
            raise NetworkPolicyError(href, f"redirects to {exc.file[:200]}: {exc.reason}") from None
        return "/vsicurl/" + final, probed
    if kind == "s3":
        check_url(href, limits)
        parsed = urlparse(href)
        return f"/vsis3/{parsed.netloc}/{parsed.path.lstrip('/')}", 0
    return str(local_path(href)), 0


def gdal_path(href: str, limits: Limits | None = None) -> str:
    """The GDAL path of an asset (:func:`gdal_source`)."""
    return gdal_source(href, limits)[0]


def gdal_options(href: str, endpoint_url: str | None = None, limits: Limits | None = None) -> dict[str, Any]:
    """GDAL configuration for range reads of ``href``: :data:`GDAL_RANGE_OPTIONS` merged with the network
    policy's (:func:`pipeline.sources.netpolicy.gdal_http_options`: no ``.netrc``, no credentials on
    redirects, no S3 redirect cache, a minimum rate), the tighter of the two timeouts.

    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` is the asset's own suffix (plus ``.tif``/``.tiff``), so GDAL
    never probes side-cars; s3 reads are anonymous and use ``endpoint_url`` (checked) like
    :mod:`pipeline.sources.s3`."""
    opts: dict[str, Any] = {**GDAL_RANGE_OPTIONS, **netpolicy.gdal_http_options(limits)}
    for key in ("GDAL_HTTP_TIMEOUT", "GDAL_HTTP_CONNECTTIMEOUT"):
        opts[key] = min(int(GDAL_RANGE_OPTIONS[key]), int(float(opts[key])))
    opts["GDAL_HTTP_RETRY_DELAY"] = GDAL_RANGE_OPTIONS["GDAL_HTTP_RETRY_DELAY"]
    suffix = posixpath.splitext(urlparse(href).path)[1]
    opts["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(dict.fromkeys((*_RASTER_SUFFIXES, suffix) if suffix
                                                                      else _RASTER_SUFFIXES))
    if not suffix:
        opts.pop("CPL_VSIL_CURL_ALLOWED_EXTENSIONS")
    if scheme_of(href) == "s3":
        opts.update(AWS_NO_SIGN_REQUEST="YES", AWS_REGION="us-east-1")
        if endpoint_url:
            check_url(endpoint_url, limits)
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


class ByteCounter:
    """A ``download`` progress callback that adds up the bytes received (resumed bytes not counted)."""

    def __init__(self) -> None:
        self.total = 0
        self._last: int | None = None

    def __call__(self, done: int, _total: int | None) -> None:
        if self._last is not None and done > self._last:
            self.total += done - self._last
        self._last = done
