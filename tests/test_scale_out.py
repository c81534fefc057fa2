"""Scale-out on Luigi's central scheduler: two ``luigi`` worker processes share one ``luigid``.

How users run this (what the test does, on 127.0.0.1 and a free port)::

    luigid --port 8082 --state-path /tmp/luigid/state --logdir /tmp/luigid    # or --background --pidfile ...
    # docs/luigi-central.cfg (shipped): local_scheduler = false, worker keep_alive = true,
    # retcode already_running = 0 and not_run = 0
    # on each machine / in each terminal, same data folder (a shared file system):
    LUIGI_CONFIG_PATH=docs/luigi-central.cfg luigi --module pipeline BuildRelease \
        --scheduler-host <luigid host> --scheduler-port 8082 --workers 2 --no-lock

Exit codes: ``luigi.cfg`` maps "tasks were run by another worker" to 10 and "the root task was not run by this
process" to 25, so with it a process whose work the other one did exits non-zero although the release was
built; ``docs/luigi-central.cfg`` sets both to 0.  A failing task still makes the process that ran it exit 30
(``task_failed``), and ``python -m pipeline validate`` checks the result.  ``--no-lock`` is needed only when
two identical command lines run on the same machine (Luigi's pid lock would make the second exit at once).  The
scheduler hands every task to one worker; the outputs are written
atomically, so the release is the same as a single local-scheduler build.  Per-scene tasks are dynamic
dependencies of ``AssembleTiles`` (one per catalogued scene), so only the process that runs
``AssembleTiles`` can run them; the other one waits (keep-alive) and takes whatever static tasks are left.

Task starts are recorded by a wrapper module (``--module oem_probe``) that imports ``tasks`` and
registers Luigi START / SUCCESS event handlers appending ``event, process tag, pid, task id`` to a file.
"""
from __future__ import annotations

import collections
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
    luigi_cmd,
    pipeline_env,
    reference_build,
    reference_sources,
    release_dir,
    run_luigi,
    spawn,
    wait_port,
)

PROBE = textwrap.dedent('''
    """Imports the pipeline's tasks and logs every task START / SUCCESS of this process to $OEM_PROBE_LOG."""
    import os

    import luigi

    import tasks  # noqa: F401  (registers the tasks)


    def _log(event, task):
        line = "%s\\t%s\\t%d\\t%s\\n" % (event, os.environ.get("OEM_PROBE_TAG", "?"), os.getpid(), task.task_id)
        fd = os.open(os.environ["OEM_PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write() of a short line with O_APPEND: lines never interleave
        finally:
            os.close(fd)


    @luigi.Task.event_handler(luigi.Event.START)
    def _on_start(task):
        _log("START", task)


    @luigi.Task.event_handler(luigi.Event.SUCCESS)
    def _on_success(task):
        _log("SUCCESS", task)
''')

#: The config the README tells users to put on LUIGI_CONFIG_PATH for a central scheduler, plus a shorter
#: worker wait so the test is quick.
CENTRAL_CFG = (ROOT / "docs" / "luigi-central.cfg").read_text().replace(
    "[worker]\n", "[worker]\nwait_interval = 0.2\n", 1)



def _luigid_cmd() -> list[str]:
    exe = shutil.which("luigid", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; sys.exit(luigid())"]


@pytest.fixture
def luigid(tmp_path):
    """A central scheduler on 127.0.0.1:<free port>, state and logs in tmp_path; stopped afterwards."""
    port = free_port()
    logdir = tmp_path / "luigid"
    logdir.mkdir()
    proc = subprocess.Popen(
        _luigid_cmd() + ["--address", "127.0.0.1", "--port", str(port),
                         "--state-path", str(logdir / "state.pickle"), "--logdir", str(logdir)],
        cwd=tmp_path, stdout=open(logdir / "stdout.txt", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
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


def test_two_workers_on_luigid_build_the_same_release_once(tmp_path, tmp_path_factory, luigid):
    reference = release_dir(reference_build(tmp_path_factory)) / "manifest.json"
    sources = reference_sources(tmp_path_factory)
    (tmp_path / "oem_probe.py").write_text(PROBE)
    config = tmp_path / "central.cfg"
    config.write_text(CENTRAL_CFG)
    events = tmp_path / "events.tsv"
    data = tmp_path / "data"
    cmd = luigi_cmd(data, sources, "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid),
                    "--workers", "2", "--no-lock", module="oem_probe")

    procs = {}
    for tag in ("A", "B"):
        env = pipeline_env(pythonpath=[tmp_path], config=config, OEM_PROBE_TAG=tag, OEM_PROBE_LOG=str(events))
        procs[tag] = spawn(cmd, env=env, log=tmp_path / f"worker-{tag}.log")
    t0 = time.monotonic()
    try:
        codes = {tag: p.wait(timeout=BUILD_TIMEOUT) for tag, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.monotonic() - t0
    logs = {tag: (tmp_path / f"worker-{tag}.log").read_text(errors="replace") for tag in procs}
    assert codes == {"A": 0, "B": 0}, "\n\n".join(f"--- worker {t} exit {codes[t]}\n{logs[t][-3000:]}" for t in logs)

    starts: dict[str, list[str]] = collections.defaultdict(list)
    successes: dict[str, list[str]] = collections.defaultdict(list)
    for line in events.read_text().splitlines():
        event, tag, _pid, task_id = line.split("\t")
        (starts if event == "START" else successes)[task_id].append(tag)
    assert successes, "no task ran: the probe module logged nothing"
    assert any(t.startswith("BuildRelease") for t in successes)
    twice = {t: tags for t, tags in successes.items() if len(tags) != 1}
    assert not twice, f"tasks completed more than once: {twice}"
    assert set(starts) == set(successes)
    for task_id, tags in starts.items():
        # a task with dynamic dependencies (AssembleTiles) is started again by the same worker once they are
        # done; a task started by both processes would have run twice
        assert len(set(tags)) == 1, f"{task_id} was started by both worker processes: {tags}"
    ran = collections.Counter(tags[0] for tags in successes.values())
    print(f"\ncentral scheduler: {len(successes)} tasks in {wall:.1f} s, per process {dict(ran)}")

    built = release_dir(data) / "manifest.json"
    assert built.read_bytes() == reference.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release_dir(data))],
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # a third run against the same scheduler finds everything done and runs nothing
    env = pipeline_env(pythonpath=[tmp_path], config=config, OEM_PROBE_TAG="C", OEM_PROBE_LOG=str(events))
    again = run_luigi(cmd, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not any(line.split("\t")[1] == "C" for line in events.read_text().splitlines())


def _readme_central_command() -> tuple[dict[str, str], list[str]]:
    """The README's central-scheduler command: its environment assignments and its luigi arguments."""
    readme = (ROOT / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if "BuildRelease" in ln and "--scheduler-host" in ln]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    env = {}
    while "=" in words[0]:
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    assert words[0] == "luigi", words
    return env, words[1:]


def test_readme_central_scheduler_command_line_is_accepted():
    import luigi.configuration
    import luigi.interface
    from luigi.cmdline_parser import CmdlineParser

    import tasks  # noqa: F401  (registers BuildRelease)

    env, argv = _readme_central_command()
    cfg = ROOT / env["LUIGI_CONFIG_PATH"]
    assert cfg.is_file(), cfg
    parser = luigi.configuration.get_config()
    saved = list(parser._config_paths)
    parser.add_config_path(str(cfg))
    try:
        with CmdlineParser.global_instance(argv):
            core = luigi.interface.core()
            assert core.local_scheduler is False
            assert core.scheduler_host == "localhost"
            assert core.workers == 2
    except SystemExit as exc:  # argparse: unrecognized arguments
        pytest.fail(f"luigi rejects the README's command line (exit {exc.code})")
    finally:
        parser._config_paths[:] = saved
        parser.reload()
