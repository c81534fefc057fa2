"""Live per-stage progress on the console during a build (``[PipelineConfig] progress``, default true).

The scheduling process (the ``luigi`` command) keeps a :class:`pipeline.progress.Board`: tasks it schedules or
finds complete come from Luigi's scheduling events (:mod:`tasks.summary` registers them), starts and ends of
tasks from the summary's tally file, which every worker process appends to.  A daemon thread redraws the
board every ``progress_interval`` seconds: in place on a terminal (carriage return), as one plain line per
interval otherwise (CI logs), and once more when the process exits, so the last line shows every stage at
its total.  It writes with ``os.write`` (no Python-level lock a forked worker could inherit held), and never
lets a failure of its own reach the build.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from pipeline.progress import Board

_state: dict = {"board": None, "thread": None, "stop": None, "offset": 0, "tty": False, "last": ""}


def enabled() -> tuple[bool, float]:
    """``(progress, progress_interval)`` of this build's configuration."""
    try:
        from tasks.config import cfg

        c = cfg()
        return bool(c.progress), max(0.05, float(c.progress_interval))
    except Exception:  # noqa: BLE001  (progress must never turn a build into a failure)
        return False, 10.0


def board() -> Board | None:
    return _state["board"]


def start() -> None:
    """Start the board and its printer (main process, first scheduling event; idempotent)."""
    if _state["board"] is not None:
        return
    from tasks import summary

    on, interval = enabled()
    _state["board"] = Board(time.monotonic())
    if not on or not summary.is_luigi_cli():  # builds driven in-process (tests, scripts) only count
        return
    try:
        _state["tty"] = os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        _state["tty"] = False
    stop = threading.Event()
    thread = threading.Thread(target=_loop, args=(stop, interval), name="oem-progress", daemon=True)
    _state.update(stop=stop, thread=thread)
    thread.start()


def read_tally(path: str | None) -> None:
    """Feed the board with the tally lines appended since the last call."""
    b = _state["board"]
    if b is None or not path or not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        fh.seek(_state["offset"])
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a line being written stays for the next call
    _state["offset"] += end
    for raw in data[:end].splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("status") == "start":
            b.started(rec["family"], time.monotonic())
        elif rec.get("status") in ("ok", "failed"):
            b.finished(rec["id"], rec["family"], ok=rec["status"] == "ok")


def _write(text: str) -> None:
    try:
        os.write(sys.stdout.fileno(), text.encode())
    except (AttributeError, OSError, ValueError):
        pass


def draw(*, final: bool = False) -> str | None:
    """Print the board's line (in place on a TTY); returns it (None when progress is off)."""
    from tasks import summary

    b = _state["board"]
    if b is None or _state["stop"] is None:
        return None
    read_tally(summary.tally_path())
    line = b.line(time.monotonic())
    if _state["tty"]:
        pad = max(0, len(_state["last"]) - len(line))
        _write("\r" + line + " " * pad + ("\n" if final else ""))
    elif final or line.split("] ", 1)[-1] != _state["last"].split("] ", 1)[-1]:
        _write(line + "\n")  # plain lines: only when a count moved (and the last one)
    _state["last"] = line
    return line


def _loop(stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            draw()
        except Exception:  # noqa: BLE001  (progress must never turn a build into a failure)
            pass


def finish() -> None:
    """Stop the printer and print the final line (main process, at exit)."""
    stop, thread = _state["stop"], _state["thread"]
    if stop is not None:
        stop.set()
        if thread is not None:
            thread.join(timeout=2)
        try:
            draw(final=True)
        except Exception:  # noqa: BLE001
            pass
    _state.update(board=None, thread=None, stop=None, offset=0, last="")
