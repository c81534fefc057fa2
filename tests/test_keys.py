"""Stable tile keys (pipeline/labels/keys.py): unambiguous with '-' in names, annotation files matched by the
whole key, and releases written with the legacy '<source>-<scene>-<tile>' keys continued without change."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.datafolder import relocate
from pipeline.dataset.history import previous_maps
from pipeline.dataset.ids import image_key
from pipeline.dataset.pool import name_images
from pipeline.dataset.splits.trials import split_dataset
from pipeline.labels.keys import legacy_tile_key, scene_key_stem_matches, split_tile_key, tile_key
from pipeline.labels.labelling import annotation_digest, apply_annotations
from pipeline.release.changes import release_changes
from pipeline.scene import Scene
from tests.helpers_build import luigi_cmd, reference_build, reference_sources, release_dir, run_luigi

CRS = "EPSG:32633"
N = 32


def test_keys_split_back_unambiguously_with_dashes_in_names():
    a = tile_key("spacenet-vegas", "img-1", "r000_c001")
    b = tile_key("spacenet", "vegas-img-1", "r000_c001")
    assert a != b  # the legacy keys of these two tiles are the same string
    assert legacy_tile_key("spacenet-vegas", "img-1", "r000_c001") == legacy_tile_key("spacenet", "vegas-img-1",
                                                                                     "r000_c001")
    assert split_tile_key(a) == ("spacenet-vegas", "img-1", "r000_c001")
    assert split_tile_key(b) == ("spacenet", "vegas-img-1", "r000_c001")
    assert split_tile_key(legacy_tile_key("s", "a", "r000_c000")) is None
    with pytest.raises(ValueError, match="separator"):
        tile_key("s", "a~b", "r000_c000")


def test_annotation_stems_match_whole_keys_only():
    assert scene_key_stem_matches("src~a~r000_c000", "src", "a")
    assert not scene_key_stem_matches("src~a-b~r000_c000", "src", "a")
    assert scene_key_stem_matches("src~a-b~r000_c000", "src", "a-b")
    assert scene_key_stem_matches("src-a-r000_c000", "src", "a")  # legacy name, exact
    assert not scene_key_stem_matches("src-a-b-r000_c000", "src", "a")  # legacy name of scene a-b
    assert not scene_key_stem_matches("src~a~r000_c000_image", "src", "a")


def _tile(folder: Path, tid: str = "r000_c000") -> dict:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    transform = from_origin(500000.0, 5000000.0, 0.5, 0.5)
    with rasterio.open(folder / "images" / f"{tid}.tif", "w", driver="GTiff", width=N, height=N, count=3,
                       dtype="uint8", crs=CRS, transform=transform) as ds:
        ds.write(np.full((3, N, N), 90, np.uint8))
    return {"tile_id": tid, "crs": CRS, "transform": list(transform)[:6], "window": [0, 0, N, N],
            "image": f"images/{tid}.tif"}


def _index(path: Path, value: int) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="uint8", crs=CRS,
                       transform=from_origin(500000.0, 5000000.0, 0.5, 0.5)) as ds:
        ds.write(np.full((1, N, N), value, np.uint8))


def _scene(scene_id: str) -> Scene:
    return Scene(source="src", scene_id=scene_id, kind="local", image="x.tif", license="CC0", attribution="t")


def test_scene_a_never_takes_the_annotations_of_scene_a_b(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    _index(done / f"{tile_key('src', 'a-b', 'r000_c000')}.tif", 6)
    digest_a_before = annotation_digest(done, prefix=tile_key("src", "a", ""))
    assert digest_a_before == ""  # the old prefix match "src-a-" took the file of scene a-b
    _index(done / f"{tile_key('src', 'a', 'r000_c000')}.tif", 5)
    assert annotation_digest(done, prefix=tile_key("src", "a", "")) != ""
    pending = [{"tile_id": "r000_c000", "status": "pending", "label": None, "class_pixels": {},
                "unlabelled_pixels": 0}]
    for scene_id, cls in (("a", 5), ("a-b", 6)):
        work = tmp_path / scene_id
        tiles = [_tile(work)]
        recs, rejects = apply_annotations(_scene(scene_id), tiles, pending, work, done)
        assert rejects == [] and recs[0]["status"] == "labelled"
        assert recs[0]["class_pixels"][str(cls)] == N * N, scene_id
        assert recs[0]["annotation"] == f"{tile_key('src', scene_id, 'r000_c000')}.tif"


def test_an_annotation_named_by_its_legacy_key_is_still_imported(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    _index(done / "src-a-r000_c000.tif", 7)  # completed before the upgrade
    work = tmp_path / "a"
    pending = [{"tile_id": "r000_c000", "status": "pending", "label": None, "class_pixels": {},
                "unlabelled_pixels": 0}]
    assert annotation_digest(done, prefix=tile_key("src", "a", "")) != ""
    assert annotation_digest(done, prefix=tile_key("src", "a-b", "")) == ""
    recs, _ = apply_annotations(_scene("a"), [_tile(work)], pending, work, done)
    assert recs[0]["class_pixels"]["7"] == N * N
    recs, _ = apply_annotations(_scene("a-b"), [_tile(tmp_path / "ab")], pending, tmp_path / "ab", done)
    assert recs[0]["status"] == "pending"


def _legacy(manifest: dict) -> dict:
    out = json.loads(json.dumps(manifest))
    for im in out["images"]:
        im["key"] = legacy_tile_key(im["source"], im["source_scene_id"], im["tile"])
    return out


def test_legacy_manifest_keys_map_to_the_new_keys():
    old = {"release": "v1", "images": [
        {"id": "las_vegas_1", "region": "las_vegas", "split": "val", "source": "spacenet-vegas",
         "source_scene_id": "img-1", "tile": "r000_c000", "key": "spacenet-vegas-img-1-r000_c000"},
        {"id": "las_vegas_2", "region": "las_vegas", "split": "test", "source": "spacenet",
         "source_scene_id": "vegas-img-2", "tile": "r000_c000", "key": "spacenet-vegas-img-2-r000_c000"}]}
    splits, ids = previous_maps(old)
    assert splits == {"spacenet-vegas~img-1~r000_c000": "val", "spacenet~vegas-img-2~r000_c000": "test"}
    pool = [{"region": "las_vegas", "source": s, "source_scene_id": sc, "tile": "r000_c000",
             "key": tile_key(s, sc, "r000_c000"), "class_pixels": {"1": 5}}
            for s, sc in (("spacenet", "vegas-img-2"), ("spacenet-vegas", "img-1"), ("spacenet", "new"))]
    named = name_images(pool, previous=ids)
    assert {im["key"]: im["id"] for im in named} == {
        "spacenet-vegas~img-1~r000_c000": "las_vegas_1", "spacenet~vegas-img-2~r000_c000": "las_vegas_2",
        "spacenet~new~r000_c000": "las_vegas_3"}
    assignment, _ = split_dataset(named, trials=20, seed=1, groups={}, previous=splits)
    assert assignment["las_vegas_1"] == "val" and assignment["las_vegas_2"] == "test"
    assert image_key(old["images"][0]) == "spacenet-vegas~img-1~r000_c000"


def test_rebuild_after_upgrading_keeps_ids_and_splits(tmp_path_factory):
    """A release whose manifest carries legacy keys (as every release before the '~' separator does) is
    continued by a new build: same ids, same splits, nothing added or removed."""
    ref = reference_build(tmp_path_factory)
    base = tmp_path_factory.mktemp("upgrade")
    data = base / "data"
    shutil.copytree(ref, data, copy_function=_link)
    relocate(data)  # a copy: its records named the reference folder's files (rewritten, never edited in place)
    old_release = release_dir(data)
    manifest_path = old_release / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.unlink()  # a hard link into the reference build: replace, never edit in place
    manifest_path.write_text(json.dumps(_legacy(manifest), indent=1, sort_keys=True) + "\n")
    proc = run_luigi(luigi_cmd(data, reference_sources(tmp_path_factory), release="test2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = next(line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Build summary:"))
    assert not [f for f in ("FetchSource", "PrepareScene", "TileScene", "LabelScene") if f in summary], summary
    new = json.loads((release_dir(data, "test2") / "manifest.json").read_text())
    assert new["previous_release"] == "test"
    before = {(im["source"], im["source_scene_id"], im["tile"]): (im["id"], im["split"]) for im in manifest["images"]}
    after = {(im["source"], im["source_scene_id"], im["tile"]): (im["id"], im["split"]) for im in new["images"]}
    assert after == before
    assert all("~" in im["key"] for im in new["images"])
    changes = json.loads((release_dir(data, "test2") / "stats" / "changes.json").read_text())
    assert changes["summary"]["added"] == changes["summary"]["removed"] == changes["summary"]["split_moves"] == 0
    assert release_changes(_legacy(manifest), new)["summary"]["unchanged"] == len(manifest["images"])


def _link(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
