"""A completed annotation that names no tile of the build is a rejects row, not silently ignored.

Reproduction (before): a local source ``survey`` with a labelled scene and an unlabelled one; the unlabelled
tile's annotation is completed in ``done/`` and released in v1.  Renaming the source (``survey`` -> ``survey_2023``)
gave the tile a new key: v2 ignored the annotation without a word (its tile pending again, the image gone from
the release), as it ignored a misnamed file.  Now each such file is a ``rejects.csv`` row naming it and why.
"""
from __future__ import annotations

import csv
import json
import shutil

import rasterio

from pipeline.dataset.pool import unmatched_annotations
from tests.helpers_build import local_sources, luigi_cmd, release_dir, run_luigi
from tests.test_bad_input import _scene


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_an_annotation_the_build_cannot_use_is_a_named_reject(tmp_path):
    src = tmp_path / "src"
    _scene(src, "labelled", 0)
    _scene(src, "unlabelled", 1, label=False)
    data = tmp_path / "data"
    proc = run_luigi(luigi_cmd(data, local_sources(tmp_path / "v1.yaml", {"survey": src}), release="v1",
                               split_trials=20))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    key = "survey~unlabelled~r000_c000"
    done = data / "annotation" / "done"
    done.mkdir(parents=True)
    with rasterio.open(data / "annotation" / "todo" / f"{key}.tif") as ds:  # the pre-annotation's grid, all tree
        profile, labels = ds.profile, ds.read(1)
    labels[:] = 5
    with rasterio.open(done / f"{key}.tif", "w", **profile) as out:
        out.write(labels, 1)
    shutil.copy(done / f"{key}.tif", done / "final_version.tif")  # a misnamed copy
    proc = run_luigi(luigi_cmd(data, local_sources(tmp_path / "v1.yaml", {"survey": src}), release="v2",
                               split_trials=20))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((release_dir(data, "v2") / "manifest.json").read_text())
    assert sorted(im["source_scene_id"] for im in manifest["images"]) == ["labelled", "unlabelled"]
    assert [(r["file"], r["reason"]) for r in _rows(release_dir(data, "v2") / "rejects.csv")] == [
        ("done/final_version.tif", "not used: its name is no tile key (<source>~<scene>~<tile>) of this build")]
    proc = run_luigi(luigi_cmd(data, local_sources(tmp_path / "v3.yaml", {"survey_2023": src}), release="v3",
                               split_trials=20))  # the source renamed: the annotation names no tile now
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["file"]: r for r in _rows(release_dir(data, "v3") / "rejects.csv")}
    assert rows[f"done/{key}.tif"]["source"] == "survey" and rows[f"done/{key}.tif"]["stage"] == "annotation"
    assert "no enabled source is named 'survey' (renamed or disabled" in rows[f"done/{key}.tif"]["reason"]


def test_each_kind_of_mismatch_is_named():
    tiles = [{"source": "a", "source_scene_id": "s-1", "tile": "r000_c000"}]
    names = ["a~s-1~r000_c000.tif", "a-s-1-r000_c000.png", "a~s-1~r000_c001.tif", "a~other~r000_c000.tif",
             "b~s-1~r000_c000.geojson", "notes.tif"]
    rows = {r["file"]: r["reason"] for r in unmatched_annotations(names, tiles, {"a"})}
    assert rows == {
        "done/a~s-1~r000_c001.tif": "not used: scene 's-1' of 'a' has no tile 'r000_c001' in this build",
        "done/a~other~r000_c000.tif": "not used: source 'a' has no tile of scene 'other' in this build",
        "done/b~s-1~r000_c000.geojson": "not used: no enabled source is named 'b' (renamed or disabled: its tiles "
                                        "have other keys now)",
        "done/notes.tif": "not used: its name is no tile key (<source>~<scene>~<tile>) of this build"}
    assert unmatched_annotations([], tiles, {"a"}) == []
