"""What the live progress display costs a build (issue 22.1: target under 2 % of the build time).

The demo build (``--size``, default small) is run with ``--PipelineConfig-progress true`` and ``false``,
interleaved (on, off, off, on, on, off, ...: each pair in alternating order), each in a fresh data folder,
through the real command line (``python -m luigi --module pipeline BuildRelease``, local scheduler,
``luigi.cfg``'s 2 workers), stdout a pipe (the plain-line mode of CI logs; ``--interval`` sets
``progress_interval``, default the configuration's).  Wall time is from process start to exit; CPU time is
user + system of the process and the forked workers it waited for (``os.wait4``).  It prints every run with
the 1-minute load average, the medians, the overhead of progress on over off, and MET / NOT MET (median wall
time overhead < 2 %).  It refuses to run on a busy machine (1-minute load >= ``--max-load``) unless ``--force``.

    python bench/bench_progress.py                 # 3 runs each
    python bench/bench_progress.py --runs 5 --interval 0.5
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 2.0

SOURCES = """
sources:
  - name: demo
    kind: demo
    license: CC0-1.0 (synthetic)
    attribution: oem-pipeline demo
    options: {{seed: 7, size: {size}}}
"""


def load1() -> float:
    return os.getloadavg()[0]


def one_build(base: Path, progress: bool, args: argparse.Namespace) -> tuple[float, float]:
    """``(wall s, CPU s)`` of one build in a fresh data folder under ``base``."""
    data = base / "data"
    shutil.rmtree(data, ignore_errors=True)
    cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildRelease",
           "--PipelineConfig-data-dir", str(data), "--PipelineConfig-sources-file", str(base / "sources.yaml"),
           "--PipelineConfig-release", "bench", "--PipelineConfig-split-trials", str(args.split_trials),
           "--PipelineConfig-progress", "true" if progress else "false"]
    if args.interval is not None:
        cmd += ["--PipelineConfig-progress-interval", str(args.interval)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(base / "build.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    log.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}):\n{(base / 'build.log').read_text()[-3000:]}")
    if progress and "[progress" not in (base / "build.log").read_text():
        sys.exit("progress was on but printed nothing")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="builds with progress on, and as many off (>= 3)")
    ap.add_argument("--size", default="small", help="demo size (options.size)")
    ap.add_argument("--split-trials", type=int, default=200)
    ap.add_argument("--interval", type=float, default=None, help="progress_interval (default: configuration)")
    ap.add_argument("--max-load", type=float, default=2.5, help="refuse to start at this 1-minute load or more")
    ap.add_argument("--force", action="store_true", help="run even on a busy machine")
    args = ap.parse_args(argv)
    if load1() >= args.max_load and not args.force:
        print(f"NOT RUN: 1-min load average {load1():.2f} >= {args.max_load} (the machine is busy; --force runs)")
        return 2
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        base = Path(tmp)
        (base / "sources.yaml").write_text(SOURCES.format(size=args.size))
        one_build(base, False, args)  # warm-up (page cache, imports), not counted
        for i in range(max(3, args.runs)):
            for progress in ((True, False) if i % 2 == 0 else (False, True)):
                before = load1()
                wall, cpu = one_build(base, progress, args)
                times[progress].append((wall, cpu))
                print(f"run {i + 1} progress {'on ' if progress else 'off'}: wall {wall:6.2f} s  CPU {cpu:6.2f} s  "
                      f"(load1 before {before:.2f}, after {load1():.2f})", flush=True)
    med = {p: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for p, v in times.items()}
    wall_over = 100 * (med[True][0] - med[False][0]) / med[False][0]
    cpu_over = 100 * (med[True][1] - med[False][1]) / med[False][1]
    print(f"median progress on : wall {med[True][0]:.2f} s  CPU {med[True][1]:.2f} s")
    print(f"median progress off: wall {med[False][0]:.2f} s  CPU {med[False][1]:.2f} s")
    print(f"overhead: wall {wall_over:+.2f} %  CPU {cpu_over:+.2f} %  (target wall < {TARGET:.0f} %: "
          f"{'MET' if wall_over < TARGET else 'NOT MET'}; CPU {'MET' if cpu_over < TARGET else 'NOT MET'})")
    print(f"1-min load average at the end: {load1():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
