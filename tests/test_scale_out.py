"""Scale-out on Luigi's central scheduler: worker processes started the same way share the per-scene work.

How users run it (README, "Many machines"; here on 127.0.0.1, a free port and the small demo)::

    LUIGI_CONFIG_PATH=docs/luigi-central.cfg luigid --port 8082 --state-path ... --logdir ...
    # on each machine, as many times as you like, the same data folder (shared storage):
    LUIGI_CONFIG_PATH=docs/luigi-central.cfg python -m tasks.worker --scheduler-host <luigid host> --workers 1

``python -m tasks.worker`` schedules the source phase (fetch, catalog), then the whole build, in which every
per-scene task is a static requirement that each process scheduled itself, so luigid hands it to whichever
worker asks first; each process exits 0 once the release exists.  The tests run the shipped
``docs/luigi-central.cfg`` unchanged (luigid and workers), on a fresh data folder (no catalogs yet):

* two processes of one worker each: both run per-scene tasks (each at least a quarter), no task runs twice, the
  manifest is byte-identical to a local-scheduler build, and a third process afterwards runs nothing;
* two different builds (release and seed) at once on one luigid: the per-scene work is shared (run once), the
  dataset and release tasks are not (different task ids), and both releases are right;
* one of two workers is SIGKILLed while a per-scene task has written part of its output: its partial files are
  temporaries nothing takes for complete, luigid gives the task to the other worker after
  ``worker_disconnect_delay`` + ``retry_delay``, and the release is the same as the local build's.

Task starts and successes are recorded per process by a wrapper module (``--module oem_probe``) that imports
``tasks`` and registers Luigi START / SUCCESS event handlers appending ``event, tag, pid, task id`` to a file.
With ``OEM_PROBE_STALL=tile`` it also stops its process for good right after the first image tile a
``TileScene`` writes (a task killed half-way through its output, deterministically); with
``OEM_PROBE_CATALOG_DELAY=<s>`` every ``CatalogSource`` starts that much later (a slow catalog).
"""
from __future__ import annotations

import collections
import json
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers_build import (
    BUILD_TIMEOUT,
    ROOT,
    free_port,
    incomplete_final_files,
    kill_group,
    pipeline_env,
    reference_build,
    reference_sources,
    release_dir,
    spawn,
    wait_group_gone,
    wait_port,
    worker_cmd,
)

CENTRAL_CFG = ROOT / "docs" / "luigi-central.cfg"
SCENE_TASKS = ("PrepareScene", "TileScene", "LabelScene", "CountSegments")

PROBE = textwrap.dedent('''
    """Logs every task START / SUCCESS of this process to $OEM_PROBE_LOG (and can stall mid-task)."""
    import contextlib
    import os
    import time

    import luigi

    import pipeline.atomic

    _current = {"task": ""}


    def _log(event, task_id):
        line = "%s\\t%s\\t%d\\t%s\\n" % (event, os.environ.get("OEM_PROBE_TAG", "?"), os.getpid(), task_id)
        fd = os.open(os.environ["OEM_PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write() of a short line with O_APPEND: lines never interleave
        finally:
            os.close(fd)


    _atomic_path = pipeline.atomic.atomic_path


    @contextlib.contextmanager
    def _stalling_atomic_path(target, **options):
        with _atomic_path(target, **options) as tmp:
            yield tmp
        if (os.environ.get("OEM_PROBE_STALL") == "tile" and _current["task"].startswith("TileScene")
                and "/images/" in str(target)):
            _log("STALL", _current["task"])
            time.sleep(3600)  # one tile written, the rest of the task's output not: wait to be killed


    pipeline.atomic.atomic_path = _stalling_atomic_path  # before the tiling module binds it

    import tasks  # noqa: E402,F401  (registers the tasks)


    @luigi.Task.event_handler(luigi.Event.START)
    def _on_start(task):
        _current["task"] = task.task_id
        _log("START", task.task_id)
        if task.task_family == "CatalogSource":  # a slow catalog: the other processes poll while it runs
            time.sleep(float(os.environ.get("OEM_PROBE_CATALOG_DELAY", "0")))


    @luigi.Task.event_handler(luigi.Event.SUCCESS)
    def _on_success(task):
        _log("SUCCESS", task.task_id)
''')


def _luigid_cmd() -> list[str]:
    exe = shutil.which("luigid", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; sys.exit(luigid())"]


@pytest.fixture
def luigid(tmp_path):
    """A central scheduler on 127.0.0.1:<free port> with the shipped central config; stopped afterwards."""
    port = free_port()
    logdir = tmp_path / "luigid"
    logdir.mkdir()
    proc = subprocess.Popen(
        _luigid_cmd() + ["--address", "127.0.0.1", "--port", str(port),
                         "--state-path", str(logdir / "state.pickle"), "--logdir", str(logdir)],
        cwd=tmp_path, env=pipeline_env(config=CENTRAL_CFG), stdout=open(logdir / "stdout.txt", "wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Cluster:
    """Worker processes of one test: started with the probe module, tagged, their events in one file."""

    def __init__(self, tmp_path: Path, port: int):
        self.tmp, self.port = tmp_path, port
        (tmp_path / "oem_probe.py").write_text(PROBE)
        self.events = tmp_path / "events.tsv"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, tag: str, cmd: list[str], **env: str) -> subprocess.Popen:
        cmd = cmd + ["--module", "oem_probe", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(self.port)]
        environ = pipeline_env(pythonpath=[self.tmp], config=CENTRAL_CFG, OEM_PROBE_TAG=tag,
                               OEM_PROBE_LOG=str(self.events), **env)
        self.procs[tag] = spawn(cmd, env=environ, log=self.tmp / f"worker-{tag}.log")
        return self.procs[tag]

    def log(self, tag: str) -> str:
        return (self.tmp / f"worker-{tag}.log").read_text(errors="replace")

    def wait(self, tags, timeout: float = BUILD_TIMEOUT) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        codes = {}
        try:
            for tag in tags:
                codes[tag] = self.procs[tag].wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            self.stop()
        return codes

    def report(self, codes: dict[str, int]) -> str:
        return "\n".join(f"--- {t}: exit {c}\n{self.log(t)[-3000:]}" for t, c in codes.items())

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                kill_group(p)

    def records(self) -> list[tuple[str, str, str]]:
        """``(event, tag, task id)`` in the order they happened."""
        if not self.events.exists():
            return []
        return [(e, tag, task) for e, tag, _pid, task in
                (line.split("\t") for line in self.events.read_text().splitlines())]

    def successes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = collections.defaultdict(list)
        for event, tag, task in self.records():
            if event == "SUCCESS":
                out[task].append(tag)
        return out


def _family(task_id: str) -> str:
    return task_id.split("_", 1)[0]


def _assert_release_like_reference(data: Path, tmp_path_factory, release: str = "test") -> None:
    reference = release_dir(reference_build(tmp_path_factory)) / "manifest.json"
    assert (release_dir(data, release) / "manifest.json").read_bytes() == reference.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release_dir(data, release))],
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_worker_processes_share_the_per_scene_tasks(tmp_path, tmp_path_factory, luigid):
    sources = reference_sources(tmp_path_factory)
    data = tmp_path / "data"
    cluster = Cluster(tmp_path, luigid)
    t0 = time.monotonic()
    for tag in ("A", "B"):
        # the catalog takes 3 s: the process that is not writing it must wait for it in the source phase, or it
        # schedules the build without the catalog's scenes and luigid can never hand it one of them
        cluster.start(tag, worker_cmd(data, sources, "--workers", "1"), OEM_PROBE_CATALOG_DELAY="3")
    codes = cluster.wait(("A", "B"))
    wall = time.monotonic() - t0
    assert codes == {"A": 0, "B": 0}, cluster.report(codes)

    successes = cluster.successes()
    twice = {t: tags for t, tags in successes.items() if len(tags) != 1}
    assert not twice, f"tasks run more than once: {twice}"
    starts = collections.defaultdict(set)
    for event, tag, task in cluster.records():
        if event == "START":
            starts[task].add(tag)
    assert all(len(tags) == 1 for tags in starts.values()), "a task was started by both processes"
    scene = {t: tags[0] for t, tags in successes.items() if _family(t) in SCENE_TASKS}
    per_process = collections.Counter(scene.values())
    print(f"\nluigid, 2 processes x 1 worker: {len(successes)} tasks in {wall:.1f} s; per-scene tasks per process "
          f"{dict(per_process)} of {len(scene)}; all tasks per process "
          f"{dict(collections.Counter(tags[0] for tags in successes.values()))}")
    assert len(scene) == 4 * 14  # the small demo: 14 scenes x (prepare, tile, label, count)
    assert min(per_process.get("A", 0), per_process.get("B", 0)) >= len(scene) / 4, per_process
    _assert_release_like_reference(data, tmp_path_factory)

    # one more worker process afterwards finds the release built and runs nothing
    cluster.procs.clear()
    cluster.start("C", worker_cmd(data, sources, "--workers", "1"))
    assert cluster.wait(("C",)) == {"C": 0}, cluster.log("C")[-3000:]
    assert not [r for r in cluster.records() if r[1] == "C"]


def test_two_builds_of_different_configs_share_one_luigid(tmp_path, tmp_path_factory, luigid):
    """``test`` (seed 42) through ``python -m tasks.worker`` and ``other`` (seed 7) through the plain
    ``luigi --module pipeline BuildRelease`` line, at once, in one data folder, on one luigid."""
    sources = reference_sources(tmp_path_factory)
    data = tmp_path / "data"
    cluster = Cluster(tmp_path, luigid)
    cluster.start("X", worker_cmd(data, sources, "--workers", "1"))
    cluster.start("Y", [sys.executable, "-m", "luigi", "BuildRelease", "--workers", "1", "--no-lock",
                        "--PipelineConfig-data-dir", str(data), "--PipelineConfig-sources-file", str(sources),
                        "--PipelineConfig-release", "other", "--PipelineConfig-seed", "7",
                        "--PipelineConfig-split-trials", "200"])
    codes = cluster.wait(("X", "Y"))
    assert codes == {"X": 0, "Y": 0}, cluster.report(codes)

    successes = cluster.successes()
    assert not {t: tags for t, tags in successes.items() if len(tags) != 1}, "a task ran twice"
    by_family = collections.defaultdict(set)
    for task in successes:
        by_family[_family(task)].add(task)
    assert len(by_family["BuildRelease"]) == 2 and len(by_family["SplitDataset"]) == 2  # one per build
    assert len(by_family["AssembleTiles"]) == 1 and len(by_family["TileScene"]) == 14  # shared, run once
    _assert_release_like_reference(data, tmp_path_factory)
    other = json.loads((release_dir(data, "other") / "manifest.json").read_text())
    ref = json.loads((release_dir(data) / "manifest.json").read_text())
    assert other["release"] == "other" and other["created_with"]["seed"] == 7
    assert other["created_with"]["split"]["seed"] == 7
    assert {im["key"]: im["sha256_image"] for im in other["images"]} == {
        im["key"]: im["sha256_image"] for im in ref["images"]}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release_dir(data, "other"))],
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_killed_worker_task_is_retried_by_another_worker(tmp_path, tmp_path_factory, luigid):
    sources = reference_sources(tmp_path_factory)
    data = tmp_path / "data"
    cluster = Cluster(tmp_path, luigid)
    victim = cluster.start("A", worker_cmd(data, sources, "--workers", "1"), OEM_PROBE_STALL="tile")
    cluster.start("B", worker_cmd(data, sources, "--workers", "1"))
    deadline = time.monotonic() + BUILD_TIMEOUT
    stalled = None
    try:
        while stalled is None and time.monotonic() < deadline and cluster.procs["B"].poll() is None:
            stalled = next((task for event, tag, task in cluster.records() if event == "STALL"), None)
            time.sleep(0.05)
        assert stalled, "worker A never ran a TileScene:\n" + cluster.log("A")[-3000:]
        kill_group(victim)  # SIGKILL, mid-task: one image tile written, no tiles.json
        wait_group_gone(victim.pid)
        partial = incomplete_final_files(data, reference=reference_build(tmp_path_factory))
        assert not partial, f"partial files under final names after the kill: {partial}"
        codes = cluster.wait(("B",), timeout=BUILD_TIMEOUT + 60)
    finally:
        cluster.stop()
    assert codes == {"B": 0}, cluster.log("B")[-3000:]
    records = cluster.records()
    assert ("START", "A", stalled) in records and ("SUCCESS", "A", stalled) not in records
    assert ("SUCCESS", "B", stalled) in records, "the killed worker's task was not retried by the other one"
    assert not {t: tags for t, tags in cluster.successes().items() if len(tags) != 1}, "a task ran twice"
    _assert_release_like_reference(data, tmp_path_factory)
    assert not incomplete_final_files(data, reference=reference_build(tmp_path_factory))


def _readme_worker_command() -> tuple[dict[str, str], list[str]]:
    """The README's worker command line: its environment assignments and its arguments after the module."""
    readme = (ROOT / "README.md").read_text()
    lines = [ln.strip() for ln in readme.splitlines()
             if ln.startswith("LUIGI_CONFIG_PATH=") and "tasks.worker" in ln and "--scheduler-host" in ln]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    env = {}
    while "=" in words[0]:
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    assert words[:3] == ["python", "-m", "tasks.worker"], words
    return env, words[3:]


def test_readme_worker_command_line_is_accepted():
    import luigi.configuration
    import luigi.interface
    from luigi.cmdline_parser import CmdlineParser

    import tasks  # noqa: F401  (registers BuildRelease)

    env, argv = _readme_worker_command()
    cfg = ROOT / env["LUIGI_CONFIG_PATH"]
    assert cfg.resolve() == CENTRAL_CFG.resolve()
    parser = luigi.configuration.get_config()
    saved = list(parser._config_paths)
    parser.add_config_path(str(cfg))
    try:
        with CmdlineParser.global_instance(["BuildRelease", *argv]):
            core = luigi.interface.core()
            assert core.local_scheduler is False
            assert core.scheduler_host == "LUIGID_HOST"
            assert core.workers == 1
    except SystemExit as exc:  # argparse: unrecognized arguments
        pytest.fail(f"luigi rejects the README's worker command line (exit {exc.code})")
    finally:
        parser._config_paths[:] = saved
        parser.reload()


def test_retry_settings_are_shipped():
    """The central config states the scheduler's retry and disconnect settings the kill test relies on."""
    import configparser

    conf = configparser.ConfigParser()
    conf.read(CENTRAL_CFG)
    assert float(conf["scheduler"]["worker_disconnect_delay"]) <= 30
    assert float(conf["scheduler"]["retry_delay"]) <= 30
    assert int(conf["scheduler"]["retry_count"]) >= 1
    assert conf["scheduler"].getboolean("prune_on_get_work")
    assert conf["worker"].getboolean("keep_alive")
    assert _kill_test_budget() < BUILD_TIMEOUT


def _kill_test_budget() -> float:
    import configparser

    conf = configparser.ConfigParser()
    conf.read(CENTRAL_CFG)
    return float(conf["scheduler"]["worker_disconnect_delay"]) + float(conf["scheduler"]["retry_delay"])



def test_a_worker_with_other_settings_for_the_same_release_is_refused(tmp_path, tmp_path_factory, luigid):
    """A worker started with other settings (or other code or library versions) for a release another worker is
    building on the same luigid would share no work with it, and would end as if it had built the release the
    other one wrote first; ``python -m tasks.worker`` refuses to join, naming the parameters that differ."""
    from tasks.worker import rival_builds

    sources = reference_sources(tmp_path_factory)
    data = tmp_path / "data"
    cluster = Cluster(tmp_path, luigid)
    cluster.start("A", worker_cmd(data, sources, "--workers", "1"), OEM_PROBE_STALL="tile")
    deadline = time.monotonic() + BUILD_TIMEOUT
    try:
        while time.monotonic() < deadline and not any(e == "STALL" for e, _, _ in cluster.records()):
            time.sleep(0.05)  # A is in its second pass: its BuildRelease is pending on luigid
        assert any(e == "STALL" for e, _, _ in cluster.records()), cluster.log("A")[-3000:]
        other = cluster.start("B", worker_cmd(data, sources, "--workers", "1", "--PipelineConfig-max-nodata-fraction",
                                              "0.2"))
        code = other.wait(timeout=120)
    finally:
        cluster.stop()
    out = cluster.log("B")
    assert code == 1, out[-3000:]
    assert "ERROR: cannot build: another worker on this scheduler builds release test (BuildRelease_" in out, out
    assert "with other settings: max_nodata_fraction 0.05 (this worker: 0.2). " in out and "Traceback" not in out, \
        out[-3000:]
    assert not any(tag == "B" for _, tag, _ in cluster.records())  # it ran nothing

    class Root:
        release, task_id = "test", "BuildRelease_mine"

        @staticmethod
        def to_str_params(only_significant=True):
            return {"release": "test", "seed": "42"}

    found = {"PENDING": {"BuildRelease_other": {"name": "BuildRelease", "params": {"release": "test", "seed": "7"}},
                         "BuildRelease_mine": {"name": "BuildRelease", "params": {"release": "test", "seed": "42"}},
                         "BuildRelease_v2": {"name": "BuildRelease", "params": {"release": "v2", "seed": "7"}}},
             "DONE": {"BuildRelease_old": {"name": "BuildRelease", "params": {"release": "test", "seed": "1"}}}}
    assert [w.split(" with other settings: ")[1].split(". ")[0] for w in rival_builds(found, Root)] == [
        "seed 7 (this worker: 42)"]
