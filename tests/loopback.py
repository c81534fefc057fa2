"""A real HTTP server on 127.0.0.1 (port 0) for download tests.

It serves in-memory files, honours ``Range: bytes=N-`` (206, or 416 past the end), records every
request, and can be told per path to misbehave on the next requests: cut the body at 50 % and close
the connection, answer 500 / 503 / 404, ignore Range, or sleep before answering; or, like a hostile server,
trickle the body (``trickle``: one byte every ``trickle_seconds`` after honest headers) or the status line
(``trickle_headers``), or send the body without a Content-Length (``nolength``).  ``redirects`` maps a path
to the URL it answers 302 with.  Dynamic routes (callables of the query) answer JSON, e.g. an
OpenAerialMap ``/meta`` endpoint.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout tests) is expected; anything else is printed."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """Start with ``with LoopbackServer() as srv:``; ``srv.url("/x.tif")`` gives the URL."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, Any]]] = {}
        self.behaviours: dict[str, deque[str]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.ignore_range: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.slow_seconds = 3.0
        self.trickle_seconds = 0.2
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a server thread for long

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer._handle(self)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # -- control -----------------------------------------------------------------------------
    def __enter__(self) -> LoopbackServer:
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

    def queue(self, path: str, *actions: str) -> None:
        """Misbehave on the next requests of ``path``: 'cut', 'slow', or an HTTP status like '500'."""
        self.behaviours[path].extend(actions)

    def requests_for(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    # -- serving -----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        path = parsed.path
        query = parse_qs(parsed.query)
        with self._lock:
            self.requests.append({"path": path, "query": query, "headers": dict(h.headers.items())})
            action = self.behaviours[path].popleft() if self.behaviours[path] else None
        if path in self.redirects:
            h.send_response(302)
            h.send_header("Location", self.redirects[path])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if action in ("trickle", "trickle_headers"):
            self._trickle(h, self.files.get(path, b"x" * 1000), headers_too=action == "trickle_headers")
            return
        if action == "slow":
            time.sleep(self.slow_seconds)
        elif action is not None and action.isdigit():
            body = f"status {action}".encode()
            h.send_response(int(action))
            if action in ("503", "429"):
                h.send_header("Retry-After", "0")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if path in self.routes:
            status, obj = self.routes[path](query)
            body = json.dumps(obj).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        data = self.files.get(path)
        if data is None:
            h.send_error(404, "Not Found")
            return
        start = 0
        status = 200
        rng = h.headers.get("Range")
        if rng and path not in self.ignore_range:
            m = _RANGE_RE.match(rng.strip())
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    h.send_response(416)
                    h.send_header("Content-Range", f"bytes */{len(data)}")
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
                status = 206
        body = data[start:]
        if action == "nolength":
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True
            return
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if action == "cut":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def _trickle(self, h: BaseHTTPRequestHandler, data: bytes, *, headers_too: bool) -> None:
        """One byte every ``trickle_seconds`` (until the client hangs up): of the body after honest
        headers, or of the status line itself."""
        try:
            if headers_too:
                _trickle_bytes(h, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", self.trickle_seconds)
            else:
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.flush()
            _trickle_bytes(h, data, self.trickle_seconds)
        except OSError:
            pass
        h.close_connection = True


def _trickle_bytes(h: BaseHTTPRequestHandler, data: bytes, pause: float) -> None:
    for i in range(len(data)):
        h.wfile.write(data[i:i + 1])
        h.wfile.flush()
        time.sleep(pause)


def _loopback_limits():
    from pipeline.limits import Limits

    return Limits(allow_private_networks=True)


#: The limits of library calls that fetch from a loopback server: the network policy refuses loopback
#: addresses unless ``allow_private_networks`` is set (builds: ``[PipelineConfig] allow_private_networks``).
LOOPBACK_LIMITS = _loopback_limits()
