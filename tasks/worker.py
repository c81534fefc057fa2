"""One worker process of a build on Luigi's central scheduler (``luigid``)::

    LUIGI_CONFIG_PATH=docs/luigi-central.cfg python -m tasks.worker --scheduler-host HOST [--workers 1] \\
        [--PipelineConfig-release v0.2.0 ...]

Start any number of these, the same way, on any machines that share the data folder: together they build the
release that their options describe (the same options as ``luigi --module pipeline BuildRelease``), each exits
0 once it exists, whoever built it (1 when it cannot be built).

Why a command of its own: luigid hands a task only to a worker that scheduled it (non-assistant workers), and a
dynamic dependency is scheduled only by the worker that runs the task yielding it.  Per-scene tasks are static
requirements of ``AssembleTiles`` for every source whose catalog exists when the graph is built (see
``tasks.dataset``), so this command schedules in two passes:

1. the source phase: ``FetchSource`` and ``CatalogSource`` of every enabled source (the processes share them),
   until every catalog exists, whoever wrote it (:func:`_build_until_done`);
2. the whole build (``BuildRelease``): every catalog exists now, so every process schedules every per-scene
   task itself and luigid hands each to whichever worker asks first.

Before pass 1 a process refuses (exit 1) to join luigid where another worker builds the same release from other
settings, code or library versions (:func:`rival_builds`): they would share no work, and the release would be
whichever finished first.

Exit rule: after pass 2 the process stops when it has nothing left to run; while the release is not built but
another worker is running what is left (e.g. ``BuildRelease`` itself), it schedules again after
``[worker] wait_interval`` seconds, and exits 0 once the release exists.  It exits 1 when the release cannot be
built (a task failed for good, or SIGUSR1 told it to stop requesting work: Luigi's own "finish what you are
running, then quit", the signal the systemd unit in docs/ uses to stop a worker).
"""
from __future__ import annotations

import sys
import time


def _blocked_by_other_worker(result, task) -> bool:
    """Whether ``task`` was left to another worker in the luigi run ``result`` (it is running elsewhere)."""
    from luigi.execution_summary import _summary_dict

    return task in _summary_dict(result.worker).get("run_by_other_worker", set())


def serve(argv: list[str]) -> int:
    """Run both passes (module docstring) with Luigi's command-line options ``argv``; the exit status."""
    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import Register

    import tasks
    from pipeline.errors import PipelineError
    from tasks import summary

    summary.plain_errors()
    with CmdlineParser.global_instance(["BuildRelease", *argv]) as parser:
        try:
            root = parser.get_task_obj()
        except PipelineError as exc:  # a bad sources.yaml, setting or release name: nothing to build
            print(f"ERROR: cannot build: {exc}", file=sys.stderr, flush=True)
            return 1
        rivals = rival_builds(_scheduled_builds(), root)
        if rivals:
            print("ERROR: cannot build: " + "; ".join(rivals), file=sys.stderr, flush=True)
            return 1
        catalogs = root.clone(tasks.AssembleTiles).catalog_tasks()
        # a catalog that cannot be built fails pass 2 as it would fail a local build (after the other sources)
        if _build_until_done(catalogs) is None:
            code = 1
        else:
            Register.clear_instance_cache()  # a new graph: AssembleTiles sees the catalogs that exist now
            code = 0 if _build_until_done([parser.get_task_obj()]) else 1
        text = summary.summary_text()
    if text:
        print("\n" + text + "\n", flush=True)
    summary.reset()
    return code


def _scheduled_builds() -> dict:
    """luigid's pending and running tasks whose id names ``BuildRelease`` ({} with the local scheduler, or when
    luigid cannot be asked: the build then finds out as it would have)."""
    from luigi.interface import core
    from luigi.rpc import RemoteScheduler

    c = core()
    if c.local_scheduler:
        return {}
    url = c.scheduler_url or f"http://{c.scheduler_host}:{c.scheduler_port}/"
    try:
        return RemoteScheduler(url).task_search("BuildRelease") or {}  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an unreachable scheduler fails the build itself, with Luigi's own message
        return {}


def rival_builds(found: dict, root) -> list[str]:
    """Why ``root`` must not be built beside the builds luigid already holds (``found``: its ``task_search``
    answer): a pending or running ``BuildRelease`` of the same release under another task id is a worker started
    with other settings, code or library versions.  The two would share no work, and the release folder
    (named by the release alone) would be whichever finished first, the other's build ending as if it had been
    made.  Each is named with the parameters that differ."""
    from tasks.taken import differences

    mine = root.to_str_params(only_significant=True)
    out = []
    for status in ("PENDING", "RUNNING"):
        for task_id, info in sorted((found.get(status) or {}).items()):
            params = info.get("params") or {}
            if info.get("name") != "BuildRelease" or task_id == root.task_id or params.get("release") != root.release:
                continue
            differ = differences({k: str(v) for k, v in params.items()}, mine, now="this worker:")
            out.append(f"another worker on this scheduler builds release {root.release} ({task_id}, {status.lower()}) "
                       f"with other settings: {'; '.join(differ) or 'its parameters'}. Start every worker of a build "
                       "with the same options from the same code and libraries (or build another release name); if "
                       "that worker is gone, luigid forgets its tasks within a minute")
    return out


def _build_until_done(roots: list) -> bool | None:
    """Build ``roots`` on luigid until they are all complete (True), scheduling again after ``[worker]
    wait_interval`` while what is left runs in another worker; False when they cannot be built (a task failed
    for good), None when SIGUSR1 told this process to stop requesting work.

    Scheduling again matters: Luigi's worker leaves when none of *its* tasks is pending, and a task another
    worker runs is not pending.  In the source phase, the process that did not get ``CatalogSource`` would leave
    while the catalog is still being written and schedule the build without the catalog's scenes, so it could
    never be handed one of them (the other process then ran every scene)."""
    import luigi.interface

    while True:
        result = luigi.interface.build(roots, detailed_summary=True)
        if all(t.complete() for t in roots):
            return True
        if result.worker._stop_requesting_work:
            return None
        if not any(_blocked_by_other_worker(result, t) for t in roots):
            return False
        time.sleep(_wait_interval())


def _wait_interval() -> float:
    from luigi.worker import worker

    return float(worker().wait_interval)


def main(argv: list[str] | None = None) -> int:
    return serve(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
