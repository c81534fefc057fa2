"""Issue 22.3: ``python -m pipeline status [--json]`` against a real build's release and work folders."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter

from tests.helpers_build import ROOT, local_sources, luigi_cmd, release_dir, run_luigi
from tests.test_bad_input import _scene


def test_status_json_matches_the_release_and_work_folders(tmp_path):
    local = tmp_path / "upstream"
    for i in range(2):
        _scene(local, f"good_{i}", i)
    _scene(local, "unlabelled", 5, label=False)  # its tile awaits annotation
    local_sources(tmp_path / "sources.yaml", {"folder": local}, "status suite")
    data = tmp_path / "data"
    empty = subprocess.run([sys.executable, "-m", "pipeline", "status", str(data), "--json"], cwd=ROOT,
                           capture_output=True, text=True)
    assert empty.returncode == 1 and "no such data folder" in empty.stdout
    (data / "annotation" / "done").mkdir(parents=True)
    (data / "annotation" / "done" / "final_version.tif").write_bytes(b"II*\x00")  # names no tile: a rejects row
    proc = run_luigi(luigi_cmd(data, tmp_path / "sources.yaml", "--PipelineConfig-progress", "false",
                               split_trials=20))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = subprocess.run([sys.executable, "-m", "pipeline", "status", str(data), "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    st = json.loads(out.stdout)
    rel = release_dir(data)
    manifest = json.loads((rel / "manifest.json").read_text())
    (pool_path,) = list(data.glob("work/**/pool-*.json"))
    pool = json.loads(pool_path.read_text())
    (catalog_path,) = list(data.glob("catalog/folder-*.json"))
    catalog = json.loads(catalog_path.read_text())
    assert st["sources"]["folder"]["scenes"] == len(catalog["scenes"]) == 3
    assert st["sources"]["folder"]["tiles"] == len(pool["tiles"]) == 3
    r = st["releases"][rel.name]
    assert r["images"] == len(manifest["images"]) == 2
    assert r["regions"] == dict(Counter(im["region"] for im in manifest["images"]))
    assert r["splits"] == {s: manifest["splits"][s] for s in ("train", "val", "test")}
    with open(rel / "pending.csv", newline="") as fh:
        assert r["pending"] == len(list(csv.DictReader(fh))) == 1
    assert r["rejects"] == 1 and r["rejects_by_stage"] == {"annotation": 1}  # a row of the release only
    ((region, reg),) = st["regions"].items()
    assert (reg["tiles"], reg["labelled"], reg["pending"]) == (3, 2, 1)
    assert reg["stage"] == "awaiting selected annotations"
    text = subprocess.run([sys.executable, "-m", "pipeline", "status", str(data)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120).stdout
    assert f"{region}: 3 tiles, 2 labelled, 1 pending" in text and f"{rel.name}: 2 images" in text
    assert "1 pending, 1 rejects (annotation 1)" in text, text
    same = subprocess.run([sys.executable, "-m", "pipeline", "status", "--PipelineConfig-data-dir", str(data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # as the build was given it
    assert same.returncode == 0 and same.stdout == text, same.stderr
