"""A data folder moved (or copied) elsewhere (:mod:`pipeline.datafolder`).

Work records name files by absolute path, so a release built after moving the folder used to fail half-way
(``StageRelease``: "No such file or directory" for a tile of the old place).  Now the build refuses at once,
naming both places and the command that fixes it; ``python -m pipeline relocate`` rewrites the records, and the
next release reuses every per-scene result.  Another path to the same folder (a symbolic link) is no move.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers_build import ROOT, local_sources, luigi_cmd, pipeline_env, release_dir, run_luigi
from tests.test_bad_input import _scene


def _build(data, sources, release):
    proc = run_luigi(luigi_cmd(data, sources, release=release, split_trials=20))
    out = proc.stdout + proc.stderr
    ran = re.search(r"Build summary: (\d+) tasks ran \(([^)]*)\)", out)
    return proc.returncode, out, dict((n, int(c)) for n, c in re.findall(r"(\w+) (\d+)", ran.group(2))) if ran else {}


def _records_naming(data, text):
    return [p for p in data.rglob("*.json") if text in p.read_text(errors="replace")]


def test_a_moved_data_folder_is_refused_then_relocated_and_reused(tmp_path):
    folder = tmp_path / "src"
    for i in range(3):
        _scene(folder, f"s{i}", i)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    old = tmp_path / "data"
    code, out, ran = _build(old, sources, "v1")
    assert code == 0 and ran.get("PrepareScene") == 3, out[-3000:]
    assert (old / "work" / "location").read_text().strip() == str(old)

    link = tmp_path / "link"  # another path to the same folder: not a move
    link.symlink_to(old)
    code, out, ran = _build(link, sources, "v1")
    assert code == 0 and "already done" in out and not ran, out[-3000:]

    new = tmp_path / "moved"
    link.unlink()
    old.rename(new)
    code, out, ran = _build(new, sources, "v2")
    assert code != 0 and not ran, out[-3000:]
    assert (f"data folder {new} was built in at {old}: its work records name files there; run "
            f"'python -m pipeline relocate {new}'") in out, out[-3000:]
    assert not release_dir(new, "v2").exists()

    proc = subprocess.run([sys.executable, "-m", "pipeline", "relocate", str(new)], cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "they name them here now" in proc.stdout, proc.stdout + proc.stderr
    assert _records_naming(new, str(old) + "/") == []
    code, out, ran = _build(new, sources, "v2")
    assert code == 0, out[-3000:]
    per_scene = {"PrepareScene", "TileScene", "LabelScene", "CountSegments", "FetchSource", "CatalogSource"}
    assert not per_scene & set(ran), ran  # every per-scene result reused
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release_dir(new, "v2"))], cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "valid:" in proc.stdout, proc.stdout + proc.stderr


def test_relocate_rewrites_paths_that_start_in_the_old_place_only(tmp_path):
    """A path that merely contains the old place's letters (a source folder /mnt/data/... when the data folder was
    /data) is not rewritten; rerunning relocate changes nothing more; a folder moved inside its old place is
    refused (its rewritten paths would match again)."""
    from pipeline.datafolder import relocate, remember_location
    from pipeline.errors import ConfigError

    old, new = tmp_path / "data", tmp_path / "moved"
    remember_location(old)
    record = {"tile": f"{old}/work/scenes/a/r0.tif", "source_file": f"/mnt{old}/scene.tif", "n": 1}
    (old / "work" / "dataset").mkdir(parents=True)
    (old / "work" / "dataset" / "pool-x.json").write_text(json.dumps(record))
    old.rename(new)
    assert relocate(new)["files"] == 1
    got = json.loads((new / "work" / "dataset" / "pool-x.json").read_text())
    assert got == {**record, "tile": f"{new}/work/scenes/a/r0.tif"}
    assert relocate(new)["files"] == 0
    outer = tmp_path / "outer"  # moved inside the place it was built in: refused
    remember_location(outer)
    outer.rename(tmp_path / "parked")
    outer.mkdir()
    (tmp_path / "parked").rename(outer / "data")
    with pytest.raises(ConfigError, match="lies inside the place it was built in"):
        relocate(outer / "data")
