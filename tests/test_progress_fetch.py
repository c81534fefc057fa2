"""Issue 22.1: download bytes and rate in the progress display, and the same figures on ``luigid``.

A real HTTP server on loopback serves the scene; the build is the ``luigi`` command (console lines) or
``python -m tasks.worker`` against a real ``luigid`` (its HTTP API is read after the build).
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from pipeline.progress import Board, Transfer
from tests.helpers_build import luigi_cmd, pipeline_env, run_luigi, spawn, worker_cmd
from tests.loopback import LoopbackServer
from tests.test_bad_input import _scene
from tests.test_scale_out import CENTRAL_CFG, luigid  # noqa: F401  (the fixture)

LINE = re.compile(r"^\[progress [^\]]+\] (.*)$")
FETCH = re.compile(r"fetch (\d+)/(\d+) ([\d.]+)/([\d.?]+) MB ([\d.]+) MB/s")


def test_transfer_adds_up_files_and_the_board_shows_bytes():
    t = Transfer(now=10.0)
    for done in (0, 400_000, 1_000_000):
        t.update(done, 1_000_000)
    t.update(0, 3_000_000)  # the next file
    t.update(1_000_000, 3_000_000)
    assert (t.done, t.total) == (2_000_000, 4_000_000)
    assert t.text(12.0) == "2.0/4.0 MB 1.0 MB/s"
    b = Board(start=0.0)
    b.known("f1", "FetchSource")
    b.known("f2", "FetchSource")
    b.transfer("f1", 12_400_000, 50_000_000, 2.0)
    b.transfer("f2", 1_000_000, None, 1.0)
    assert b.line(5.0) == "[progress 5s] fetch 0/2 13.4/? MB 7.2 MB/s"
    b.finished("f1", "FetchSource")
    b.transfer("f2", 2_000_000, 2_000_000, 2.0, running=False)
    b.finished("f2", "FetchSource")  # none runs: all bytes over all seconds
    assert b.line(6.0) == "[progress 6s] fetch 2/2 14.4/52.0 MB 3.6 MB/s"


def _http_source(tmp_path: Path, srv: LoopbackServer) -> tuple[Path, int]:
    """A source fetched from ``srv``: a zip archive of one labelled scene and 2 MB of incompressible padding."""
    _scene(tmp_path / "scene", "remote", 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(tmp_path / "scene" / "remote.tif", "remote.tif")
        zf.write(tmp_path / "scene" / "labels" / "remote.tif", "labels/remote.tif")
        zf.writestr("padding.bin", np.random.default_rng(0).bytes(2_000_000))
    payload = buf.getvalue()
    srv.files["/remote.zip"] = payload
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: web
    kind: local
    location: {srv.url("/remote.zip")}
    license: CC BY 4.0
    attribution: progress suite
""")
    return tmp_path / "sources.yaml", len(payload)


def test_console_fetch_row_shows_the_downloaded_bytes(tmp_path):
    with LoopbackServer() as srv:
        sources, size = _http_source(tmp_path, srv)
        proc = run_luigi(luigi_cmd(tmp_path / "data", sources, "--PipelineConfig-progress-interval", "0.2",
                                   "--PipelineConfig-allow-private-networks", "true", split_trials=20))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if LINE.match(ln)]
    m = FETCH.search(lines[-1])
    assert m, lines[-1]
    mb = f"{size / 1e6:.1f}"
    assert (m.group(1), m.group(2), m.group(3), m.group(4)) == ("2", "2", mb, mb), lines[-1]  # fetch + catalog
    assert float(m.group(5)) > 0


def _task_list(port: int, status: str) -> dict:
    query = urllib.parse.quote(json.dumps({"status": status}))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data={query}", timeout=10) as resp:
        return json.loads(resp.read())["response"]


def test_luigid_tasks_carry_the_stage_figures_and_the_fetch_bytes(tmp_path, luigid):  # noqa: F811
    port = luigid
    with LoopbackServer() as srv:
        sources, size = _http_source(tmp_path, srv)
        cmd = worker_cmd(tmp_path / "data", sources, "--PipelineConfig-allow-private-networks", "true",
                         "--PipelineConfig-progress", "false", split_trials=20)
        cmd += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(port)]
        proc = spawn(cmd, env=pipeline_env(config=CENTRAL_CFG), log=tmp_path / "worker.log")
        try:
            code = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    done = _task_list(port, "DONE")
    by_family: dict[str, list[dict]] = {}
    for task in done.values():
        by_family.setdefault(task["name"], []).append(task)
    (fetch,) = by_family["FetchSource"]
    mb = f"{size / 1e6:.1f}"
    # the stage's figures when it started, then its bytes and rate
    assert re.fullmatch(rf"fetch \d/2 \| web: {mb}/{mb} MB [\d.]+ MB/s", fetch["status_message"]), fetch
    assert fetch["progress_percentage"] == 100
    (tile,) = by_family["TileScene"]
    assert re.match(r"tile \d+/1( |$)", tile["status_message"]), tile  # the stage's figures, then its own
    (assemble,) = by_family["AssembleTiles"]
    assert re.match(r"count \d+/\d+.* \| assembling the tile pool$", assemble["status_message"]), assemble
