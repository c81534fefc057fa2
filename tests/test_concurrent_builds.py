"""Two builds started at once on one data folder with local schedulers (two terminals, two CI jobs sharing a
data cache) both finish with valid releases: their common tasks run once, under a lock file each
(``tasks.base``), instead of side by side (before: both generated the demo's raw folder, one replaced it under
the other, and that build failed with "source 'demo' failed ... No such file or directory").
"""
from __future__ import annotations

import subprocess
import sys

from tests.helpers_build import BUILD_TIMEOUT, DEMO_SOURCES, ROOT, luigi_cmd, pipeline_env


def test_two_builds_at_once_on_one_data_folder_both_release(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_SOURCES)
    data = tmp_path / "data"
    procs = {rel: subprocess.Popen(luigi_cmd(data, sources, release=rel, split_trials=20), cwd=ROOT,
                                   env=pipeline_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rel in ("a", "b")}
    logs = {rel: p.communicate(timeout=2 * BUILD_TIMEOUT)[0] for rel, p in procs.items()}
    for rel, p in procs.items():
        assert p.returncode == 0, logs[rel][-4000:]
    for rel in ("a", "b"):
        check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(data / "releases" / rel)],
                               cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
    assert len(list((data / "raw").glob("demo-*"))) == 1  # one raw folder, generated once
    assert any((data / "work" / "locks").glob("FetchSource-*.lock"))
