"""Issue 22.1: per-stage progress of a build on the console (pipeline.progress, tasks.progress)."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from pipeline.progress import STAGES, Board, stage_of
from tests.helpers_build import BUILD_TIMEOUT, ROOT, local_sources, luigi_cmd, pipeline_env, run_luigi
from tests.test_bad_input import _scene

LINE = re.compile(r"^\[progress [^\]]+\] (.*)$")


def test_board_counts_rates_and_eta():
    b = Board(start=100.0)
    for i in range(4):
        b.known(f"t{i}", "TileScene")
    b.complete_already("t0", "TileScene")
    b.started("TileScene", 100.0)
    b.finished("t1", "TileScene")
    b.known("f", "FetchSource")
    b.finished("f", "FetchSource", ok=False)
    assert b.counts() == {"fetch": (0, 1), "tile": (2, 4)}
    line = b.line(160.0)  # one tile ran in 60 s: 1.0/min, 2 left
    assert line == "[progress 1m00s] fetch 0/1 (1 failed) | tile 2/4 1.0/min ETA 2m00s", line
    assert stage_of("NotATask") is None and list(STAGES)[0] == "fetch" and list(STAGES)[-1] == "release"


def _stages(line: str) -> dict[str, tuple[int, int]]:
    body = LINE.match(line).group(1)
    out = {}
    for part in body.split(" | "):
        name, frac = part.split()[:2]
        done, total = frac.split("/")
        out[name] = (int(done), int(total))
    return out


def test_non_tty_build_prints_per_stage_lines_ending_at_their_totals(tmp_path):
    local = tmp_path / "upstream"
    for i in range(2):
        _scene(local, f"good_{i}", i)
    local_sources(tmp_path / "sources.yaml", {"folder": local}, "progress suite")
    data = tmp_path / "data"
    cmd = luigi_cmd(data, tmp_path / "sources.yaml", "--PipelineConfig-progress-interval", "0.2", split_trials=20)
    proc = run_luigi(cmd)  # stdout is a pipe: plain lines
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if LINE.match(ln)]
    assert len(lines) >= 2 and "\r" not in proc.stdout, proc.stdout[-3000:]
    last = _stages(lines[-1])
    assert set(last) == set(STAGES), last
    assert all(done == total for done, total in last.values()), lines[-1]
    assert last["tile"] == (2, 2) and last["label"] == (2, 2) and last["fetch"] == (2, 2)
    assert any(_stages(ln) != last for ln in lines[:-1])  # it moved while the build ran
    # quiet on request
    quiet = run_luigi(luigi_cmd(data, tmp_path / "sources.yaml", "--PipelineConfig-progress", "false",
                                release="quiet", split_trials=20))
    assert quiet.returncode == 0 and "[progress" not in quiet.stdout, quiet.stdout[-2000:]


def _run_on_pty(cmd: list[str], timeout: float = BUILD_TIMEOUT) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal (100 columns); ``(exit code, all output)``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=pipeline_env(), stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROW = re.compile(r"^(\w+)\s+\S*\s+(\d+)/(\d+)")


def test_tty_build_draws_a_live_table_that_ends_at_the_totals(tmp_path):
    local = tmp_path / "upstream"
    for i in range(2):
        _scene(local, f"good_{i}", i)
    local_sources(tmp_path / "sources.yaml", {"folder": local}, "progress suite")
    cmd = luigi_cmd(tmp_path / "data", tmp_path / "sources.yaml", "--PipelineConfig-progress-interval", "0.2",
                    split_trials=20)
    code, out = _run_on_pty(cmd)
    assert code == 0, out[-3000:]
    assert "\x1b[" in out and "━" in out, out[-2000:]  # redrawn in place (cursor moves), with bars
    assert not any(LINE.match(ln) for ln in out.splitlines()), "plain lines on a terminal"
    text = ANSI.sub("", out)
    last = text[text.rindex("[progress"):]
    rows = {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in (ROW.match(ln.strip()) for ln in last.splitlines()) if m and m.group(1) in STAGES}
    assert set(rows) == set(STAGES), last
    assert all(d == t for d, t in rows.values()) and rows["tile"] == (2, 2), last
