"""The same imagery reaching a build twice (a source listed again under another name, a file copied within a
folder) is released once: the other copies are ``rejects.csv`` rows naming the copy released
(:mod:`pipeline.dataset.copies`).  They used to be released as images of their own, byte for byte the same."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys

from pipeline.dataset.copies import drop_copies
from tests.helpers_build import BUILD_TIMEOUT, ROOT, luigi_cmd, pipeline_env
from tests.test_bad_input import _scene


def test_copies_keep_a_labelled_tile_then_the_first_source_then_the_lowest_scene():
    def tile(source, scene, sha="s1", status="labelled", transform=(0.3, 0, 0, 0, -0.3, 0)):
        return {"key": f"{source}~{scene}~t", "source": source, "source_scene_id": scene, "tile": "t", "crs": "c",
                "transform": list(transform), "status": status, "_image_sha256": sha, "_image_file": f"{scene}.tif"}

    tiles = [tile("a", "x"), tile("b", "x"), tile("b", "w"), tile("c", "x", status="pending"),
             tile("c", "y", transform=(0.3, 0, 9, 0, -0.3, 0)), tile("c", "z", sha="s2"), {**tile("d", "q"),
                                                                                           "_image_sha256": None}]
    kept, rejects = drop_copies(tiles, ["b", "a", "c", "d"])
    assert [t["key"] for t in kept] == ["b~w~t", "c~y~t", "c~z~t", "d~q~t"]  # another place, other bytes, unknown
    assert all(not k.startswith("_image") for t in kept for k in t)
    assert [(r["source"], r["scene_id"], r["stage"]) for r in rejects] == [
        ("a", "x", "pool"), ("b", "x", "pool"), ("c", "x", "pool")]
    assert all("copies of b/w.tif" in r["reason"] for r in rejects)
    labelled_later = [tile("a", "x", status="pending"), tile("b", "x")]
    assert [t["key"] for t in drop_copies(labelled_later, ["a", "b"])[0]] == ["b~x~t"]


def test_a_source_listed_twice_and_a_copied_file_are_released_once(tmp_path):
    folder = tmp_path / "src"
    for i in range(3):
        _scene(folder, f"s{i}", i)
    shutil.copy(folder / "s1.tif", folder / "s1_copy.tif")
    shutil.copy(folder / "labels" / "s1.tif", folder / "labels" / "s1_copy.tif")
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:" + "".join(f"""
  - name: {name}
    kind: local
    location: {folder}
    license: CC BY 4.0
    attribution: test suite
""" for name in ("first", "again")))
    proc = subprocess.run(luigi_cmd(tmp_path / "data", sources, release="v1", split_trials=20), cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    release = tmp_path / "data" / "releases" / "v1"
    images = json.loads((release / "manifest.json").read_text())["images"]
    assert sorted((im["source"], im["source_scene_id"]) for im in images) == [
        ("first", "s0"), ("first", "s1"), ("first", "s2")]
    shas = [hashlib.sha256((release / im["image"]).read_bytes()).hexdigest() for im in images]
    assert len(set(shas)) == len(shas)  # no image twice
    with open(release / "rejects.csv", newline="") as f:
        rows = {(r["source"], r["scene_id"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [("again", "s0"), ("again", "s1"), ("again", "s1_copy"), ("again", "s2"),
                            ("first", "s1_copy")]
    assert rows[("first", "s1_copy")]["stage"] == "pool" and "copies of first/s1.tif" in rows[("first", "s1_copy")][
        "reason"]
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release)], cwd=ROOT, env=pipeline_env(),
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
