"""Shared helpers for the tests that drive whole builds through the ``luigi`` command line.

The pipeline is treated as a black box: ``python -m luigi --module pipeline BuildRelease`` in a subprocess,
run from the repository root (so ``luigi.cfg`` is read) with the repository on ``PYTHONPATH`` (so it also
works without ``pip install -e .``).  One uninterrupted reference build of the small demo is made once per
pytest process and shared by the scale-out and crash-safety tests.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEMO_SOURCES = """
sources:
  - name: demo
    kind: demo
    license: CC0-1.0 (synthetic)
    attribution: oem-pipeline demo
    options: {seed: 7, size: small}
"""

def local_sources(path: Path, folders: dict[str, Path], attribution: str = "test suite") -> Path:
    """Write ``path``: a sources file with one ``local`` source (CC BY 4.0) per ``{name: folder}``; ``path``."""
    entries = "".join(f"""
  - name: {name}
    kind: local
    location: {folder}
    license: CC BY 4.0
    attribution: {attribution}
""" for name, folder in folders.items())
    path.write_text("\nsources:" + entries)
    return path


RELEASE = "test"
SPLIT_TRIALS = 200
#: Longest a single build may take before a test gives up (the small demo builds in ~20 s on 2 cores).
BUILD_TIMEOUT = 240


def pipeline_env(*, pythonpath: Sequence[Path] = (), config: Path | None = None, **extra: str) -> dict:
    """The environment of a ``luigi`` subprocess: repository (and ``pythonpath``) importable, optionally an
    extra Luigi config file (``LUIGI_CONFIG_PATH`` is read after ``luigi.cfg``, so it overrides it)."""
    env = dict(os.environ)
    paths = [str(p) for p in pythonpath] + [str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("LUIGI_CONFIG_PATH", None)
    if config is not None:
        env["LUIGI_CONFIG_PATH"] = str(config)
    env.update(extra)
    return env


def luigi_cmd(data_dir: Path, sources: Path, *extra: str, release: str = RELEASE, module: str = "pipeline",
              split_trials: int = SPLIT_TRIALS) -> list[str]:
    """``luigi --module pipeline BuildRelease`` with the data dir, sources file and release of a test."""
    return [
        sys.executable, "-m", "luigi", "--module", module, "BuildRelease",
        "--PipelineConfig-data-dir", str(data_dir),
        "--PipelineConfig-sources-file", str(sources),
        "--PipelineConfig-release", release,
        "--PipelineConfig-split-trials", str(split_trials),
        *extra,
    ]


def worker_cmd(data_dir: Path, sources: Path, *extra: str, release: str = RELEASE, split_trials: int = SPLIT_TRIALS
               ) -> list[str]:
    """``python -m tasks.worker`` (one worker process of a build on luigid) with a test's settings."""
    return [
        sys.executable, "-m", "tasks.worker",
        "--PipelineConfig-data-dir", str(data_dir),
        "--PipelineConfig-sources-file", str(sources),
        "--PipelineConfig-release", release,
        "--PipelineConfig-split-trials", str(split_trials),
        *extra,
    ]


def run_luigi(cmd: list[str], *, env: dict | None = None, timeout: float = BUILD_TIMEOUT
              ) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env or pipeline_env(), capture_output=True, text=True,
                          timeout=timeout)


def spawn(cmd: list[str], *, env: dict | None = None, log: Path, max_address_space: int | None = None
          ) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so it and its forked Luigi workers can be killed at once),
    stdout and stderr to ``log``; ``max_address_space`` (bytes) caps its virtual memory (``RLIMIT_AS``), a
    guard for tests of input that could make a build grow without bound."""
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_address_space, max_address_space))

    fh = open(log, "wb")
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env=env or pipeline_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=limit if max_address_space else None)
    finally:
        fh.close()


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group of ``proc`` (started by :func:`spawn`) and reap ``proc``."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no process of group ``pgid`` is left (forked workers are reaped by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of group {pgid} still alive after SIGKILL")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before port {port} answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answers on 127.0.0.1:{port} after {timeout} s")


def release_dir(data_dir: Path, release: str = RELEASE) -> Path:
    return Path(data_dir) / "releases" / release


_REFERENCE: dict[str, Path] = {}


def reference_build(tmp_path_factory) -> Path:
    """Data dir of one uninterrupted local-scheduler CLI build of the small demo (built once per process)."""
    if "data" not in _REFERENCE:
        base = tmp_path_factory.mktemp("reference")
        sources = base / "sources.yaml"
        sources.write_text(DEMO_SOURCES)
        proc = run_luigi(luigi_cmd(base / "data", sources))
        assert proc.returncode == 0, f"reference build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        assert (release_dir(base / "data") / "manifest.json").is_file()
        _REFERENCE["data"] = base / "data"
        _REFERENCE["sources"] = sources
    return _REFERENCE["data"]


def reference_sources(tmp_path_factory) -> Path:
    reference_build(tmp_path_factory)
    return _REFERENCE["sources"]


def is_tmp(path: Path, root: Path) -> bool:
    """Whether ``path`` is, or lies inside, a ``.tmp-*`` entry (an unfinished atomic write)."""
    return any(part.startswith(".tmp-") for part in path.relative_to(root).parts)


def incomplete_final_files(data_dir: Path, reference: Path | None = None) -> list[str]:
    """Files under their final name (outside ``.tmp-*`` entries) that look partial: empty (unless the same
    file of ``reference`` is empty too), JSON that does not parse, rasters that cannot be read in full."""
    import rasterio

    problems = []
    for p in sorted(Path(data_dir).rglob("*")):
        if not p.is_file() or is_tmp(p, data_dir):
            continue
        rel = p.relative_to(data_dir)
        size = p.stat().st_size
        if size == 0:
            ref = reference / rel if reference is not None else None
            if ref is None or not ref.is_file() or ref.stat().st_size != 0:
                problems.append(f"{rel}: empty")
            continue
        try:
            if p.suffix in (".json", ".geojson"):
                json.loads(p.read_text())
            elif p.suffix in (".tif", ".tiff"):
                with rasterio.open(p) as ds:
                    ds.read()
        except Exception as exc:  # noqa: BLE001  (any failure to read is the finding)
            problems.append(f"{rel}: unreadable: {type(exc).__name__}: {exc}")
    return problems


def run_measured(cmd: list[str], *, env: dict | None = None, timeout: float = BUILD_TIMEOUT, log: Path,
                 max_address_space: int | None = None) -> tuple[int, str, int, float]:
    """Run ``cmd`` like :func:`run_luigi` and measure it: ``(exit code, output, peak RSS in bytes, wall s)``.

    The peak RSS is ``ru_maxrss`` of the process and the descendants it waited for (Luigi's forked workers),
    from ``os.wait4`` of this one child (not mixed with other children of the test process).  Past
    ``timeout`` the process group is killed and the exit code is -9."""
    t0 = time.monotonic()
    proc = spawn(cmd, env=env, log=log, max_address_space=max_address_space)
    status, usage = 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    return proc.returncode, Path(log).read_text(errors="replace"), int(usage.ru_maxrss) * 1024, wall


def build_in_process(base: Path, release: str, *, loopback: bool = False, split_trials: int = 50) -> bool:
    """``BuildRelease`` of ``base/sources.yaml`` into ``base/data`` in this process (local scheduler, one worker);
    ``loopback``: the sources are servers on this machine (allowed for this build only)."""
    import luigi
    import luigi.configuration

    from tasks import BuildRelease

    cfg = luigi.configuration.get_config()
    cfg.set("PipelineConfig", "data_dir", str(base / "data"))
    cfg.set("PipelineConfig", "sources_file", str(base / "sources.yaml"))
    cfg.set("PipelineConfig", "release", release)
    cfg.set("PipelineConfig", "split_trials", str(split_trials))
    if loopback:
        cfg.set("PipelineConfig", "allow_private_networks", "true")
    try:
        return luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
    finally:
        if loopback:
            cfg.remove_option("PipelineConfig", "allow_private_networks")
