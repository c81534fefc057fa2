"""``python -m pipeline prune [--delete] [--json] [luigi options]``: remove what no build with these options uses.

Every output is named by a digest of what made it, so a code change, a library upgrade, a new setting or an
edited source leaves the outputs it supersedes behind (:mod:`pipeline.prune`). This command makes the root task
as ``plan`` does (same options as ``luigi --module pipeline BuildRelease``, derived parameters computed
read-only), walks its whole task graph, complete tasks included, and collects every output (and partial
marker) the build uses; what else lies in the keyed-output folders is listed with the space removing it frees.
Nothing is removed without ``--delete``. It refuses while a build holds a task lock in the data folder.

What it cannot know it keeps: the scene outputs of a source whose catalog does not exist yet (its scenes are
unknown until it is fetched) and the raw folders of a source whose current fetch is not complete (a new raw
folder may be seeded from an earlier one: :mod:`pipeline.sources.rawreuse`).  A source listed in the sources
file but disabled is "not now": its raw folders, catalogs and scene outputs are kept; one no longer listed is
not.
"""
from __future__ import annotations

import argparse
import glob
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any


def needed_outputs(root) -> set[Path]:
    """Every output path and partial marker of the task graph of ``root`` (complete tasks and their
    requirements included), plus the folders kept whole for what the graph cannot show (module docstring)."""
    import luigi

    from pipeline.release.staging import stage_folder
    from pipeline.sources.config import load_sources
    from tasks.config import cfg, data_dir, scene_dir
    from tasks.dataset import SourcePool
    from tasks.preview import graph
    from tasks.release import StageRelease
    from tasks.sources import FetchSource

    out: set[Path] = set()
    for task in graph(root, lambda task: True):
        outputs = [Path(t.path) for t in luigi.task.flatten(task.output()) if isinstance(t, luigi.LocalTarget)]
        out.update(outputs)
        out.update(task.partial_markers())
        if isinstance(task, StageRelease):
            out.update(stage_folder(p) for p in outputs)
        if isinstance(task, SourcePool) and not task.static():
            out.add(scene_dir(task.source_name, "x").parent)  # its scenes are unknown: all of them kept
        if isinstance(task, FetchSource) and not task.complete():
            out.update(_named(data_dir() / "raw", task.source_name))
    for src in load_sources(cfg().sources_file):  # listed but disabled ("not now"): its downloads and work stay
        if not src.enabled:
            out.update([*_named(data_dir() / "raw", src.name), *_named(data_dir() / "catalog", src.name),
                        scene_dir(src.name, "x").parent])
    return out


def _named(folder: Path, source: str) -> list[Path]:
    """The entries of ``folder`` keyed for ``source`` (``<source>-<12 hex digits>[.json]``: not those of a source
    whose name merely starts with it, ``spacenet`` and ``spacenet-vegas``)."""
    pattern = re.compile(re.escape(source) + r"-[0-9a-f]{12}(\.json)?")
    return [p for p in folder.glob(f"{glob.escape(source)}-*") if pattern.fullmatch(p.name)]


#: Entries of one kind listed one per line; the rest are counted.
SHOWN = 10


def prune(argv: list[str], delete: bool, as_json: bool = False) -> tuple[str, int]:
    """The report of pruning the data folder of a build with Luigi's options ``argv`` (``--json``: every entry),
    and the exit status."""
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.prune import freed_bytes, held_locks, remove, superseded
    from tasks.config import data_dir, work_dir
    from tasks.plan import read_only

    with CmdlineParser.global_instance(["BuildRelease", *argv]) as parser, read_only():
        root = parser.get_task_obj()
        held = held_locks(work_dir() / "locks")
        if held:
            return (f"prune: a build is running in {data_dir()} (it holds {held[0].name}): run prune when no build "
                    "is running", 1)
        needed = needed_outputs(root)
        data = data_dir()
        found = superseded(data, needed)
    entries: list[dict[str, Any]] = [{"kind": kind, "path": str(path), "bytes": freed_bytes(path)}
                                     for kind, path in found]
    if delete:
        for _, path in found:
            remove(path)
    report = {"data_dir": str(data), "release": root.release, "kept_outputs": len(needed), "removed": delete,
              "entries": entries, "bytes": sum(e["bytes"] for e in entries)}
    return (json.dumps(report, indent=1) if as_json else _text(report)), 0


def _text(report: dict) -> str:
    """The report for people: at most :data:`SHOWN` entries of each kind, then their count and size."""
    from pipeline.limits import human_bytes

    entries = report["entries"]
    lines = [f"{'Removed' if report['removed'] else 'Would remove'} from {report['data_dir']} (what a build of "
             f"release {report['release']} with these options does not use; its {report['kept_outputs']} outputs "
             "are kept):"]
    kinds = Counter(e["kind"] for e in entries)
    for kind in kinds:
        of_kind = [e for e in entries if e["kind"] == kind]
        lines += [f"  {kind:<15} {human_bytes(e['bytes']):>10}  {e['path']}" for e in of_kind[:SHOWN]]
        if len(of_kind) > SHOWN:
            rest = of_kind[SHOWN:]
            lines.append(f"  {kind:<15} {human_bytes(sum(e['bytes'] for e in rest)):>10}  ... and {len(rest)} more")
    summary = ", ".join(f"{n} {kind}{'s' if n > 1 and not kind.endswith('s') else ''}" for kind, n in kinds.items())
    lines.append(f"{len(entries)} entries ({summary or 'nothing'}), freeing {human_bytes(report['bytes'])} "
                 "(files also linked into a release free nothing)")
    if entries and not report["removed"]:
        lines.append("Run again with --delete to remove them.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tasks.preview import takes_build_options

    parser.add_argument("--delete", action="store_true", help="remove what is listed (without it: list only)")
    parser.add_argument("--json", action="store_true", help="print every entry as JSON")
    takes_build_options(parser)


def run(args: argparse.Namespace) -> int:
    from tasks.preview import answer

    return answer("prune", lambda: prune(list(args.extra), bool(args.delete), bool(args.json)))
