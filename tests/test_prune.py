"""``python -m pipeline prune``: what a data folder holds that no build of the chosen options uses is listed,
removed only with ``--delete``, and the build of those options still runs no per-scene task afterwards.

One data folder, two local sources: release v1 from both, v2 with one of them taken out of the sources file
(its raw folder, catalog, scene outputs and pool share, and v1's dataset records, are then superseded; while it
is listed but disabled they are kept), temporaries an interrupted build left (an old one and a fresh one), and a
build holding a task lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.prune import TEMP_AGE, freed_bytes, held_locks, superseded
from pipeline.release.validate.report import validate_release
from tests.helpers_build import ROOT, SPLIT_TRIALS, luigi_cmd, pipeline_env, run_luigi
from tests.test_bad_input import _scene


def _sources(path: Path, folders: dict[str, tuple[Path, bool]]) -> Path:
    path.write_text("sources:\n" + "".join(
        f"  - name: {name}\n    kind: local\n    location: {folder}\n    license: CC BY 4.0\n"
        f"    attribution: test suite\n    enabled: {'true' if on else 'false'}\n"
        for name, (folder, on) in folders.items()))
    return path


def _tree(data: Path) -> set[str]:
    return {p.relative_to(data).as_posix() for p in data.rglob("*")}


def _prune(data: Path, sources: Path, release: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "prune", *extra, "--PipelineConfig-data-dir", str(data),
         "--PipelineConfig-sources-file", str(sources), "--PipelineConfig-release", release,
         "--PipelineConfig-split-trials", str(SPLIT_TRIALS)],  # as the builds (tasks.taken refuses others)
        cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("prune")
    for i in range(2):
        _scene(base / "a", f"a{i}", i)
    _scene(base / "b", "b0", 5)
    data = base / "data"
    both = _sources(base / "both.yaml", {"a": (base / "a", True), "b": (base / "b", True)})
    only_a = _sources(base / "only_a.yaml", {"a": (base / "a", True)})
    for release, sources in (("v1", both), ("v2", only_a)):
        proc = run_luigi(luigi_cmd(data, sources, release=release))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return base, data, only_a


def test_prune_lists_then_deletes_what_the_build_does_not_use(folder):
    base, data, only_a = folder
    old = time.time() - TEMP_AGE - 60
    (data / "work" / "dataset" / ".tmp-pool-x.json-1").write_text("{")  # an interrupted build's, long ago
    os.utime(data / "work" / "dataset" / ".tmp-pool-x.json-1", (old, old))
    (data / "work" / "dataset" / ".tmp-pool-y.json-2").write_text("{")  # maybe a running build's: kept
    stale_release = data / "releases" / ".tmp-v9-abc"
    (stale_release / "vienna").mkdir(parents=True)
    os.utime(stale_release, (old, old))
    before = _tree(data)

    # b listed but disabled is "not now": its download, catalog and scene work are kept
    b_off = _sources(base / "b_off.yaml", {"a": (base / "a", True), "b": (base / "b", False)})
    kept = _prune(data, b_off, "v2")
    assert kept.returncode == 0 and "/b-" not in kept.stdout and "scenes/b" not in kept.stdout, kept.stdout

    listed = _prune(data, only_a, "v2")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert _tree(data) == before  # a listing removes nothing
    report = json.loads(_prune(data, only_a, "v2", "--json").stdout)
    gone = {Path(e["path"]).relative_to(data).as_posix() for e in report["entries"]}
    assert report["bytes"] == sum(e["bytes"] for e in report["entries"]) > 0 and not report["removed"]
    b_raw = {p.relative_to(data).as_posix() for p in (data / "raw").glob("b-*")}
    b_catalog = {p.relative_to(data).as_posix() for p in (data / "catalog").glob("b-*")}
    assert b_raw and b_catalog and b_raw | b_catalog | {"work/scenes/b"} <= gone, listed.stdout
    assert {"work/dataset/.tmp-pool-x.json-1", "releases/.tmp-v9-abc"} <= gone
    assert not any(g.startswith(("work/scenes/a", "raw/a-", "catalog/a-", "releases/v", "work/history",
                                 "work/release-tiles", "work/locks")) for g in gone), gone
    assert ".tmp-pool-y.json-2" not in listed.stdout
    assert any(g.startswith("work/dataset/source-b-") for g in gone)  # b's pool share
    assert "Run again with --delete to remove them." in listed.stdout

    removed = _prune(data, only_a, "v2", "--delete")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not any((data / g).exists() for g in gone)
    assert (data / "work" / "dataset" / ".tmp-pool-y.json-2").exists()
    for release in ("v1", "v2"):  # releases hold hard links: nothing of theirs went
        assert validate_release(data / "releases" / release) == []

    again = _prune(data, only_a, "v2")
    assert again.stdout.splitlines()[-1].startswith("0 entries (nothing)"), again.stdout
    # what the build of these options uses is all there: a new release of them runs no source or scene task
    proc = run_luigi(luigi_cmd(data, only_a, release="v3"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = next(line for line in proc.stdout.splitlines() if line.startswith("Build summary:"))
    for family in ("FetchSource", "CatalogSource", "PrepareScene", "TileScene", "LabelScene", "CountSegments"):
        assert family not in ran, ran
    assert validate_release(data / "releases" / "v3") == []

    # a release deleted: the tile cache still holds a link of each of its tiles, so deleting it freed nothing
    # of the tiles no other release ships; prune lists those (and its tile index) and frees them
    shutil.rmtree(data / "releases" / "v1")
    report = json.loads(_prune(data, only_a, "v3", "--json").stdout)
    tiles = [e for e in report["entries"] if e["kind"] == "unreleased tile"]
    cogs = [Path(e["path"]) for e in tiles if e["path"].endswith(".tif")]
    assert cogs and all(e["bytes"] > 0 for e in tiles if e["path"].endswith(".tif"))
    assert all("/scenes/b/" in json.loads(p.with_suffix(".json").read_text())["path"] for p in cogs)  # b's only
    assert [e["kind"] for e in report["entries"]].count("tile index") == 1
    removed = _prune(data, only_a, "v3", "--delete")
    assert removed.returncode == 0 and not any(p.exists() for p in cogs), removed.stdout
    for release in ("v2", "v3"):
        assert validate_release(data / "releases" / release) == []
    proc = run_luigi(luigi_cmd(data, only_a, release="v4"))  # continues v3 from the cache it left
    assert proc.returncode == 0 and validate_release(data / "releases" / "v4") == [], proc.stdout[-3000:]


def test_prune_refuses_while_a_build_holds_a_lock(folder):
    base, data, only_a = folder
    lock = data / "work" / "locks" / "TileScene-0123456789ab.lock"
    before = _tree(data)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert held_locks(lock.parent) == [lock]
        proc = _prune(data, only_a, "v4", "--delete")  # the newest (v1, which v2 continued, is gone)
    finally:
        os.close(fd)
    assert proc.returncode == 1 and "a build is running" in proc.stdout and lock.name in proc.stdout, proc.stdout
    assert _tree(data) == before | {"work/locks/" + lock.name}
    assert held_locks(lock.parent) == []


def test_a_source_named_like_the_start_of_another_keeps_only_its_own_entries(tmp_path):
    from tasks.prune import _named

    for name in ("spacenet-0123456789ab", "spacenet-vegas-0123456789ab", "spacenet-0123456789ab.json",
                 "spacenet-old"):
        (tmp_path / name).write_text("")
    assert sorted(p.name for p in _named(tmp_path, "spacenet")) == ["spacenet-0123456789ab",
                                                                    "spacenet-0123456789ab.json"]


def test_superseded_keeps_outputs_their_folders_and_what_lies_inside(tmp_path):
    data = tmp_path
    scene = data / "work" / "scenes" / "s" / "x"
    (scene / "tiles-new" / "images").mkdir(parents=True)
    (scene / "tiles-new" / "tiles.json").write_text("{}")
    (scene / "tiles-old" / "images").mkdir(parents=True)
    (scene / "tiles-old" / "images" / "r0.tif").write_bytes(b"x" * 100)
    (scene / "plan-new.json").write_text("{}")
    (scene / "plan-new.json.partial").write_text("")
    (data / "work" / "scenes" / "gone" / "y").mkdir(parents=True)
    (data / "raw" / "s-new" / "files").mkdir(parents=True)
    (data / "raw" / "s-new" / "fetch.json").write_text("{}")
    needed = [scene / "tiles-new" / "tiles.json", scene / "plan-new.json", scene / "plan-new.json.partial",
              data / "raw" / "s-new" / "fetch.json"]
    found = superseded(data, needed)
    assert [(k, p.relative_to(data).as_posix()) for k, p in found] == [
        ("scene outputs", "work/scenes/gone"), ("scene output", "work/scenes/s/x/tiles-old")]
    assert freed_bytes(scene / "tiles-old") == 100
    os.link(scene / "tiles-old" / "images" / "r0.tif", tmp_path / "linked.tif")  # in a release, say
    assert freed_bytes(scene / "tiles-old") == 0
