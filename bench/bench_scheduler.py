"""Luigi scheduling overhead on a synthetic graph shaped like a 5000-image release.

The graph mirrors the pipeline's (docs/ARCHITECTURE.md): per source ``Fetch -> Catalog``; per scene
``Prepare -> Tile -> Label -> Segments`` plus a per-scene ``Todo`` export (5 tasks a scene); then the dataset
tasks ``Assemble -> Select -> Split -> Stats -> Release``.  Every ``run()`` writes a few bytes, so the time is
Luigi's: scheduling, ``complete()`` checks, forking a process per task (``workers > 1``) and, with ``luigid``,
the HTTP round trips.  600 scenes x ~8.5 tiles is a 5000-image release.

Two graph shapes: ``static`` (the dataset tasks ``require`` every scene chain, as ``tasks.dataset.AssembleTiles``
does for sources whose catalogs exist) and ``dynamic`` (``Assemble`` yields the scene chains from ``run()``, as
``AssembleTiles`` does for sources catalogued after scheduling: Luigi re-runs it once they are done).  The real
task classes are measured by ``bench/bench_rebuild.py`` and ``bench/bench_scaleout.py``.  Each shape is run
with the local scheduler and with a ``luigid`` on 127.0.0.1 (a fresh one per run), 2 workers each, fresh
output folders, and printed as a table.

    python bench/bench_scheduler.py                 # 600 scenes, both shapes, both schedulers
    python bench/bench_scheduler.py --scenes 100 --shapes static --schedulers local
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import luigi

OUT = Path(os.environ.get("BENCH_SCHED_OUT", tempfile.gettempdir()))


class BenchConfig(luigi.Config):
    root = luigi.Parameter(default="")
    scenes = luigi.IntParameter(default=600)
    dynamic = luigi.BoolParameter(default=False)


def _path(*parts: str) -> str:
    return str(Path(BenchConfig().root, *parts))


class _Tiny(luigi.Task):
    def run(self):
        with self.output().open("w") as f:  # LocalTarget writes atomically (temp file + rename)
            f.write(self.task_id + "\n")


class BFetch(_Tiny):
    def output(self):
        return luigi.LocalTarget(_path("raw", "fetch.json"))


class BCatalog(_Tiny):
    def requires(self):
        return BFetch()

    def output(self):
        return luigi.LocalTarget(_path("catalog.json"))


class _SceneTask(_Tiny):
    scene = luigi.IntParameter()
    step = ""

    def output(self):
        return luigi.LocalTarget(_path("scenes", f"{self.scene:05d}", f"{self.step}.json"))


class BPrepare(_SceneTask):
    step = "plan"

    def requires(self):
        return BCatalog()


class BTile(_SceneTask):
    step = "tiles"

    def requires(self):
        return BPrepare(scene=self.scene)


class BLabel(_SceneTask):
    step = "labels"

    def requires(self):
        return BTile(scene=self.scene)


class BSegments(_SceneTask):
    step = "segments"

    def requires(self):
        return BLabel(scene=self.scene)


class BTodo(_SceneTask):
    step = "todo"

    def requires(self):
        return BSegments(scene=self.scene)


class BAssemble(_Tiny):
    def requires(self):
        if BenchConfig().dynamic:
            return BCatalog()
        return [BTodo(scene=i) for i in range(BenchConfig().scenes)]

    def output(self):
        return luigi.LocalTarget(_path("pool.json"))

    def run(self):
        if BenchConfig().dynamic:
            yield [BTodo(scene=i) for i in range(BenchConfig().scenes)]
        with self.output().open("w") as f:
            f.write("pool\n")


class BSelect(_Tiny):
    def requires(self):
        return BAssemble()

    def output(self):
        return luigi.LocalTarget(_path("selection.json"))


class BSplit(_Tiny):
    def requires(self):
        return BSelect()

    def output(self):
        return luigi.LocalTarget(_path("split.json"))


class BStats(_Tiny):
    def requires(self):
        return BSplit()

    def output(self):
        return luigi.LocalTarget(_path("stats.json"))


class BRelease(_Tiny):
    def requires(self):
        return [BStats(), BAssemble(), BFetch()]

    def output(self):
        return luigi.LocalTarget(_path("release", "manifest.json"))


def n_tasks(scenes: int) -> int:
    return 2 + 5 * scenes + 5


# --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_luigid(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    exe = shutil.which("luigid", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; sys.exit(luigid())"]
    proc = subprocess.Popen(cmd + ["--address", "127.0.0.1", "--port", str(port), "--state-path",
                                   str(tmp / "luigid.state"), "--logdir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("luigid did not start")


def _one_run(scenes: int, dynamic: bool, scheduler: str, workers: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sched-", dir=OUT))
    cfg = luigi.configuration.get_config()
    cfg.set("BenchConfig", "root", str(tmp / "out"))
    cfg.set("BenchConfig", "scenes", str(scenes))
    cfg.set("BenchConfig", "dynamic", str(dynamic).lower())
    luigid = None
    kwargs = {"workers": workers, "log_level": "ERROR", "detailed_summary": True}
    try:
        if scheduler == "luigid":
            luigid, port = _start_luigid(tmp)
            kwargs.update(local_scheduler=False, scheduler_host="127.0.0.1", scheduler_port=port)
        else:
            kwargs.update(local_scheduler=True)
        t0 = time.perf_counter()
        result = luigi.build([BRelease()], **kwargs)
        wall = time.perf_counter() - t0
        ok = result.status.name if hasattr(result, "status") else str(result)
        done = sum(1 for _ in (tmp / "out").rglob("*.json"))
        return {"scheduler": scheduler, "graph": "dynamic" if dynamic else "static", "tasks": n_tasks(scenes),
                "outputs": done, "wall": wall, "status": ok}
    finally:
        if luigid is not None:
            luigid.terminate()
            luigid.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=600, help="scenes (5 tasks each); 600 ~ a 5000-image release")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shapes", default="static,dynamic")
    ap.add_argument("--schedulers", default="local,luigid")
    args = ap.parse_args(argv)
    rows = []
    for shape in args.shapes.split(","):
        for scheduler in args.schedulers.split(","):
            row = _one_run(args.scenes, shape == "dynamic", scheduler, args.workers)
            rows.append(row)
            print(f"  ... {scheduler}/{row['graph']}: {row['wall']:.1f} s ({row['status']})", file=sys.stderr,
                  flush=True)
    print(f"\nLuigi {luigi.__version__}, {args.workers} workers, {args.scenes} scenes x 5 per-scene tasks "
          f"+ 7 source/dataset tasks, trivial run() bodies")
    print(f"{'scheduler':<10} {'graph':<8} {'tasks':>6} {'outputs':>8} {'wall s':>8} {'ms/task':>8}  status")
    for r in rows:
        print(f"{r['scheduler']:<10} {r['graph']:<8} {r['tasks']:>6} {r['outputs']:>8} {r['wall']:>8.1f} "
              f"{1000 * r['wall'] / r['tasks']:>8.1f}  {r['status']}")
    bad = [r for r in rows if r["outputs"] != r["tasks"]]
    if bad:
        print(f"incomplete runs: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
