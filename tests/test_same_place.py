"""A place keeps its split along a lineage when its pixels come back under new keys (pipeline.dataset.splits.lineage).

Reproduction (before): a local source of 10 scenes in one region, sampled to 5 and released as v1; v2 is the same
folder with the source renamed in ``sources.yaml`` (``survey`` -> ``survey_2023``), v3 the same files moved into a
sub-folder (their scene ids follow the paths).  Every image got a new key, so v2 and v3 sampled and split the same
tiles afresh: places that were test in v1 were train in v2 -- the leakage that frozen splits exist to prevent --, v1's
places were dropped for others, and nothing said so.  Now the selection keeps the tiles on v1's places, each new
image on a retired image's footprint keeps its split and names it (``same_place_as``), two hops down the lineage,
and ``validate`` checks the claim.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.dataset.splits.lineage import lineage_anchors
from pipeline.release.validate.consistency import check_consistency
from tests.helpers_build import BUILD_TIMEOUT, ROOT, local_sources, luigi_cmd, pipeline_env
from tests.test_bad_input import _scene

SCENES = 10
SAMPLED = 5  # the middle of region_min 4 and region_max 6


def _build(base: Path, sources: Path, release: str) -> None:
    # the region is sampled (10 candidates > region_max 6: 5 kept), so the selection must keep the same places too
    proc = subprocess.run(luigi_cmd(base / "data", sources, "--PipelineConfig-region-min", "4",
                                    "--PipelineConfig-region-max", "6", release=release, split_trials=50), cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _manifest(base: Path, release: str) -> dict:
    return json.loads((base / "data" / "releases" / release / "manifest.json").read_text())


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    base = tmp_path_factory.mktemp("same_place")
    folder = base / "src"
    for i in range(SCENES):
        _scene(folder, f"tile_{i:02d}", i)
    _build(base, local_sources(base / "v1.yaml", {"survey": folder}), "v1")
    _build(base, local_sources(base / "v2.yaml", {"survey_2023": folder}), "v2")  # the source renamed
    moved = base / "moved"
    (moved / "labels").mkdir(parents=True)
    for name in sorted(p.name for p in folder.glob("*.tif")):  # the files moved into a sub-folder
        (moved / "batch1").mkdir(exist_ok=True)
        (moved / "labels" / "batch1").mkdir(exist_ok=True)
        shutil.copy(folder / name, moved / "batch1" / name)
        shutil.copy(folder / "labels" / name, moved / "labels" / "batch1" / name)
    _build(base, local_sources(base / "v3.yaml", {"survey_2023": moved}), "v3")
    return base


def _splits_by_pixels(manifest: dict) -> dict[str, str]:
    return {im["sha256_image"]: im["split"] for im in manifest["images"]}


def test_a_place_keeps_its_split_when_its_key_changes(lineage):
    v1, v2, v3 = (_manifest(lineage, v) for v in ("v1", "v2", "v3"))
    assert len(v1["images"]) == SAMPLED and Counter(im["split"] for im in v1["images"])["test"] >= 1
    for later in (v2, v3):
        assert {im["source"] for im in later["images"]} == {"survey_2023"}
        assert _splits_by_pixels(later) == _splits_by_pixels(v1)  # the same places kept, each in its v1 split
    v1_keys = {im["key"]: im for im in v1["images"]}
    v2_keys = {im["key"]: im for im in v2["images"]}
    for im in v2["images"]:  # each names the v1 image whose place it is on
        assert v1_keys[im["same_place_as"]]["sha256_image"] == im["sha256_image"]
    for im in v3["images"]:
        assert v2_keys[im["same_place_as"]]["sha256_image"] == im["sha256_image"]
    retired = {r["key"]: r for r in v3["retired"]}  # both hops are remembered, with their places
    assert set(retired) == set(v1_keys) | set(v2_keys)
    assert all(len(r["bounds"]) == 4 and r["crs"].startswith("EPSG:") for r in retired.values())


def test_the_changes_say_which_place_each_new_image_is_on_and_the_release_validates(lineage):
    changes = json.loads((lineage / "data" / "releases" / "v2" / "stats" / "changes.json").read_text())
    assert changes["summary"]["added"] == SAMPLED and changes["summary"]["removed"] == SAMPLED
    assert all(a.get("same_place_as") for a in changes["added"])
    md = (lineage / "data" / "releases" / "v2" / "stats" / "changes.md").read_text()
    assert md.count(": its split kept") == SAMPLED
    for release in ("v2", "v3"):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(lineage / "data" / "releases" /
                                                                               release)],
                              cwd=ROOT, env=pipeline_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validate_checks_the_claim(lineage):
    manifest = _manifest(lineage, "v2")
    records = manifest["images"]
    out: list[str] = []
    check_consistency(manifest, records, out)
    assert out == []
    moved = next(im for im in records if im["split"] == "test")
    wrong = [dict(im, split="train") if im is moved else im for im in records]
    out = []
    check_consistency(manifest, wrong, out)
    assert any(f"image {moved['id']} is in train but on the place of retired" in line for line in out), out
    far = [dict(im, same_place_as="nobody~x~r000_c000") if im is moved else im for im in records]
    out = []
    check_consistency(manifest, far, out)
    assert any("which is no retired image" in line for line in out), out


def _rec(i: str, key: str, x: float) -> dict:
    return {"id": i, "key": key, "crs": "EPSG:32633", "bounds": [x, 0.0, x + 100.0, 100.0]}


def test_anchors_prefer_the_largest_overlap_and_leave_groups_with_a_kept_image_alone():
    images = [_rec("a_1", "s~a~r000_c000", 0.0), _rec("a_2", "s~b~r000_c000", 500.0),
              _rec("a_3", "s~c~r000_c000", 1000.0)]
    retired = [{**_rec("", "old~x", 60.0), "split": "test"},  # overlaps a_1 by 40 %
               {**_rec("", "old~y", 10.0), "split": "val"},  # overlaps a_1 by 90 %: wins
               {**_rec("", "old~z", 510.0), "split": "train"},  # overlaps a_2, whose split is kept anyway
               {"key": "old~w", "split": "test", "crs": None, "bounds": None}]  # no footprint: never an anchor
    anchors = lineage_anchors(images, {}, kept={"s~b~r000_c000"}, retired=retired)
    assert anchors == {"s~a~r000_c000": ("val", "old~y")}
