"""A real headless browser for the tests: Debian's ``chromium``, offline.

* :func:`dump_dom` / :func:`screenshot`: ``chromium --headless --dump-dom`` / ``--screenshot`` of a URL.
* :class:`DevTools`: the Chrome DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and
  4, NUL-delimited JSON; no websocket library needed) to click and read the page.

Every run uses a fresh profile under the caller's temporary folder and the switches that keep Chromium
off the network (no background networking, component updates, sync or QUIC).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_REASON = ("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it when it "
               "runs as root)")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
TIMEOUT = 90
WINDOW = (1400, 1000)


def _args(profile: Path, window: tuple[int, int]) -> list[str]:
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}"]


def _run(extra: list[str], url: str, profile: Path, window: tuple[int, int]) -> subprocess.CompletedProcess:
    proc = subprocess.run(_args(profile, window) + ["--virtual-time-budget=5000", *extra, url],
                          capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def dump_dom(url: str, profile: Path, window: tuple[int, int] = WINDOW) -> str:
    """The DOM after the page has loaded and its scripts ran, serialised as HTML."""
    return _run(["--dump-dom"], url, profile, window).stdout


def screenshot(url: str, out: Path, profile: Path, window: tuple[int, int] = WINDOW) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out}"], url, profile, window)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no PNG screenshot at {out}"
    return out


class DevTools:
    """One headless Chromium driven over the DevTools pipe: ``open(url)``, ``js(expr)``, ``png()``."""

    def __init__(self, profile: Path, window: tuple[int, int] = WINDOW):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends, moved above 3 and 4 so that dup2() onto 3 and 4 never meets one of them
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        os.close(to_browser_r)
        os.close(from_browser_w)
        to_browser_r, from_browser_w = high

        def wire() -> None:  # in the child: the protocol's fds 3 (commands in) and 4 (replies out)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(_args(profile, window) + ["--remote-debugging-pipe", "about:blank"],
                                     preexec_fn=wire, close_fds=False,  # keep the dup2'ed fds 3 and 4
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict[str, Any]:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\0" not in self._buf:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise AssertionError(f"chromium closed the DevTools pipe during {method}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
        raise AssertionError(f"no DevTools reply to {method} within {TIMEOUT} s")

    def open(self, url: str, window: tuple[int, int] = WINDOW) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.js("new Promise(r => document.readyState === 'complete' ? r(1) : addEventListener('load', () => r(1)))")

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (awaiting a promise) and return its JSON value."""
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in res:
            raise AssertionError(f"page error in {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def png(self, out: Path) -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        os.close(self._to_browser)
        os.close(self._from_browser)
