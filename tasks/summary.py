"""A short console summary at the end of a ``luigi`` command-line build.

Luigi's own execution summary is logged at INFO, which ``luigi.cfg``'s ``log_level = WARNING`` hides, and
``BuildRelease`` prints its line only when it runs.  This module tallies tasks with Luigi events and prints,
when the ``luigi`` process exits::

    Build summary: 23 tasks ran (FetchSource 1, PrepareScene 4, ...), 0 failed, 0 not run (...), 2 already done
    Task time (s): FetchSource 0.4, PrepareScene 12.1, ...
    Rejects: 5 (data/releases/v0.1.0/rejects.csv)
    Release v0.1.0: 12 images -> /abs/data/releases/v0.1.0
    Warning: continent Oceania is under-represented: 0 released images (mean 2.0 per continent)

Nothing is registered on import: :func:`install` (called by ``tasks/__init__.py``, i.e. when a build's tasks
are loaded) adds the Luigi event handlers and the ``atexit`` hook, once per process.

Scheduling events (a requirement discovered, a task found complete) fire in the main process;
``SUCCESS`` / ``FAILURE`` fire in the process that ran the task (a forked child with ``workers > 1``), so
each outcome is appended as one line to a small temporary file that the main process created before
forking and reads at exit (a run killed with SIGKILL leaves that file behind in the temp folder).  A task's
line carries its run time from Luigi's ``PROCESSING_TIME`` event (fired just before ``SUCCESS``, in the same
process); the summary sums them per task family and, when the environment variable ``OEM_BUILD_TIMES`` names
a file, also writes them there as JSON (``{"families": {family: {"tasks": n, "seconds": s}}, "tasks": [...]}``,
read by ``bench/bench_scale.py``).
"""
from __future__ import annotations

import atexit
import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import luigi
from luigi.event import Event

from pipeline.dataset.balance import under_represented
from pipeline.dataset.selection.record import summary_lines
from pipeline.errors import PipelineError

_MAIN_PID = os.getpid()
_state: dict = {"tally": None, "present": {}, "scheduled": {}, "config": None, "seconds": {}}
#: Environment variable naming a file where the per-task run times of a build are written as JSON.
TIMES_ENV = "OEM_BUILD_TIMES"


def _is_main() -> bool:
    return os.getpid() == _MAIN_PID


def _tally() -> str | None:
    if _state["tally"] is None and _is_main():
        fd, path = tempfile.mkstemp(prefix="oem-build-summary-", suffix=".jsonl")
        os.close(fd)
        _state["tally"] = path
        _state["config"] = _snapshot()
    return _state["tally"]


def _snapshot() -> dict:
    """The release settings of this build, read while Luigi's command-line parameters still apply (they
    do not at exit)."""
    try:
        from pipeline.sources.object_store import join_url
        from tasks.config import cfg, release_dir

        c = cfg()
        url = join_url(str(c.publish_url), str(c.release)) if c.publish_url else None
        return {"release": str(c.release), "release_dir": release_dir(), "publish_url": url}
    except Exception as exc:  # noqa: BLE001  (a summary must never turn a build into a failure)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _append(status: str, task, detail: str = "") -> None:
    append_record({"status": status, "id": task.task_id, "family": task.task_family, "t": time.time(),
                   "detail": detail[:300], "seconds": _state["seconds"].pop(task.task_id, None)})


def append_record(record: dict) -> None:
    """Append one line to the tally file (any process of the build; the summary reads outcomes, the progress
    board also starts and ``bytes`` lines)."""
    path = _tally()
    if path is None:
        return
    line = json.dumps(record) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())  # one small O_APPEND write: lines of concurrent workers never mix
        finally:
            os.close(fd)
    except OSError:
        pass


def tally_path() -> str | None:
    """The tally file of this build (None before the first scheduling event)."""
    return _state["tally"]


def _board():
    from tasks import progress

    progress.start()
    return progress.board()


def _on_present(task) -> None:
    if _is_main():
        _tally()
        _state["present"][task.task_id] = task.task_family
        _board().complete_already(task.task_id, task.task_family)


def _on_discovered(task, dependency) -> None:
    # fired (main process, while scheduling) for each requirement of a task that is not complete
    if _is_main():
        _tally()
        _state["scheduled"][task.task_id] = task.task_family
        _state["scheduled"][dependency.task_id] = dependency.task_family
        b = _board()
        b.known(task.task_id, task.task_family)
        b.known(dependency.task_id, dependency.task_family)


def _on_missing(task) -> None:
    # fired for external tasks without data and for tasks whose complete() raised
    if _is_main():
        _tally()
        _state["scheduled"][task.task_id] = task.task_family


def _on_processing_time(task, seconds) -> None:
    # fired in the process that ran the task, just before SUCCESS
    _state["seconds"][task.task_id] = float(seconds)


def _on_start(task) -> None:
    _append("start", task)


def _on_success(task) -> None:
    _append("ok", task)


def _on_failure(task, exc) -> None:
    _append("failed", task, f"{type(exc).__name__}: {exc}")


def _on_process_failure(task, msg) -> None:
    _append("failed", task, str(msg))


def _on_timeout(task, msg) -> None:
    _append("failed", task, str(msg))


def _on_broken(task, exc) -> None:
    _append("failed", task, f"{type(exc).__name__}: {exc}")


def _outcomes() -> dict[str, dict]:
    path = _state["tally"]
    out: dict[str, dict] = {}
    if path and os.path.exists(path):
        for line in Path(path).read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("status") in ("ok", "failed"):
                out[rec["id"]] = rec  # the last outcome of a task wins
    return out


def _release_lines() -> list[str]:
    conf = _state.get("config") or _snapshot()
    if "error" in conf:
        return [f"(release details unavailable: {conf['error']})"]
    lines = []
    release, rel = conf["release"], conf["release_dir"]
    manifest = rel / "manifest.json"
    if manifest.is_file():
        rejects = rel / "rejects.csv"
        if rejects.is_file():
            with open(rejects, newline="") as fh:
                n = max(0, sum(1 for _ in csv.reader(fh)) - 1)
            lines.append(f"Rejects: {n} ({rejects})")
        try:
            doc = json.loads(manifest.read_text())
            images = doc.get("images", [])
            lines.append(f"Release {release}: {len(images)} images -> {rel.resolve()}")
            lines += summary_lines(doc.get("selection") or {})
            per_continent = Counter(str(im.get("continent")) for im in images)
            lines += [f"Warning: {w}" for w in under_represented(per_continent)]  # released images only
        except ValueError:
            lines.append(f"Release {release} -> {rel.resolve()}")
    else:
        lines.append(f"Release {release}: not built ({rel} has no manifest.json)")
    url = conf["publish_url"]
    if url:
        lines.append(f"Publish target: {url}/manifest.json")
    return lines


def _task_times(ok: dict[str, dict]) -> dict:
    """Run seconds of the tasks that ran, per family; written to ``$OEM_BUILD_TIMES`` when that is set."""
    families: dict[str, dict] = {}
    for rec in sorted(ok.values(), key=lambda r: r["family"]):
        if rec.get("seconds") is not None:
            fam = families.setdefault(rec["family"], {"tasks": 0, "seconds": 0.0})
            fam["tasks"] += 1
            fam["seconds"] = round(fam["seconds"] + rec["seconds"], 3)
    out = {"families": families,
           "tasks": [{"id": r["id"], "family": r["family"], "seconds": r.get("seconds")} for r in ok.values()]}
    target = os.environ.get(TIMES_ENV)
    if target:
        try:
            Path(target).write_text(json.dumps(out, indent=1))
        except OSError:
            pass
    return out


def summary_text() -> str | None:
    """The summary of what this process scheduled since the last :func:`reset`, or None if nothing was."""
    present, scheduled = _state["present"], _state["scheduled"]
    if not present and not scheduled:
        return None
    outcomes = _outcomes()
    ok = {k: v for k, v in outcomes.items() if v["status"] == "ok"}
    failed = {k: v for k, v in outcomes.items() if v["status"] == "failed"}
    not_run = [k for k in scheduled if k not in ok and k not in failed and k not in present]
    done_before = [k for k in present if k not in ok and k not in failed]
    fams = Counter(v["family"] for v in ok.values())
    ran = ", ".join(f"{f} {n}" for f, n in sorted(fams.items()))
    lines = [f"Build summary: {len(ok)} tasks ran" + (f" ({ran})" if ran else "")
             + f", {len(failed)} failed, {len(not_run)} not run"
             " (failed dependency, scheduling error or another worker),"
             f" {len(done_before)} already done"]
    times = _task_times(ok)
    if times["families"]:
        lines.append("Task time (s): " + ", ".join(f"{f} {v['seconds']:.1f}" for f, v in times["families"].items()))
    for rec in sorted(failed.values(), key=lambda r: r["id"])[:10]:
        lines.append(f"  FAILED {rec['id']}: {rec['detail']}")
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more failed tasks")
    try:
        lines += _release_lines()
    except Exception as exc:  # noqa: BLE001  (a summary must never turn a build into a failure)
        lines.append(f"(release details unavailable: {type(exc).__name__}: {exc})")
    return "\n".join(lines)


def reset() -> None:
    path = _state["tally"]
    if path and _is_main():
        try:
            os.unlink(path)
        except OSError:
            pass
    _state.update(tally=None, present={}, scheduled={}, config=None, seconds={})


def is_luigi_cli() -> bool:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("")
    return argv0.name == "luigi" or (argv0.name == "__main__.py" and argv0.parent.name == "luigi")


def _at_exit() -> None:
    if not _is_main():
        return
    try:
        from tasks import progress

        progress.finish()
        text = summary_text() if is_luigi_cli() else None
        if text:
            print("\n" + text + "\n", flush=True)
    finally:
        reset()


#: Luigi event -> handler, registered by :func:`install`.
HANDLERS = (
    (Event.DEPENDENCY_PRESENT, _on_present),
    (Event.DEPENDENCY_DISCOVERED, _on_discovered),
    (Event.DEPENDENCY_MISSING, _on_missing),
    (Event.PROCESSING_TIME, _on_processing_time),
    (Event.START, _on_start),
    (Event.SUCCESS, _on_success),
    (Event.FAILURE, _on_failure),
    (Event.PROCESS_FAILURE, _on_process_failure),
    (Event.TIMEOUT, _on_timeout),
    (Event.BROKEN_TASK, _on_broken),
)
_installed = False


def install() -> None:
    """Register the summary's Luigi event handlers and its ``atexit`` hook (once per process; idempotent)."""
    global _installed, _MAIN_PID
    if _installed:
        return
    _MAIN_PID = os.getpid()
    for event, handler in HANDLERS:
        luigi.Task.event_handler(event)(handler)
    atexit.register(_at_exit)
    if is_luigi_cli():
        plain_errors()
    _installed = True


def plain_errors() -> None:
    """Log the pipeline's own failures as one line (:func:`_plain_refusal`): for the ``luigi`` command and
    ``python -m tasks.worker``; idempotent."""
    logger = logging.getLogger("luigi-interface")
    if _plain_refusal not in logger.filters:
        logger.addFilter(_plain_refusal)


def _plain_refusal(record: logging.LogRecord) -> bool:
    """A :class:`PipelineError` (a failure the pipeline means and words: a bad ``sources.yaml``, setting or
    release name refused before any task runs, a release that would be empty or is invalid, a source that
    failed) logged by Luigi as one line, not as a traceback through Luigi's internals: ``ERROR: cannot build:
    <the error>`` when the root task refuses to be made, ``ERROR: <Task> failed: <Class>: <the error>`` when a
    task fails with one.  Any other exception keeps its traceback (a bug shows where it is)."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, PipelineError):
        return True
    if record.getMessage() == "Uncaught exception in luigi":
        record.msg, record.args, record.exc_info, record.exc_text = "cannot build: %s", (exc,), None, None
    elif str(record.msg).startswith("[pid %s] Worker %s failed") and isinstance(record.args, tuple) \
            and len(record.args) == 3:
        family = getattr(record.args[2], "task_family", str(record.args[2]))
        record.msg, record.args = "%s failed: %s: %s", (family, type(exc).__name__, exc)
        record.exc_info, record.exc_text = None, None
    return True
