"""Reliable, bounded HTTP(S) downloads: resume, retry with backoff, checksum verification, atomic rename.

:func:`download` streams into ``<dest>.part`` (kept between attempts), resumes an interrupted transfer
with ``Range: bytes=<n>-`` and renames the part onto ``dest`` only after the size and the checksums
have been verified, so a file under its final name is always complete.

Bounded by :class:`pipeline.limits.Limits` (``LimitExceeded`` names the limit): a total deadline over all
attempts (``download_deadline_s``; a watchdog shuts the socket down, so even a server that trickles its
headers is cut), a minimum average rate over a sliding window after a grace period of the same length
(``download_min_rate`` / ``download_rate_window_s``: a server sending one byte every 20 s fails), and a
maximum size (``download_max_bytes``: the announced Content-Length and the bytes actually streamed).
Every request goes through :func:`pipeline.sources.netpolicy.policy_session` (the network policy, on the
URL, each redirect and each connection).
"""
from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from pipeline.errors import FetchError, LimitExceeded, NetworkPolicyError
from pipeline.limits import DEFAULT_LIMITS, Limits, human_sizes
from pipeline.sources.netpolicy import check_url_limits, guard_of, policy_session
from pipeline.sources.rawreuse import link_earlier

#: Status codes in the 4xx range that are worth retrying (timeout, rate limit).
RETRYABLE_4XX = (408, 429)
#: Upper bound for one backoff pause, also for a server's ``Retry-After``.
MAX_BACKOFF_S = 60.0

ProgressFn = Callable[[int, int | None], None]

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_CONTENT_RANGE_UNSAT_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)


class _Retry(Exception):
    """One attempt failed in a way worth another try; ``reason`` says why."""

    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _Budget:
    """The limits of one :func:`download` and its clock: deadline, rate window, maximum size."""

    def __init__(self, url: str, limits: Limits):
        self.url = url
        self.limits = limits
        self.deadline = time.monotonic() + float(limits.download_deadline_s)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> LimitExceeded:
        return LimitExceeded(self.url, f"download took longer than download_deadline_s "
                                       f"({self.limits.download_deadline_s:g} s)")

    def check_size(self, nbytes: int | None, what: str) -> None:
        if nbytes is not None and nbytes > self.limits.download_max_bytes:
            shown, limit = human_sizes(nbytes, self.limits.download_max_bytes)
            raise LimitExceeded(self.url, f"{what} {shown} is over download_max_bytes ({limit})")


class _RateMeter:
    """Average rate over the last ``window`` seconds of one request; too slow once the request is older
    than the window (the grace period)."""

    def __init__(self, window: float, min_rate: float):
        self.window, self.min_rate = float(window), float(min_rate)
        self.start = time.monotonic()
        self.samples: list[tuple[float, int]] = [(self.start, 0)]

    def too_slow(self, total: int) -> str | None:
        now = time.monotonic()
        self.samples.append((now, total))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.pop(0)
        if self.min_rate <= 0 or now - self.start < self.window:
            return None
        t0, n0 = self.samples[0]
        rate = (total - n0) / max(now - t0, 1e-9)
        if rate < self.min_rate:
            return (f"average rate {rate:.1f} B/s over the last {self.window:g} s is below download_min_rate "
                    f"({self.min_rate:g} B/s)")
        return None


class _Watchdog:
    """Shuts down the session's sockets when the deadline passes (blocked reads then fail at once)."""

    def __init__(self, session: requests.Session, seconds: float):
        guard = guard_of(session)
        self.fired = False

        def fire() -> None:
            self.fired = True
            if guard is not None:
                guard.abort()

        self._timer = threading.Timer(max(seconds, 0.0), fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def file_digests(path: Path, *, md5: bool = False, chunk_size: int = 1 << 20) -> dict[str, str]:
    """Return ``{"sha256": hex}`` (plus ``"md5"`` when asked) of the file at ``path``."""
    sha = hashlib.sha256()
    m = hashlib.md5() if md5 else None
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_size)
            if not block:
                break
            sha.update(block)
            if m is not None:
                m.update(block)
    out = {"sha256": sha.hexdigest()}
    if m is not None:
        out["md5"] = m.hexdigest()
    return out


def part_path(dest: Path) -> Path:
    """The temporary file a download of ``dest`` is streamed into."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _mismatch(digests: dict[str, str], sha256: str | None, md5: str | None) -> str | None:
    """Describe the first checksum that does not match, or ``None`` when all match."""
    if sha256 and digests["sha256"] != sha256.lower():
        return f"sha256 mismatch: expected {sha256.lower()}, got {digests['sha256']}"
    if md5 and digests.get("md5") != md5.lower():
        return f"md5 mismatch: expected {md5.lower()}, got {digests.get('md5')}"
    return None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _request(url: str, offset: int, session: requests.Session, timeout: float, budget: _Budget
             ) -> requests.Response:
    """Send the GET (``Range`` from ``offset``) under the network policy; the response is streamed.

    Headers must arrive within ``timeout`` + the rate window, and before the deadline; a watchdog cuts the
    connection otherwise.  Raises :class:`_Retry` for transient failures."""
    try:
        check_url_limits(url, budget.limits)
    except NetworkPolicyError:
        raise
    except FetchError as exc:  # the name does not resolve (now): worth another try
        raise _Retry(exc.reason) from None
    headers = {"Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    wait = min(budget.left(), timeout + float(budget.limits.download_rate_window_s))
    with _Watchdog(session, wait) as dog:
        try:
            return session.get(url, headers=headers, stream=True, timeout=(timeout, timeout), allow_redirects=True)
        except NetworkPolicyError as exc:
            raise NetworkPolicyError(url, exc.reason) from None
        except requests.exceptions.RequestException as exc:
            if budget.left() <= 0:
                raise budget.expired() from None
            if dog.fired:
                raise _Retry(f"no response headers within {wait:.0f} s") from None
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc


def _body_plan(resp: requests.Response, part: Path, offset: int, budget: _Budget) -> tuple[int | None, int | None,
                                                                                           int, str, bool]:
    """``(body length, total size, offset, file mode, resumed)`` of a 200 / 206 answer; checks the size."""
    length = resp.headers.get("Content-Length")
    body_len = int(length) if length and length.isdigit() else None
    if resp.status_code == 206:
        m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise _Retry(f"HTTP 206 with unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        total = int(m.group(3)) if m.group(3) != "*" else None
        if body_len is None:
            body_len = int(m.group(2)) - offset + 1
        budget.check_size(total, "size")
        budget.check_size(offset + body_len, "size")
        return body_len, total, offset, "ab", offset > 0
    budget.check_size(body_len, "Content-Length")  # 200: the whole body; a server that ignored Range restarts
    return body_len, body_len, 0, "wb", False


def _stream(resp: requests.Response, session: requests.Session, part: Path, offset: int, mode: str,
            total: int | None, budget: _Budget, chunk_size: int, progress: ProgressFn | None) -> int:
    """Append the body to ``part``; returns the bytes received.  Every read returns as soon as some bytes
    arrive (``read1``), so the rate, size and deadline are checked as they come."""
    meter = _RateMeter(budget.limits.download_rate_window_s, budget.limits.download_min_rate)
    received = 0
    error: str | None = None
    with _Watchdog(session, budget.left()) as dog, open(part, mode) as fh:
        while True:
            try:
                block = resp.raw.read1(chunk_size, decode_content=False)
            except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
                error = f"transfer interrupted after {offset + received} bytes: {type(exc).__name__}: {exc}"
                break
            if not block:
                break
            fh.write(block)
            received += len(block)
            budget.check_size(offset + received, "body")
            if progress is not None:
                progress(offset + received, total)
            slow = meter.too_slow(received)
            if slow:
                error = slow
                break
        fh.flush()
        os.fsync(fh.fileno())
    if dog.fired or budget.left() <= 0:
        raise budget.expired()
    if error is not None:
        raise _Retry(error)
    return received


def _attempt(url: str, part: Path, session: requests.Session, timeout: float, chunk_size: int,
             progress: ProgressFn | None, budget: _Budget) -> bool:
    """Run one request, appending to or rewriting ``part``.

    Returns ``True`` when the bytes were appended to an existing partial file (a resumed transfer).
    Raises :class:`_Retry` for transient failures and :class:`FetchError` for permanent ones.
    """
    offset = part.stat().st_size if part.exists() else 0
    resp = _request(url, offset, session, timeout, budget)
    with resp:
        status = resp.status_code
        if status == 416 and offset > 0:
            m = _CONTENT_RANGE_UNSAT_RE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) == offset:
                return False  # the part already holds the whole file; checksums decide
            part.unlink()
            raise _Retry(f"HTTP 416: partial file has {offset} bytes but the resource has {m.group(1)}")
        if status in RETRYABLE_4XX or status >= 500:
            raise _Retry(f"HTTP {status} {resp.reason}", delay=_retry_after(resp))
        if status >= 400:
            raise FetchError(url, f"HTTP {status} {resp.reason}")
        if status not in (200, 206):
            raise FetchError(url, f"unexpected HTTP {status} {resp.reason}")
        body_len, total, offset, mode, resumed = _body_plan(resp, part, offset, budget)
        if progress is not None:
            progress(offset, total)
        received = _stream(resp, session, part, offset, mode, total, budget, chunk_size, progress)
        if body_len is not None and received != body_len:
            raise _Retry(f"truncated body: got {received} of {body_len} bytes (Content-Length)")
        return resumed


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    session: requests.Session | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    chunk_size: int = 1 << 20,
    progress: Callable[[int, int | None], None] | None = None,
    limits: Limits | None = None,
) -> dict:
    """Download ``url`` to ``dest`` reliably, within ``limits``, and return a record of what was fetched.

    * Streams into ``<dest>.part``; an interrupted transfer is resumed on the next attempt with
      ``Range: bytes=<n>-`` (206 appends, a 200 that ignores the range restarts, a 416 whose
      ``Content-Range: bytes */N`` equals the part size means the part is already complete).
    * Up to ``retries`` further attempts after the first, pausing ``backoff * 2**k`` seconds (capped at
      60 s, or the server's ``Retry-After``), on connection errors, timeouts, 5xx, 408, 429 and bodies
      shorter than their Content-Length.  Other 4xx fail at once: ``FetchError(url, "HTTP 404 Not Found")``.
    * ``timeout`` bounds the connection and every single socket read (seconds).
    * ``sha256`` / ``md5`` (hex) are verified before the rename; on a mismatch the part is deleted and
      the download is retried once from scratch, then ``FetchError`` names url, expected and actual.
    * If ``dest`` already exists (and matches the checksums, when given) no request is made; so if an earlier
      fetch downloaded ``url`` whole (:func:`pipeline.sources.rawreuse.link_earlier`) and it has its sha256.
    * ``limits`` (default :data:`pipeline.limits.DEFAULT_LIMITS`): network policy, deadline, minimum rate,
      maximum size (module doc); ``NetworkPolicyError`` / ``LimitExceeded`` fail at once.  A ``session``
      given by the caller is used as is (the URL is still checked; use
      :func:`pipeline.sources.netpolicy.policy_session` for the connection checks and the watchdog).

    Returns ``{"url", "path", "bytes", "sha256", "md5" (only when asked), "resumed", "attempts"}``
    where ``attempts`` counts the HTTP requests made (0 when ``dest`` was already good).
    """
    dest = Path(dest)
    want_md5 = md5 is not None
    if sha256 is not None:
        sha256 = sha256.strip().lower()
    if md5 is not None:
        md5 = md5.strip().lower()
    earlier_sha = link_earlier(url, dest)  # the same URL fetched whole before (pipeline.sources.rawreuse)
    if dest.is_file():
        digests = file_digests(dest, md5=want_md5)
        if _mismatch(digests, sha256 or earlier_sha, md5) is None:
            return _record(url, dest, digests, False, 0, want_md5)
        dest.unlink()  # stale or corrupt: fetch again

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    budget = _Budget(url, limits or DEFAULT_LIMITS)
    own_session = session is None
    sess = session if session is not None else policy_session(budget.limits)
    try:
        digests, resumed, attempts = _transfer(url, part, sess, sha256=sha256, md5=md5, retries=retries,
                                               backoff=backoff, timeout=timeout, chunk_size=chunk_size,
                                               progress=progress, budget=budget)
        os.replace(part, dest)
        return _record(url, dest, digests, resumed, attempts, want_md5)
    except (LimitExceeded, NetworkPolicyError):
        part.unlink(missing_ok=True)  # nothing is kept of a download the limits or the policy refused
        raise
    finally:
        if own_session:
            sess.close()


def _record(url: str, dest: Path, digests: dict[str, str], resumed: bool, attempts: int, want_md5: bool) -> dict:
    rec = {
        "url": url,
        "path": str(dest),
        "bytes": dest.stat().st_size,
        "sha256": digests["sha256"],
        "resumed": resumed,
        "attempts": attempts,
    }
    if want_md5:
        rec["md5"] = digests["md5"]
    return rec


def _transfer(url: str, part: Path, sess: requests.Session, *, sha256: str | None, md5: str | None,
              retries: int, backoff: float, timeout: float, chunk_size: int, progress: ProgressFn | None,
              budget: _Budget) -> tuple[dict[str, str], bool, int]:
    """Attempt until ``part`` holds the whole body with the expected checksums (policies: :func:`download`);
    returns ``(digests, resumed, attempts)``."""
    attempts = 0
    failures = 0
    resumed = False
    checksum_retry_used = False
    while True:
        if budget.left() <= 0:
            raise budget.expired()
        attempts += 1
        try:
            resumed = _attempt(url, part, sess, timeout, chunk_size, progress, budget)
        except _Retry as exc:
            failures += 1
            if failures > retries:
                raise FetchError(url, f"giving up after {attempts} attempts: {exc.reason}") from None
            delay = exc.delay if exc.delay is not None else backoff * (2 ** (failures - 1))
            pause = min(max(delay, 0.0), MAX_BACKOFF_S)
            if pause >= budget.left():
                raise budget.expired() from None
            time.sleep(pause)
            continue
        digests = file_digests(part, md5=md5 is not None)
        bad = _mismatch(digests, sha256, md5)
        if bad is not None:
            part.unlink(missing_ok=True)
            if checksum_retry_used:
                raise FetchError(url, bad)
            checksum_retry_used = True
            resumed = False
            continue
        return digests, resumed, attempts
