"""The network policy: which addresses a build may reach, enforced on every HTTP(S) path.

A source's URLs (``location``, OpenAerialMap image URLs, redirects, an S3 ``options.endpoint_url``) are
input like any other: pointed at ``http://169.254.169.254/`` (cloud metadata), ``localhost`` or a private
network, a build would fetch what it must never see.  So every address the pipeline connects to must be
*public*: not loopback, link-local (169.254.0.0/16, fe80::/10), private (RFC 1918, 100.64.0.0/10,
fc00::/7), multicast, unspecified, reserved or otherwise non-global (``ipaddress``'s ``is_global``; an
IPv4-mapped IPv6 address counts as its IPv4 address).  ``[PipelineConfig] allow_private_networks = true``
lifts this (tests with loopback servers, a MinIO on the LAN); ``allowed_networks`` allows named networks
only (``["10.1.2.0/24"]``).

Two layers, one rule (:func:`address_problem`):

* :func:`check_url` resolves the URL's host once and checks *every* address it resolves to: a clear,
  early ``NetworkPolicyError`` naming the URL.  It is called on the location, on every redirect hop
  (:func:`policy_session`'s response hook, before the next request is sent) and by the S3 fetch on an
  ``endpoint_url`` given in ``sources.yaml``.
* :func:`policy_session` returns a ``requests.Session`` whose connections check the address they actually
  connected to (the socket's peer) before a byte is sent.  So a DNS answer that changes between the check
  and the connection (DNS rebinding) is caught too.  :func:`apply_policy` does the same to a session of
  one's own (the STAC sources' counting, retrying session, :mod:`pipeline.sources.stac.io`, which also
  checks every URL it sends, pystac-client's requests included).

Not checked: ``[PipelineConfig] s3_endpoint_url`` (publishing and the raw cache: the operator's own
infrastructure, configured outside ``sources.yaml``).  Residual risk: behind an HTTP(S) proxy (``HTTP_PROXY``
/ ``HTTPS_PROXY``) the peer is the proxy, so only the URL check applies and the proxy resolves the name
again; a proxy should enforce its own egress policy.  GDAL's ``/vsicurl/`` follows redirects itself (up to
10, hard-wired in GDAL's ``cpl_http.cpp``; GDAL has no option to turn it off), so code that hands a URL to
GDAL uses :func:`vsicurl_path` (checks and resolves the redirect chain first) under
:func:`gdal_http_options`; a server that redirects GDAL later still could, which the bounded timeouts and
the ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` restriction only limit.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline.errors import FetchError, NetworkPolicyError
from pipeline.limits import DEFAULT_LIMITS, Limits

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HINT = "set [PipelineConfig] allow_private_networks = true (or allowed_networks) to allow it"


def _networks(allowed: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(str(n), strict=False) for n in allowed)


def address_problem(address: str | IPAddress, *, allow_private: bool = False,
                    allowed_networks: Sequence[str] = ()) -> str | None:
    """``None`` when ``address`` may be reached, else what it is (``"loopback"``, ``"link-local"``, ...)."""
    ip = ipaddress.ip_address(str(address).split("%", 1)[0]) if not isinstance(address, IPAddress) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private or any(ip in net for net in _networks(allowed_networks)):
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, *, allow_private: bool = False, allowed_networks: Sequence[str] = ()) -> None:
    """Raise ``NetworkPolicyError(url, reason)`` unless ``url`` is http(s) and every address its host resolves
    to may be reached (:func:`address_problem`); ``FetchError`` when the host cannot be resolved."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise NetworkPolicyError(url, "only http(s) URLs with a host are fetched")
    host = parsed.hostname
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:
        raise NetworkPolicyError(url, f"bad port: {exc}") from exc
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(url, f"cannot resolve host {host}: {exc}") from exc
    for addr in addresses:
        kind = address_problem(addr, allow_private=allow_private, allowed_networks=allowed_networks)
        if kind is not None:
            shown = host if host == addr else f"{host} ({addr})"
            raise NetworkPolicyError(url, f"refused: {shown} is a {kind} address; {_HINT}")


def check_url_limits(url: str, limits: Limits | None = None) -> None:
    """:func:`check_url` with the policy of ``limits`` (default: :data:`pipeline.limits.DEFAULT_LIMITS`)."""
    lim = limits or DEFAULT_LIMITS
    check_url(url, allow_private=lim.allow_private_networks, allowed_networks=lim.allowed_networks)


# --------------------------------------------------------------------------------------------------
# Sessions whose connections check their peer
# --------------------------------------------------------------------------------------------------

class ConnectionGuard:
    """Checks the peer address of every new connection and keeps the open sockets, so that a deadline can
    cut them (:meth:`abort`) even while a read is blocked in the middle of a response's headers."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()

    def connected(self, conn: HTTPConnection, sock: socket.socket) -> None:
        if not (conn.proxy or conn._tunnel_host):  # behind a proxy the peer is the proxy: see module doc
            try:
                peer = sock.getpeername()[0]
            except OSError:
                peer = None
            kind = peer and address_problem(peer, allow_private=self.limits.allow_private_networks,
                                            allowed_networks=self.limits.allowed_networks)
            if kind:
                sock.close()
                raise NetworkPolicyError(f"{conn.host}:{conn.port}",
                                         f"refused: {conn.host} connected to {peer}, a {kind} address; {_HINT}")
        with self._lock:
            self._sockets.add(sock)

    def abort(self) -> None:
        """Shut down every socket opened through this guard (blocked reads return at once)."""
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _guarded(base: type[HTTPConnection], guard: ConnectionGuard) -> type[HTTPConnection]:
    def _new_conn(self: HTTPConnection) -> socket.socket:
        sock = base._new_conn(self)
        guard.connected(self, sock)
        return sock

    return type(f"Guarded{base.__name__}", (base,), {"_new_conn": _new_conn})


class _PolicyAdapter(HTTPAdapter):
    def __init__(self, guard: ConnectionGuard, **kwargs: Any):
        self._guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pools = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,),
                         {"ConnectionCls": _guarded(HTTPConnection, self._guard)}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": _guarded(HTTPSConnection, self._guard)}),
        }
        self.poolmanager.pool_classes_by_scheme = pools


def _check_redirect(limits: Limits, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
    if resp.is_redirect:
        target = urljoin(resp.url, resp.headers.get("location", ""))
        check_url_limits(target, limits)


def apply_policy(session: requests.Session, limits: Limits | None = None, *,
                 max_retries: Any = 0) -> requests.Session:
    """Make ``session`` enforce the network policy of ``limits``: its http(s) adapters check the peer of
    every connection (``max_retries`` is passed to them: an int or a ``urllib3`` ``Retry``), every redirect is
    checked before it is followed and at most ``limits.max_redirects`` are.  Sets ``session.guard`` (its
    :class:`ConnectionGuard`) and returns the session (for a ``requests.Session`` subclass of one's own, such
    as the STAC sources' counting session)."""
    lim = limits or DEFAULT_LIMITS
    guard = ConnectionGuard(lim)
    session.max_redirects = int(lim.max_redirects)
    for prefix in ("http://", "https://"):
        session.mount(prefix, _PolicyAdapter(guard, max_retries=max_retries))
    session.hooks["response"].append(functools.partial(_check_redirect, lim))
    session.guard = guard  # type: ignore[attr-defined]
    return session


def policy_session(limits: Limits | None = None) -> requests.Session:
    """A ``requests.Session`` that enforces the network policy of ``limits`` on every connection and every
    redirect (at most ``limits.max_redirects``).  ``session.guard`` is its :class:`ConnectionGuard`."""
    return apply_policy(requests.Session(), limits)


def guard_of(session: requests.Session) -> ConnectionGuard | None:
    """The guard of a :func:`policy_session` (``None`` for another session)."""
    return getattr(session, "guard", None)


# --------------------------------------------------------------------------------------------------
# GDAL /vsicurl/
# --------------------------------------------------------------------------------------------------

def gdal_http_options(limits: Limits | None = None) -> dict[str, str]:
    """GDAL configuration options for reading remote files through ``/vsicurl/`` under ``limits`` (use with
    ``rasterio.Env(**gdal_http_options(limits))``): bounded connect / request time and a minimum rate, few
    retries, no ``.netrc`` credentials, no Authorization header on redirects, no directory listings, only
    GeoTIFF names probed, no S3 signed-URL redirect cache.  GDAL itself cannot be told not to follow
    redirects (see the module doc): open ``vsicurl_path(url, limits)``, whose chain is already checked."""
    lim = limits or DEFAULT_LIMITS
    return {
        "GDAL_HTTP_CONNECTTIMEOUT": "30",
        "GDAL_HTTP_TIMEOUT": str(int(max(1.0, min(lim.download_deadline_s, 3600.0)))),
        "GDAL_HTTP_LOW_SPEED_TIME": str(int(max(1.0, lim.download_rate_window_s))),
        "GDAL_HTTP_LOW_SPEED_LIMIT": str(int(max(1.0, lim.download_min_rate))),
        "GDAL_HTTP_MAX_RETRY": "3",
        "GDAL_HTTP_RETRY_DELAY": "1",
        "GDAL_HTTP_NETRC": "NO",
        "CPL_VSIL_CURL_AUTHORIZATION_HEADER_ALLOWED_IF_REDIRECT": "NO",
        "CPL_VSIL_CURL_USE_S3_REDIRECT": "NO",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    }


def follow_redirects(url: str, limits: Limits | None = None, *, session: requests.Session | None = None,
                     timeout: float = 30.0) -> tuple[str, int]:
    """``(final URL, body bytes received)`` of ``url``: the redirects are followed by hand, at most
    ``limits.max_redirects``, every hop checked with :func:`check_url` (and the connection guard), each with
    a ``Range: bytes=0-0`` GET.  The final answer's body is read when it is that one byte (a 206 of at most
    16 bytes), else left unread; the bytes read are returned so that callers can account for them.  Raises
    ``NetworkPolicyError`` for a refused hop, ``FetchError`` for too many redirects or a request that fails."""
    lim = limits or DEFAULT_LIMITS
    own = session is None
    sess = session if session is not None else policy_session(lim)
    try:
        current = url
        for _ in range(int(lim.max_redirects) + 1):
            check_url_limits(current, lim)
            try:
                resp = sess.get(current, headers={"Range": "bytes=0-0"}, stream=True, allow_redirects=False,
                                timeout=(timeout, timeout))
            except requests.exceptions.RequestException as exc:
                raise FetchError(current, f"{type(exc).__name__}: {exc}") from exc
            with resp:
                if not resp.is_redirect:
                    length = resp.headers.get("Content-Length", "")
                    small = resp.status_code == 206 and length.isdigit() and int(length) <= 16
                    try:
                        return current, len(resp.raw.read(16, decode_content=False)) if small else 0
                    except (OSError, requests.exceptions.RequestException):
                        return current, 0
                current = urljoin(current, resp.headers.get("location", ""))
        raise FetchError(url, f"more than {lim.max_redirects} redirects")
    finally:
        if own:
            sess.close()


def resolve_redirects(url: str, limits: Limits | None = None, *, session: requests.Session | None = None,
                      timeout: float = 30.0) -> str:
    """The URL that ``url`` finally answers at (:func:`follow_redirects`: every hop checked).  Raises
    ``NetworkPolicyError`` for a refused hop, ``FetchError`` for too many redirects or a request that fails."""
    return follow_redirects(url, limits, session=session, timeout=timeout)[0]


def vsicurl_path(url: str, limits: Limits | None = None, *, session: requests.Session | None = None) -> str:
    """``/vsicurl/<final URL>`` for ``url`` after :func:`resolve_redirects` (for GDAL readers, with
    :func:`gdal_http_options`)."""
    return "/vsicurl/" + resolve_redirects(url, limits, session=session)
