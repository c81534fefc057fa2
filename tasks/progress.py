"""Live per-stage progress on the console during a build (``[PipelineConfig] progress``, default true).

The scheduling process (the ``luigi`` command) keeps a :class:`pipeline.progress.Board`: tasks it schedules or
finds complete come from Luigi's scheduling events (:mod:`tasks.summary` registers them), starts and ends of
tasks from the summary's tally file, which every worker process appends to.  A daemon thread redraws the
board every ``progress_interval`` seconds: on a terminal as a live table redrawn in place (the ``rich``
library: one row per stage with a bar, done/total, throughput and ETA), as one plain line per interval
otherwise (CI logs, unchanged), and once more when the process exits, so the last line shows every stage at its
total.  It writes with ``os.write`` (no Python-level lock a forked worker could inherit held; rich renders into
a file object that does the same), and never lets a failure of its own reach the build.

Downloads: ``FetchSource`` reports its bytes through :func:`report_transfer` (one tally line at most every
:data:`TRANSFER_EVERY` seconds, and one when a file completes); the ``fetch`` row shows bytes done/total and
the rate.  Luigi's scheduler (``luigid``): when a task starts running, :func:`on_run` (called from
``PipelineTask``) sets its status message and progress percentage to its stage's figures as this worker
process sees them (``tile 3/14 1.2/min ETA 50s``); the task's own messages are prefixed with them, and a
fetch adds its bytes and rate.
"""
from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from typing import IO, cast

from pipeline.progress import Board, Transfer, stage_of

_state: dict = {"board": None, "thread": None, "stop": None, "offset": 0, "tty": False, "last": "", "live": None}
#: Seconds between two reports of a running download (tally line, luigid status message).
TRANSFER_EVERY = 0.5


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
    _state.update(stop=stop, thread=thread, pid=os.getpid())
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
        if rec.get("status") == "bytes":
            b.transfer(rec["id"], int(rec["done"]), rec.get("total"), float(rec.get("seconds") or 0.0),
                       running=bool(rec.get("running")))
        elif rec.get("status") == "start":  # when it started (the line may be read much later)
            since = time.time() - float(rec.get("t") or time.time())
            b.started(rec["family"], time.monotonic() - max(0.0, since))
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
    now = time.monotonic()
    line = b.line(now)
    if _state["tty"]:
        try:
            _draw_live(b, now, final=final)
        except ImportError:  # rich missing (an environment installed before it was a dependency): one line
            pad = max(0, len(_state["last"]) - len(line))
            _write("\r" + line + " " * pad + ("\n" if final else ""))
    elif final or line.split("] ", 1)[-1] != _state["last"].split("] ", 1)[-1]:
        _write(line + "\n")  # plain lines: only when a count moved (and the last one)
    _state["last"] = line
    return line


class _FdFile(io.TextIOBase):
    """A text file over the process's stdout descriptor, written with ``os.write`` (for rich)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def write(self, text: str) -> int:
        _write(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd


def render(b: Board, now: float):
    """The board as a rich table: a header, then one row per stage (bar, done/total, detail)."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 1))
    table.add_row(Text(b.header(now)), "", "", "")  # Text: no rich markup ("[progress ...]" is text)
    for name, done, total, detail in b.rows(now):
        table.add_row(Text(name), ProgressBar(total=max(total, 1), completed=done, width=30),
                      Text(f"{done}/{total}"), Text(detail))
    return table


def _draw_live(b: Board, now: float, *, final: bool) -> None:
    live = _state["live"]
    if live is None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=cast(IO[str], _FdFile(sys.stdout.fileno())), force_terminal=True)
        live = _state["live"] = Live(console=console, auto_refresh=False, redirect_stdout=False,
                                     redirect_stderr=False)
        live.start()
    live.update(render(b, now), refresh=True)
    if final:
        live.stop()
        _state["live"] = None


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
    _state.update(board=None, thread=None, stop=None, offset=0, last="", live=None)


# ------------------------------------------------------------------------------------ tasks of the build

def _stage_text(family: str) -> tuple[str, int] | None:
    """``(text, percent)`` of the stage of ``family`` as this process's board sees it, or None."""
    from tasks import summary

    b, stage = _state["board"], stage_of(family)
    if b is None or stage is None:
        return None
    if _state["thread"] is None or _state.get("pid") != os.getpid():
        read_tally(summary.tally_path())  # else the printer thread keeps the board fresh (one reader at a time)
    for name, done, total, detail in b.rows(time.monotonic()):
        if name == stage:
            return f"{name} {done}/{total}" + (f" {detail}" if detail else ""), int(100 * done / max(total, 1))
    return None


def on_run(task) -> None:
    """A task starts running in this process (inside Luigi's worker, which gave it its status callbacks): set
    its status message and percentage to its stage's figures, and prefix its own messages with them."""
    try:
        forward = task.__dict__.get("set_status_message")
        figures = _stage_text(task.task_family)
        if forward is None or figures is None:
            return
        text, percent = figures
        forward(text)
        percentage = task.__dict__.get("set_progress_percentage")
        if percentage is not None:
            percentage(percent)
        task.__dict__["set_status_message"] = lambda message: forward(f"{text} | {message}")
    except Exception:  # noqa: BLE001  (progress must never turn a build into a failure)
        pass


def report_transfer(task, transfer: Transfer, *, force: bool = False) -> None:
    """Report the bytes of ``task``'s downloads (tally line for the console, luigid status message and
    percentage), at most every :data:`TRANSFER_EVERY` seconds unless ``force`` or a file just completed."""
    from tasks import summary

    now = time.monotonic()
    last = task.__dict__.get("_transfer_reported", 0.0)
    complete = transfer.total is not None and transfer.done >= transfer.total
    if not (force or complete or now - last >= TRANSFER_EVERY):
        return
    task.__dict__["_transfer_reported"] = now
    summary.append_record({"status": "bytes", "id": task.task_id, "family": task.task_family,
                           "done": transfer.done, "total": transfer.total, "seconds": round(now - transfer.first, 3),
                           "running": not force})
    try:
        forward = task.__dict__.get("set_status_message")
        if forward is not None:
            forward(f"{task.source_name}: {transfer.text(now)}")
        percentage = task.__dict__.get("set_progress_percentage")
        if percentage is not None and transfer.total:
            percentage(int(100 * transfer.done / transfer.total))
    except Exception:  # noqa: BLE001
        pass
