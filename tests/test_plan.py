"""Issue 22.2: ``python -m pipeline plan`` lists what a build would do, and the build then does exactly that.

Each plan is compared with the tasks the following build runs, counted from Luigi's ``START`` events of an
in-process build with the same options; the data folder is byte-identical before and after every plan.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import luigi
from luigi.event import Event

import tasks  # noqa: F401  (registers the build's tasks)
from tests.helpers_build import ROOT
from tests.test_bad_input import _scene

SCENE_FAMILIES = ("PrepareScene", "TileScene", "LabelScene", "CountSegments")


def _options(data: Path, sources: Path, *extra: str) -> list[str]:
    return ["--PipelineConfig-data-dir", str(data), "--PipelineConfig-sources-file", str(sources),
            "--PipelineConfig-release", "p1", "--PipelineConfig-split-trials", "20",
            "--PipelineConfig-progress", "false", *extra]


def _source(name: str, folder: Path, attribution: str = "plan suite") -> str:
    return f"""
  - name: {name}
    kind: local
    location: {folder}
    license: CC BY 4.0
    attribution: {attribution}
"""


def _snapshot(data: Path) -> dict[str, str]:
    """Every entry under ``data`` with the SHA-256 of each file ("dir" for a folder)."""
    if not data.exists():
        return {}
    return {str(p.relative_to(data)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*"))}


def plan(options: list[str], data: Path) -> dict:
    before = _snapshot(data)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--json", *options], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert _snapshot(data) == before, "plan changed the data folder"
    return json.loads(proc.stdout)


def build(options: list[str]) -> Counter:
    """Run the build in this process (local scheduler, one worker); the tasks it ran, per family (distinct task
    ids: a task with dynamic dependencies, ``AssembleTiles`` on a fresh build, starts again once they are done)."""
    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import Register

    started: dict[str, str] = {}

    def on_start(task):
        started[task.task_id] = task.task_family

    luigi.Task.event_handler(Event.START)(on_start)
    try:
        Register.clear_instance_cache()
        with CmdlineParser.global_instance(["BuildRelease", *options]) as parser:
            ok = luigi.build([parser.get_task_obj()], local_scheduler=True, workers=1, log_level="WARNING")
    finally:
        luigi.Task._event_callbacks[luigi.Task][Event.START].discard(on_start)
    assert ok
    return Counter(started.values())


def assert_plan_matches(p: dict, ran: Counter) -> None:
    """Every family with a known count ran exactly that often; unknown ones (scenes of sources not catalogued
    yet) at least that often."""
    for family, n in p["tasks"].items():
        if family in p["tasks_unknown"]:
            assert ran[family] >= n, (family, n, ran)
        else:
            assert ran[family] == n, (family, n, ran)
    assert set(ran) <= set(p["tasks"]), (ran, p["tasks"])


def test_plan_fresh_build_noop_rebuild_and_changed_tiling(tmp_path):
    up = tmp_path / "upstream"
    for i in range(2):
        _scene(up, f"good_{i}", i)
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:" + _source("folder", up))
    data = tmp_path / "data"
    opts = _options(data, sources)

    fresh = plan(opts, data)
    assert not data.exists()  # nothing written, not even the folder
    (src,) = fresh["sources"]
    assert src["fetch"] == {"action": "fetch", "why": "new"} and src["scenes"] is None
    assert fresh["tasks_unknown"] == list(SCENE_FAMILIES) and fresh["sources_unknown"] == ["folder"]
    ran = build(opts)
    assert_plan_matches(fresh, ran)
    assert ran["TileScene"] == 2 and fresh["tasks"]["BuildRelease"] == 1

    noop = plan(opts, data)
    assert noop["release_exists"] and noop["tasks_total"] == 0 and noop["tasks_unknown"] == []
    assert noop["release_delta"]["added"] == 0 and noop["release_delta"]["removed"] == 0
    assert build(opts) == Counter()

    # another release with other tiling parameters: the catalog exists, so the scenes are known exactly
    opts2 = _options(data, sources, "--PipelineConfig-max-nodata-fraction", "0.2")
    opts2[opts2.index("p1")] = "p2"
    changed = plan(opts2, data)
    (src,) = changed["sources"]
    assert src["fetch"]["action"] == "none" and src["catalog"]["action"] == "none"
    assert src["scenes"] == 2 and src["scenes_to_process"] == 2 and changed["tasks_unknown"] == []
    assert changed["tasks"]["PrepareScene"] == 0 and changed["tasks"]["TileScene"] == 2
    assert changed["regions"]["selection_runs"] and changed["regions"]["unknown_scenes"] == 0
    assert changed["regions"]["touched"], changed["regions"]
    ran = build(opts2)
    assert_plan_matches(changed, ran)
    assert changed["release_delta"]["removed"] == 0


def test_plan_after_adding_a_source_and_after_editing_an_entry(tmp_path):
    up, more = tmp_path / "upstream", tmp_path / "more"
    for i in range(2):
        _scene(up, f"good_{i}", i)
    _scene(more, "extra", 3)
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:" + _source("folder", up))
    data = tmp_path / "data"
    opts = _options(data, sources)
    build(opts)

    sources.write_text("sources:" + _source("folder", up) + _source("more", more))
    opts2 = _options(data, sources)
    opts2[opts2.index("p1")] = "p2"
    added = plan(opts2, data)
    by_name = {s["name"]: s for s in added["sources"]}
    assert by_name["folder"]["fetch"]["action"] == "none" and by_name["folder"]["scenes_to_process"] == 0
    assert by_name["more"]["fetch"] == {"action": "fetch", "why": "new"} and by_name["more"]["scenes"] is None
    assert added["tasks"]["FetchSource"] == 1 and added["tasks_unknown"] == list(SCENE_FAMILIES)
    assert added["previous"] == "p1" and added["release_delta"]["removed"] == 0
    ran = build(opts2)
    assert_plan_matches(added, ran)
    assert ran["TileScene"] == 1  # only the new source's scene

    # an edited entry refetches that source only, and says why
    sources.write_text("sources:" + _source("folder", up, "edited") + _source("more", more))
    opts3 = _options(data, sources)
    opts3[opts3.index("p1")] = "p3"
    edited = plan(opts3, data)
    by_name = {s["name"]: s for s in edited["sources"]}
    why = ("only its licence, attribution, regions, acquisition range or options.licences changed (its files and "
           "scenes' work are reused)")
    assert by_name["folder"]["fetch"] == {"action": "refetch", "why": why}
    assert by_name["more"]["fetch"]["action"] == "none" and by_name["more"]["scenes_to_process"] == 0
    text = subprocess.run([sys.executable, "-m", "pipeline", "plan", *opts3], cwd=ROOT, capture_output=True,
                          text=True, timeout=120).stdout
    assert f"folder: fetch: refetch ({why})" in text and "Tasks to run:" in text, text


def test_fetch_reason_tells_entry_from_code_and_says_when_it_cannot():
    from pipeline.release.buildplan import fetch_reason

    entry = {"kind": "local", "location": "/x", "license": "CC BY 4.0", "attribution": "a"}
    made = {"entry": "e1", "fetch_code": "c1"}
    assert fetch_reason(None, "e1", entry, "c2") == "new"
    assert fetch_reason({"made_by": made}, "e2", entry, "c1") == "entry changed"
    assert fetch_reason({"made_by": made}, "e1", entry, "c2") == "code changed (fetch code c1 -> c2)"
    terms = {"made_by": {**made, "content": "t1"}}  # the same entry but its licence or attribution
    assert fetch_reason(terms, "e2", entry, "c1", "t1").startswith("only its licence, attribution, regions")
    assert fetch_reason(terms, "e2", entry, "c1", "t2") == "entry changed"
    legacy = {**entry, "attribution": "b"}  # a record from before made_by: its entry fields still tell
    assert fetch_reason(legacy, "e1", entry, "c2") == "entry changed (attribution)"
    assert "does not say which" in fetch_reason(dict(entry), "e1", entry, "c2")


def test_release_delta_is_exact_from_a_reused_split_and_bounded_from_a_pool():
    from pipeline.release.buildplan import release_delta

    def img(scene, tile, source="s"):
        return {"source": source, "source_scene_id": scene, "tile": tile, "status": "labelled"}

    previous = {"images": [img("a", "0"), img("a", "1"), img("b", "0", source="gone")]}
    split = {"images": [img("a", "0"), img("a", "1"), img("c", "0")]}
    exact = release_delta(exists=False, previous=previous, split=split, pool=None, sources=["s"])
    assert (exact["added"], exact["removed"], exact["exact"]) == (1, 1, True)
    pool = {"tiles": [img("a", "0"), img("c", "0"), img("c", "1"), {**img("d", "0"), "status": "pending"}]}
    bounded = release_delta(exists=False, previous=previous, split=None, pool=pool, sources=["s"])
    assert bounded["added"] is None and bounded["added_at_most"] == 2 and bounded["removed"] == 1
    assert release_delta(exists=True, previous=previous, split=None, pool=None, sources=[])["added"] == 0
