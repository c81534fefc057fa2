"""A scene whose decoding kills the process (a native crash in GDAL / OpenCV, the out-of-memory killer) costs
only itself: a ``rejects.csv`` row naming the file and the signal, the rest of the release built and valid.

The crashes are real signals (a SIGSEGV from reading address 0 through ``ctypes``, a SIGKILL) raised in the
pipeline's own reading functions by a probe module loaded with ``--module`` (a real decoder crash needs a GDAL
bug to reproduce).  Without containment each one ends the task's process, and with it the build.  A crash in a
task's own code (not a source's file) still fails the build, with Python's traceback of where on stderr.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from tests.helpers_build import BUILD_TIMEOUT, DEMO_SOURCES, ROOT, luigi_cmd, pipeline_env, release_dir

TOKYO = "demo~local-tokyo-tokyo_1~r000_c000"
PROBE = textwrap.dedent('''
    import ctypes
    import os
    import signal

    import pipeline.labels.labelling as labelling
    import pipeline.labels.landcover as landcover
    import pipeline.raster.plan as plan
    import pipeline.raster.tiling as tiling
    import tasks  # noqa: F401
    import pipeline.dataset.stats.write as stats_write

    def segfault():
        ctypes.string_at(0)  # reads address 0: SIGSEGV

    def killed():
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does

    def wrap(module, name, crash, when):
        real = getattr(module, name)
        def wrapper(*args, **kwargs):
            if when(*args):
                crash()
            return real(*args, **kwargs)
        setattr(module, name, wrapper)

    def scene_named(part):
        return lambda scene, *rest: part in scene.scene_id

    wrap(plan, "plan_scene", segfault, scene_named("lima"))
    wrap(tiling, "write_scene_tiles", killed, scene_named("khartoum"))
    wrap(landcover, "write_label_tiles", segfault, scene_named("vienna"))
    wrap(labelling, "building_footprints", segfault, scene_named("vienna"))  # the same file, read for the export
    wrap(labelling, "import_annotation", segfault, lambda path, grid: "crash" in path.read_text())
    if os.environ.get("CRASH_STATS"):
        wrap(stats_write, "write_stats", segfault, lambda *a: True)
''')


def _build(tmp_path, **env):
    (tmp_path / "crash_probe.py").write_text(PROBE)
    done = tmp_path / "data" / "annotation" / "done"  # a completed annotation whose import crashes
    done.mkdir(parents=True, exist_ok=True)
    (done / f"{TOKYO}.geojson").write_text('{"crash": true}')
    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_SOURCES)
    cmd = luigi_cmd(tmp_path / "data", sources, module="crash_probe", split_trials=20)
    return subprocess.run(cmd, cwd=ROOT, env=pipeline_env(pythonpath=[tmp_path], **env), capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    proc = _build(tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return tmp, proc


def test_scenes_that_crash_their_reader_are_rejects_and_the_release_is_valid(crashed):
    tmp, proc = crashed
    rel = release_dir(tmp / "data")
    with open(rel / "rejects.csv", newline="") as f:
        rows = {(r["scene_id"], r["stage"]): r for r in csv.DictReader(f)}
    crashes = {k: r for k, r in rows.items() if "process reading it died" in r["reason"]}
    parts = ("lima", "khartoum", "vienna", "tokyo")
    by_scene = {next(p for p in parts if p in scene): (stage, r) for (scene, stage), r in crashes.items()}
    assert len(crashes) == 4 and set(by_scene) == set(parts), rows
    for part, stage, signame in (("lima", "prepare", "SIGSEGV"), ("khartoum", "tile", "SIGKILL"),
                                 ("vienna", "annotation", "SIGSEGV"), ("tokyo", "annotation", "SIGSEGV")):
        got, row = by_scene[part]
        assert got == stage and signame in row["reason"], row
        assert row["file"] and not row["file"].startswith("/"), row  # the file, relative to the source's folder
    assert by_scene["tokyo"][1]["file"] == f"done/{TOKYO}.geojson"  # the completed annotation that crashed
    assert "Fatal Python error" not in proc.stderr  # a contained crash is a row, not a fatal error on the console
    manifest = json.loads((rel / "manifest.json").read_text())
    regions = {im["region"] for im in manifest["images"]}
    assert "lima" not in regions and "khartoum" not in regions
    assert {"tokyo", "austin", "paris"} <= regions  # the other scenes are released
    tokyo = next(im for im in manifest["images"] if im["key"] == TOKYO)
    assert sum(tokyo["class_pixels"].values()) > 0  # released with the label of its source
    with open(rel / "pending.csv", newline="") as f:  # vienna's tiles stay, awaiting labels (like a bad label file)
        todo = [r["todo"] for r in csv.DictReader(f) if r["region"] == "vienna"]
    assert todo and all(todo)  # ... exported for annotation without buildings: the crashing file is not read again
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(rel)], cwd=ROOT, env=pipeline_env(),
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_crash_in_a_tasks_own_code_fails_the_build_and_says_where(tmp_path):
    proc = _build(tmp_path, CRASH_STATS="1")
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Fatal Python error: Segmentation fault" in err
    trace = err[err.index("Fatal Python error"):]
    assert "crash_probe.py" in trace and "tasks/dataset.py" in trace  # the Python stack down to the crash
    assert "ComputeStats" in err and "died unexpectedly with exit code -11" in err  # Luigi's line: the task
    assert not (release_dir(tmp_path / "data") / "manifest.json").exists()
