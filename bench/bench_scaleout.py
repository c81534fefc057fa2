"""Scale-out on Luigi's central scheduler: a build by 1 worker process vs 2 (issue 19): the full demo, or the
scale build's small variant (``--source scale-small``).

Both runs use a fresh ``luigid`` on 127.0.0.1 and a fresh data folder, the shipped ``docs/luigi-central.cfg``,
and the README's worker command (``python -m tasks.worker --workers 1``), once in one process and once in two
processes started together; wall time is from the first start to the last exit.  A probe module logs every
task's start and end per process, so the table also shows how many per-scene tasks each process ran and how
long each phase took (source phase, scene phase, dataset + release: only the scene phase can be spread).

Both runs are repeated with each worker process confined to one thread (``OEM_TILE_THREADS=1``,
``OMP_NUM_THREADS=1``, ...): with the defaults one process already keeps both cores of a 2-core machine busy
while it tiles (two tiles at a time, GDAL threads), so a second process on the same cores can only fill the gaps;
one thread per process is what one worker per core on more machines amounts to.

Then the luigid overhead per task with the real task classes: the same build of a small synthetic source whose
tasks do almost nothing (``bench/synthetic_source.py``, tile size 64) with the local scheduler and with luigid
(plain ``luigi --module pipeline BuildRelease --workers 1``, one process each); (luigid - local) / tasks.

    python bench/bench_scaleout.py                       # full demo (~180 tiles) + overhead on 60 scenes
    python bench/bench_scaleout.py --source small --overhead-scenes 30
    python bench/bench_scaleout.py --source scale-small   # the scale build's ~300-candidate variant, 12 regions

Prints the 1-min load average with every wall time (the machine may be shared) and MET / NOT MET for the
target speed-up of 1.6x with 2 processes on 2 cores.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
CENTRAL = ROOT / "docs" / "luigi-central.cfg"
SCENE = {"PrepareScene", "TileScene", "LabelScene", "CountSegments"}
SOURCE = {"FetchSource", "CatalogSource"}

PROBE = textwrap.dedent('''
    import os
    import time

    import luigi

    import tasks  # noqa: F401


    def _log(event, task):
        line = "%s\\t%s\\t%d\\t%s\\t%.4f\\n" % (event, os.environ.get("OEM_PROBE_TAG", "?"), os.getpid(),
                                             task.task_family, time.time())
        fd = os.open(os.environ["OEM_PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


    luigi.Task.event_handler(luigi.Event.START)(lambda task: _log("START", task))
    luigi.Task.event_handler(luigi.Event.SUCCESS)(lambda task: _log("SUCCESS", task))
''')


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Luigid:
    def __init__(self, work: Path):
        self.port = _free_port()
        exe = shutil.which("luigid", path=str(Path(sys.executable).parent))
        cmd = [exe] if exe else [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; luigid()"]
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(CENTRAL))
        self.proc = subprocess.Popen(cmd + ["--address", "127.0.0.1", "--port", str(self.port), "--state-path",
                                            str(work / f"luigid-{self.port}.state"), "--logdir", str(work)],
                                     cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("luigid did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: ``--one-thread``: each worker process confined to one thread of its own (tiling threads, OpenMP / torch)
ONE_THREAD = {"OEM_TILE_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _env(work: Path, log: Path, tag: str, central: bool, extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]), OEM_PROBE_LOG=str(log),
               OEM_PROBE_TAG=tag, **(extra or {}))
    env.pop("LUIGI_CONFIG_PATH", None)
    if central:
        env["LUIGI_CONFIG_PATH"] = str(CENTRAL)
    return env


def run_processes(work: Path, label: str, cmds: list[list[str]], central: bool = True,
                  extra_env: dict | None = None) -> dict:
    """Start ``cmds`` together (each its own process), wait for all; wall time and per-process task log."""
    log = work / f"events-{label}.tsv"
    load = _load()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(work, log, chr(ord("A") + i), central, extra_env),
                              stdout=open(work / f"{label}-{i}.log", "wb"), stderr=subprocess.STDOUT)
             for i, cmd in enumerate(cmds)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"{label}: exit codes {codes}; logs in {work}")
    events = [line.split("\t") for line in log.read_text().splitlines()]
    print(f"  ... {label}: {wall:.1f} s (load {load} -> {_load()})", file=sys.stderr, flush=True)
    return {"wall": wall, "events": events, "load": load, "t0": t0 + time.time() - time.perf_counter()}


def _spans(run: dict) -> dict[str, float]:
    """Start-to-end span (s) of the source phase, the scene phase and the dataset + release tasks."""
    stamps: dict[str, list[float]] = collections.defaultdict(list)
    for _ev, _tag, _pid, fam, t in run["events"]:
        phase = "source" if fam in SOURCE else "scene" if fam in SCENE else "dataset+release"
        stamps[phase].append(float(t))
    return {p: max(v) - min(v) for p, v in stamps.items() if v}


def _phases(run: dict) -> str:
    return ", ".join(f"{p} {s:.0f} s" for p, s in _spans(run).items())


def _per_process(run: dict) -> dict[str, int]:
    return dict(sorted(collections.Counter(tag for ev, tag, _pid, fam, _t in run["events"]
                                           if ev == "SUCCESS" and fam in SCENE).items()))


def sources_file(work: Path, source: str, cache: Path) -> Path:
    """The sources file of the measured build: the demo (``full``/``small``: scenes generated by its fetch, one
    serial task) or the scale build's ``small`` variant (``scale-small``: a local folder generated beforehand
    into ``cache`` by :mod:`oem_demo.scale`, untimed, so fetching is a listing and the scenes are the work)."""
    path = work / f"sources-{source}.yaml"
    if source == "scale-small":
        from bench_scale import _source, _sources_file

        root, _info = _source(None, "small", cache, 2)
        return _sources_file(path, {"scale-small": root})
    path.write_text(textwrap.dedent(f"""\
        sources:
          - name: demo
            kind: demo
            license: CC0-1.0 (synthetic)
            attribution: Synthetic demo scenes generated by oem-pipeline
            options: {{seed: 7, size: {source}}}
        """))
    return path


def demo_speedup(work: Path, sources: Path, label: str = "", extra_env: dict | None = None) -> tuple[dict, dict]:
    runs = {}
    for n in (1, 2):
        luigid = Luigid(work)
        try:
            cmd = [sys.executable, "-m", "tasks.worker", "--module", "oem_probe", "--scheduler-host", "127.0.0.1",
                   "--scheduler-port", str(luigid.port), "--workers", "1",
                   "--PipelineConfig-data-dir", str(work / f"data-{n}{label}"),
                   "--PipelineConfig-sources-file", str(sources)]
            runs[n] = run_processes(work, f"{n}x1{label}", [cmd] * n, extra_env=extra_env)
        finally:
            luigid.stop()
    return runs[1], runs[2]


def luigid_overhead(work: Path, scenes: int) -> tuple[dict, dict, int]:
    from synthetic_source import sources_yaml, write_source

    info = write_source(work / "tiny", scenes=scenes, regions=max(1, scenes // 6), images=scenes * 6)
    (work / "tiny.yaml").write_text(sources_yaml([("tiny", work / "tiny")]))
    runs = {}
    for mode in ("local", "luigid"):
        luigid = Luigid(work) if mode == "luigid" else None
        try:
            cmd = [sys.executable, "-m", "luigi", "--module", "oem_probe", "BuildRelease", "--workers", "1",
                   "--PipelineConfig-data-dir", str(work / f"data-{mode}"),
                   "--PipelineConfig-sources-file", str(work / "tiny.yaml"), "--PipelineConfig-tile-size", "64"]
            if luigid is not None:
                cmd += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port)]
            runs[mode] = run_processes(work, f"overhead-{mode}", [cmd], central=luigid is not None)
        finally:
            if luigid is not None:
                luigid.stop()
    return runs["local"], runs["luigid"], info["tiles"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", "--size", default="full", choices=("full", "small", "scale-small"),
                    help="what to build: the demo (full/small) or the scale build's small variant (generated once "
                         "into --cache, untimed)")
    ap.add_argument("--cache", default=os.environ.get("OEM_BENCH_CACHE", "/tmp/oem-bench-cache"))
    ap.add_argument("--overhead-scenes", type=int, default=60)
    ap.add_argument("--keep", help="work folder to use and keep (default: temporary, removed)")
    ap.add_argument("--no-one-thread", action="store_true", help="skip the runs with one thread per process")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "oem_probe.py").write_text(PROBE)
    try:
        sources = sources_file(work, args.source, Path(args.cache))
        one, two = demo_speedup(work, sources)
        single = None if args.no_one_thread else demo_speedup(work, sources, "-1t", ONE_THREAD)
        local, central, tiles = luigid_overhead(work, args.overhead_scenes)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    speedup = one["wall"] / two["wall"]
    n_tasks = sum(1 for ev, *_ in local["events"] if ev == "SUCCESS")
    per_task = (central["wall"] - local["wall"]) / max(1, n_tasks)
    what = "scale build, small variant" if args.source == "scale-small" else f"{args.source} demo"
    print(f"\nbench_scaleout: {what}, luigid on 127.0.0.1, docs/luigi-central.cfg, python -m tasks.worker "
          f"--workers 1 per process; {os.cpu_count()} CPUs")
    print(f"{'run':<34} {'wall s':>8}  load(1 min)  per-scene tasks per process   phases (first start to last end)")
    rows = [("1 process x 1 worker", one), ("2 processes x 1 worker", two)]
    if single is not None:
        rows += [("1 process x 1 worker, 1 thread", single[0]), ("2 processes x 1 worker, 1 thread each", single[1])]
    for name, r in rows:
        print(f"{name:<34} {r['wall']:>8.1f}  {r['load']:>11}  {str(_per_process(r)):<28} {_phases(r)}")
    scene = _spans(one)["scene"] / _spans(two)["scene"]
    print(f"speed-up 2 processes / 1 process: {speedup:.2f}x (scene phase {scene:.2f}x)")
    if single is not None:
        s1 = single[0]["wall"] / single[1]["wall"]
        scene1 = _spans(single[0])["scene"] / _spans(single[1])["scene"]
        print(f"speed-up with one thread per process: {s1:.2f}x (scene phase {scene1:.2f}x)")
    print(f"\nluigid overhead, real task classes: {args.overhead_scenes} synthetic scenes ({tiles} tiles of 64 px), "
          f"{n_tasks} tasks, one process --workers 1")
    print(f"{'scheduler':<24} {'wall s':>8}  load(1 min)  ms/task")
    for name, r in (("local", local), ("luigid", central)):
        print(f"{name:<24} {r['wall']:>8.1f}  {r['load']:>11}  {1000 * r['wall'] / max(1, n_tasks):>7.1f}")
    print(f"luigid overhead per task: {1000 * per_task:.1f} ms")
    print(f"{'MET' if speedup >= 1.6 else 'NOT MET':<8} 2 processes x 1 worker >= 1.6x 1 process x 1 worker: "
          f"{speedup:.2f}x (1-min load average {two['load']} at the start of the 2-process run, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
