"""``python -m pipeline plan [--json] [luigi options]``: what a build with the same options would do, without
running or writing anything.

The root task is made the way ``luigi --module pipeline BuildRelease`` makes it (``CmdlineParser``), its
derived parameters computed read-only (:func:`tasks.plan.read_only`: the annotation hash cache and the
stored index are left as they are).  The task graph is then walked as Luigi's scheduler walks it: a task
that is ``complete()`` is not run and its requirements are not visited; every other task would run, and its
requirements are visited.  ``complete()`` only looks at files (outputs, partial markers), so the walk is
cheap.  What the walk cannot see is said so: the per-scene tasks of a source whose catalog does not exist
yet are yielded by ``AssembleTiles`` at run time (their scenes are unknown until the source is fetched).
The rest (why a source is fetched, regions, release delta) comes from :mod:`pipeline.release.buildplan`.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.progress import STAGES
from pipeline.release.buildplan import (
    digest_siblings,
    fetch_reason,
    format_plan,
    load_json,
    newest,
    regions_touched,
    release_delta,
)

#: Task families that run once per scene.
SCENE_FAMILIES = ("PrepareScene", "TileScene", "LabelScene", "CountSegments")


def walk(root) -> tuple[list, list]:
    """``(to_run, complete)``: the tasks a build of ``root`` would run, and the complete ones it would meet."""
    to_run: list = []
    complete: list = []

    def expand(task) -> bool:
        done = task.complete()
        (complete if done else to_run).append(task)
        return not done

    for _ in graph(root, expand):
        pass
    return to_run, complete


def graph(root, expand: Callable[[Any], bool]) -> Iterator:
    """Every task of ``root``'s graph once, depth first; a task's requirements are visited when ``expand(task)``
    (as Luigi's scheduler visits those of an incomplete task; ``prune`` visits all)."""
    import luigi

    seen: set[str] = set()
    stack = [root]
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        yield task
        if expand(task):
            stack.extend(luigi.task.flatten(task.requires()))


def _fetch_entry(root, source: list, src) -> dict[str, Any]:
    from pipeline.sources.object_store import source_digest
    from tasks.config import data_dir
    from tasks.plan import limits_digest
    from tasks.sources import FetchSource
    from tasks.versions import code_version

    name, raw, _ = source
    task = FetchSource(source_name=name, raw=raw)
    if task.complete():
        return {"action": "none", "why": "up to date"}
    if Path(task.output().path).is_file():
        return {"action": "refetch", "why": "the last fetch failed (the source is fetched again)"}
    others = [p / "fetch.json" for p in digest_siblings(data_dir() / "raw", name) if (p / "fetch.json").is_file()]
    earlier = load_json(newest(others)) if others else None
    entry = {"kind": src.kind, "location": src.location, "license": src.license, "attribution": src.attribution}
    why = fetch_reason(earlier if isinstance(earlier, dict) else None, source_digest(src), entry,
                       code_version("fetch"), source_digest(src, labels=False, pixels=False), limits_digest(src),
                       source_digest(src, labels=False))
    return {"action": "fetch" if why == "new" else "refetch", "why": why}


def _catalog_entry(source: list, fetch: dict, config) -> dict[str, Any]:
    from pipeline.sources.options import selection
    from tasks.config import data_dir
    from tasks.sources import CatalogSource

    name, raw, catalog = source
    task = CatalogSource(source_name=name, raw=raw, catalog=catalog)
    if task.complete():
        return {"action": "none", "why": "up to date"}
    if fetch["action"] != "none":
        return {"action": "list", "why": "after the fetch"}
    earlier = digest_siblings(data_dir() / "catalog", name, ".json")
    if not earlier:
        return {"action": "list", "why": "new"}
    try:  # the newest earlier catalog of the source: what it kept its scenes by (options.licences)
        chosen = json.loads(max(earlier, key=lambda p: p.stat().st_mtime).read_text()).get("select", {})
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen is not None and chosen != selection(config.options):
        return {"action": "list", "why": "options.licences changed (nothing is fetched again; the scenes it keeps "
                                         "and were processed before are not processed again)"}
    return {"action": "list", "why": "code changed (catalog code or a library it uses)"}


def _sources(root, to_run: list) -> tuple[list[dict], list[str]]:
    from tasks.config import catalog_scenes, cfg
    from tasks.plan import verified_sources
    from tasks.sources import CatalogSource

    configs = {s.name: s for s in verified_sources(cfg().sources_file, root.sources)}
    scenes_to_run: dict[str, set[str]] = {}
    for t in to_run:
        if t.task_family in SCENE_FAMILIES:
            scenes_to_run.setdefault(t.source_name, set()).add(t.scene_id)
    out, unknown = [], []
    for source in root.sources:
        name, _, catalog = source
        fetch = _fetch_entry(root, source, configs[name])
        cat = _catalog_entry(source, fetch, configs[name])
        if not any(t.task_family in ("FetchSource", "CatalogSource") and t.source_name == name for t in to_run):
            # the build does not reach them (e.g. the release exists): it runs neither, whatever changed
            if fetch["action"] != "none":
                fetch = {"action": "none", "why": f"not needed; otherwise {fetch['action']}: {fetch['why']}"}
            if cat["action"] != "none":
                cat = {"action": "none", "why": "not needed"}
        known = CatalogSource(source_name=name, raw=source[1], catalog=catalog).complete()
        if not known:
            unknown.append(name)
        out.append({"name": name, "fetch": fetch, "catalog": cat,
                    "scenes": len(catalog_scenes(name, catalog)) if known else None,
                    "scenes_to_process": len(scenes_to_run.get(name, ())) if known else None,
                    "scene_ids_to_process": sorted(scenes_to_run.get(name, ())) if known else None})
    return out, unknown


def _dataset_files(root, to_run: list) -> dict[str, Any]:
    """The pool and split records the build would reuse (None when it would make them), and the newest pool
    of an earlier build (for the regions of scenes it processed)."""
    from tasks.config import work_dir
    from tasks.dataset import AssembleTiles, SplitDataset

    running = {t.task_family for t in to_run}
    pool = root.clone(AssembleTiles)
    split = root.clone(SplitDataset)
    pools = list((work_dir() / "dataset").glob("pool-*.json")) if (work_dir() / "dataset").is_dir() else []
    return {
        "pool": None if "AssembleTiles" in running else load_json(Path(pool.output().path)),
        "split": None if "SplitDataset" in running else load_json(Path(split.output().path)),
        "earlier_pool": load_json(newest(pools)) if pools else None,
        "selection_runs": bool(running & {"SelectTiles", "SplitDataset"}),
    }


def make_plan(argv: list[str]) -> dict[str, Any]:
    """The plan of a build with Luigi's command-line options ``argv`` (as given to ``BuildRelease``)."""
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.dataset.history import load_manifest
    from tasks.config import data_dir, releases_root
    from tasks.plan import previous_folder, read_only

    with CmdlineParser.global_instance(["BuildRelease", *argv]) as parser, read_only():
        root = parser.get_task_obj()
        to_run, complete = walk(root)
        sources, unknown = _sources(root, to_run)
        files = _dataset_files(root, to_run)
        folder = previous_folder(releases_root(), root.previous)
        previous = load_manifest(folder) if folder is not None and (folder / "manifest.json").is_file() else None
        exists = root.complete()
        scenes = [(s["name"], sid) for s in sources for sid in (s["scene_ids_to_process"] or [])]
        touched, unknown_scenes = regions_touched(files["earlier_pool"], scenes)
        counts = Counter(t.task_family for t in to_run)
        families = list(dict.fromkeys([*(f for f in _FAMILY_ORDER), *counts]))
        return {
            "release": root.release, "data_dir": str(data_dir()), "previous": root.previous or None,
            "release_exists": exists,
            "sources": sources,
            "sources_unknown": unknown,
            "tasks": {f: counts.get(f, 0) for f in families},
            "tasks_total": sum(counts.values()),
            "stages": {stage: sum(counts.get(f, 0) for f in fams) for stage, fams in STAGES.items()},
            "tasks_unknown": list(SCENE_FAMILIES) if unknown and "SourcePool" in counts else [],
            "tasks_complete": dict(Counter(t.task_family for t in complete)),
            "regions": {"selection_runs": files["selection_runs"], "touched": touched,
                        "unknown_scenes": unknown_scenes},
            "release_delta": release_delta(exists=exists, previous=previous, split=files["split"],
                                           pool=files["pool"], sources=[s["name"] for s in sources]),
        }


_FAMILY_ORDER = ("FetchSource", "CatalogSource", *SCENE_FAMILIES, "SourcePool", "AssembleTiles", "SelectTiles",
                 "ExportAnnotationTodo", "SplitDataset", "ComputeStats", "StageRelease", "BuildRelease")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    takes_build_options(parser)


def takes_build_options(parser: argparse.ArgumentParser) -> None:
    """Let a sub-command's ``parser`` pass every option it does not know on to the build, as given to ``luigi
    --module pipeline BuildRelease`` (``plan``, ``prune``)."""
    parser.epilog = ("Every other option is passed to the build as on the luigi command line, e.g. "
                     "--PipelineConfig-release v0.2.0 --PipelineConfig-data-dir data")
    parser.set_defaults(_extra_options=True)


def answer(name: str, make: Callable[[], tuple[str, int]]) -> int:
    """Print what ``make`` says and return its exit status; a build that cannot be made (a bad sources file,
    setting or release name) is ``<name>: <why>``, status 1."""
    from pipeline.errors import PipelineError

    try:
        text, code = make()
    except PipelineError as exc:
        print(f"{name}: {exc}")
        return 1
    print(text)
    return code


def run(args: argparse.Namespace) -> int:
    def make() -> tuple[str, int]:
        plan = make_plan(list(args.extra))
        return (json.dumps(plan, indent=1) if args.json else format_plan(plan)), 0

    return answer("plan", make)
