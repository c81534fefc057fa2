"""Crash safety: a build SIGKILLed at any point resumes to the same release, with no partial file taken
for a complete one.

One data folder, one ``luigi --module pipeline BuildRelease`` (local scheduler, 2 forked workers, Luigi's pid
lock on) killed with its whole process group (``os.killpg(SIGKILL)``) at three points in turn, then run to
completion:

* mid-fetch: while the demo generator fills ``data/raw/demo-<digest>/.tmp-files-*``;
* mid-tiling: once the first scene tile (``.../scenes/<source>-<digest>/<scene>/tiles-<digest>/images/*.tif`` or
  its ``.tmp-*``) appears;
* mid-release: while ``data/releases/.tmp-<release>-*`` exists (the release is written beside its final
  name, validated, then renamed).

After every kill no file under a final name may be empty or unreadable (JSON that does not parse, a GeoTIFF
that cannot be read in full); ``.tmp-*`` leftovers are allowed.  The final ``manifest.json`` must be
byte-identical to an uninterrupted build's, ``python -m pipeline validate`` must exit 0 and the release must
hold no ``.tmp-*`` entry.  A stale Luigi pid lock of a killed run must not block the next one.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers_build import (
    BUILD_TIMEOUT,
    ROOT,
    incomplete_final_files,
    is_tmp,
    kill_group,
    luigi_cmd,
    pipeline_env,
    reference_build,
    reference_sources,
    release_dir,
    spawn,
    wait_group_gone,
)

POLL = 0.005
#: The whole test (three interrupted runs and the final one) must finish within this many seconds.
GLOBAL_TIMEOUT = 300


def _nonempty_dirs(pattern: str) -> bool:
    for d in glob.glob(pattern):
        try:
            if any(os.scandir(d)):
                return True
        except OSError:  # renamed away between glob and scandir
            pass
    return False


def mid_fetch(data: Path) -> bool:
    return _nonempty_dirs(str(data / "raw" / "*" / ".tmp-files-*"))


def mid_tiling(data: Path) -> bool:
    for d in glob.glob(str(data / "work" / "scenes" / "*" / "*" / "tiles-*" / "images")):
        try:
            if any(e.name.endswith(".tif") or e.name.startswith(".tmp-") for e in os.scandir(d)):
                return True
        except OSError:
            pass
    return False


def mid_release(data: Path) -> bool:
    try:
        return any(e.name.startswith(".tmp-") for e in os.scandir(data / "releases"))
    except OSError:
        return False


def _run_until(cmd: list[str], data: Path, point: Callable[[Path], bool], log: Path, deadline: float) -> bool:
    """Start the build; SIGKILL its process group as soon as ``point(data)`` holds.  True when killed there,
    False when the build ended first."""
    proc = spawn(cmd, env=pipeline_env(), log=log)
    try:
        while time.monotonic() < deadline:
            if point(data):
                kill_group(proc)
                wait_group_gone(proc.pid)
                return True
            if proc.poll() is not None:
                return False
            time.sleep(POLL)
        raise AssertionError(f"{point.__name__} not reached within the global timeout; log:\n"
                             + log.read_text(errors="replace")[-3000:])
    finally:
        if proc.poll() is None:
            kill_group(proc)


def test_build_killed_at_fetch_tiling_and_release_resumes_to_the_same_release(tmp_path, tmp_path_factory):
    ref_data = reference_build(tmp_path_factory)
    sources = reference_sources(tmp_path_factory)
    deadline = time.monotonic() + GLOBAL_TIMEOUT
    data = tmp_path / "data"
    cmd = luigi_cmd(data, sources)
    killed = []
    for n, point in enumerate((mid_fetch, mid_tiling, mid_release)):
        for attempt in range(3):
            log = tmp_path / f"run-{n}-{point.__name__}-{attempt}.log"
            if _run_until(cmd, data, point, log, deadline):
                killed.append(point.__name__)
                break
            # the build finished before the point was seen (only plausible for the short release write):
            # it must have succeeded; drop the release and try again
            assert (release_dir(data) / "manifest.json").is_file(), log.read_text(errors="replace")[-3000:]
            shutil.rmtree(release_dir(data))
        problems = incomplete_final_files(data, reference=ref_data)
        assert not problems, (f"after a SIGKILL {point.__name__}: partial files under final names:\n"
                              + "\n".join(problems))
        if point is not mid_release:
            assert not release_dir(data).exists(), f"a release was published by a build killed {point.__name__}"
        # (killed mid-release, the rename may just have happened while its .tmp-* shell was being removed:
        # then the release is complete, which the checks below verify)
    assert killed == ["mid_fetch", "mid_tiling", "mid_release"], killed

    final = subprocess.run(cmd, cwd=ROOT, env=pipeline_env(), capture_output=True, text=True,
                           timeout=max(10.0, min(BUILD_TIMEOUT, deadline - time.monotonic())))
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    rel = release_dir(data)
    assert (rel / "manifest.json").read_bytes() == (release_dir(ref_data) / "manifest.json").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(rel)], cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [p for p in rel.rglob("*") if is_tmp(p, rel)], "a .tmp-* entry inside the release"
    problems = incomplete_final_files(data, reference=ref_data)
    assert not problems, "\n".join(problems)
    # the leftovers of the killed runs are only .tmp-* entries beside final names
    leftovers = sorted(str(p.relative_to(data)) for p in data.rglob(".tmp-*"))
    print(f"\nkilled {killed}; .tmp-* leftovers after the final run: {leftovers}")
