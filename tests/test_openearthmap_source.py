"""A benchmark in OpenEarthMap's layout as a source (``kind: openearthmap``): its regions, labels and split come
with it, and a release that extends it keeps every image in the split the benchmark gives it, so nothing the
benchmark tests on is trained on (``pipeline.sources.adapters.openearthmap``)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from pipeline.errors import SceneRejected
from pipeline.sources.adapters import get_adapter
from pipeline.sources.config import parse_sources
from tests.conftest import shared_file
from tests.helpers_build import BUILD_TIMEOUT, ROOT, luigi_cmd, pipeline_env
from tests.test_bad_input import _label, _rgb, _transform, _write

SIZE = 256  # tiles of 256 px (--PipelineConfig-tile-size): each image is one tile, as an OpenEarthMap image is


def _image(folder: Path, name: str, i: int) -> None:
    lab = _label(SIZE, seed=i)
    _write(folder / "images" / f"{name}.tif", _rgb(lab), transform=_transform(i))
    _write(folder / "labels" / f"{name}.tif", lab[np.newaxis], crs=None, transform=None)


def _benchmark(root: Path, regions: dict[str, dict[str, list[int]]]) -> Path:
    """``root/OpenEarthMap/<region>/images|labels/<region>_<n>.tif`` and ``train|val|test.txt``:
    ``regions`` = region -> split -> image numbers."""
    top = root / "OpenEarthMap"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    offset = 0
    for region, splits in regions.items():
        for split, numbers in splits.items():
            for n in numbers:
                _image(top / region, f"{region}_{n}", offset + n)
                if split in lists:
                    lists[split].append(f"{region}_{n}.tif")
        offset += 100
    for split, names in lists.items():
        (top / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def _source(name: str, location: Path, kind: str = "openearthmap") -> str:
    return f"""
  - name: {name}
    kind: {kind}
    location: {location}
    license: CC BY-NC-SA 4.0
    attribution: OpenEarthMap (Xia et al. 2023)
"""


def test_the_layout_regions_labels_and_splits(tmp_path):
    root = _benchmark(tmp_path / "oem", {"wien": {"train": [1, 2], "test": [3], "none": [4]}})
    top = tmp_path / "oem" / "OpenEarthMap"
    (top / "val.txt").write_text("wien_2.tif\n")  # listed twice: contradictory
    _image(top / "wien", "wien_5", 5)  # listed by a Windows path without its suffix, in a CRLF file
    with open(top / "test.txt", "a", newline="") as f:
        f.write("C:\\data\\OpenEarthMap\\wien\\images\\wien_5\r\n")
    (src,) = parse_sources({"sources": [{"name": "oem", "kind": "openearthmap", "location": str(root),
                                         "license": "x", "attribution": "y"}]}, tmp_path / "s.yaml")
    rejected: list = []
    scenes = {s.scene_id: s for s in get_adapter("openearthmap").scenes(root, src, rejected=rejected)}
    assert sorted(scenes) == ["wien_1", "wien_3", "wien_4", "wien_5"]
    assert {k: s.extra.get("upstream_split") for k, s in scenes.items()} == {
        "wien_1": "train", "wien_3": "test", "wien_4": None, "wien_5": "test"}
    assert all(s.region_hint == "wien" and s.landcover and s.landcover.endswith(f"labels/{k}.tif")
               for k, s in scenes.items())
    (err,) = rejected
    assert isinstance(err, SceneRejected) and err.file.endswith("wien/images/wien_2.tif")
    assert err.reason == "listed in train.txt and val.txt: the dataset's split is contradictory"
    (ignore,) = parse_sources({"sources": [{"name": "oem", "kind": "openearthmap", "location": str(root),
                                            "license": "x", "attribution": "y", "options": {"keep_splits": False}}]},
                              tmp_path / "s.yaml")
    assert not any(s.extra.get("upstream_split") for s in get_adapter("openearthmap").scenes(root, ignore))


def _build(base: Path, sources: str, release: str) -> None:
    (base / "sources.yaml").write_text("\nsources:" + sources)
    proc = subprocess.run(luigi_cmd(base / "data", base / "sources.yaml", "--PipelineConfig-tile-size", str(SIZE),
                                    release=release, split_trials=20),
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _validate(release: Path) -> str:
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(release)], cwd=ROOT,
                           env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    return check.stdout + check.stderr


def test_a_release_extending_a_benchmark_keeps_its_split(tmp_path):
    # wien is split 6:1:3 upstream, linz 2:1:5 (off the ratios: the release keeps it and says so)
    root = _benchmark(tmp_path / "oem", {"wien": {"train": list(range(1, 7)), "val": [7], "test": [8, 9, 10]},
                                         "linz": {"train": [1, 2], "val": [3], "test": [4, 5, 6, 7, 8]}})
    oem = _source("oem", root)
    _build(tmp_path, oem, "v1")
    releases = tmp_path / "data" / "releases"
    v1 = json.loads((releases / "v1" / "manifest.json").read_text())["images"]
    assert len(v1) == 18 and {im["region"] for im in v1} == {"wien", "linz"}
    assert all(im["split"] == im["upstream_split"] for im in v1)
    for split in ("train", "val", "test"):  # the OpenEarthMap lists of the release are the benchmark's
        names = set((releases / "v1" / f"{split}.txt").read_text().split())
        assert len(names) == sum(im["upstream_split"] == split for im in v1)
    assert "upstream-split" in _validate(releases / "v1")  # linz's counts: a named warning, not an error
    import geopandas as gpd

    for index in ("index.parquet", "index.gpkg"):  # GIS can colour the footprints by the benchmark's split
        frame = gpd.read_parquet(releases / "v1" / index) if index.endswith("parquet") else \
            gpd.read_file(releases / "v1" / index)
        assert dict(zip(frame["id"], frame["upstream_split"])) == {im["id"]: im["upstream_split"] for im in v1}

    new = tmp_path / "new"  # ten more images of wien from a local folder: split around the benchmark's
    for n in range(10):
        lab = _label(SIZE, seed=50 + n)
        _write(new / "wien" / f"extra_{n}.tif", _rgb(lab), transform=_transform(50 + n))
        _write(new / "labels" / "wien" / f"extra_{n}.tif", lab[np.newaxis], crs=None, transform=None)
    _build(tmp_path, oem + _source("extra", tmp_path / "new", kind="local"), "v2")
    v2 = json.loads((releases / "v2" / "manifest.json").read_text())["images"]
    before = {im["key"]: (im["id"], im["split"]) for im in v1}
    assert all(before[im["key"]] == (im["id"], im["split"]) for im in v2 if im["key"] in before)
    added = [im for im in v2 if im["source"] == "extra"]
    assert len(added) == 10 and not any("upstream_split" in im for im in added)
    wien = [im["split"] for im in v2 if im["region"] == "wien"]
    assert (wien.count("train"), wien.count("val"), wien.count("test")) == (12, 2, 6)
    _validate(releases / "v2")

    # a release whose image left its upstream split is invalid, naming the image
    manifest = json.loads((releases / "v2" / "manifest.json").read_text())
    moved = next(im for im in manifest["images"] if im.get("upstream_split") == "test")
    from pipeline.release.validate.audit import check_split_audit

    out: list[str] = []
    check_split_audit(manifest, [{**im, "split": "train"} if im is moved else im for im in manifest["images"]], out)
    assert f"manifest.json: image {moved['id']}: in train, but its source benchmark has it in test " \
           "(upstream_split)" in out


def test_a_real_openearthmap_tile_in_its_layout(tmp_path):
    """OpenEarthMap's own tile (Palu, EPSG:4326) in its layout: released in its region and split."""
    image, label = shared_file("openearthmap/palu_8_image.tif"), shared_file("openearthmap/palu_8_label.tif")
    top = tmp_path / "OpenEarthMap" / "palu"
    for folder, src in (("images", image), ("labels", label)):
        (top / folder).mkdir(parents=True)
        shutil.copyfile(src, top / folder / "palu_8.tif")
    (tmp_path / "OpenEarthMap" / "test.txt").write_text("palu_8.tif\n")
    (tmp_path / "sources.yaml").write_text("\nsources:" + _source("oem", tmp_path / "OpenEarthMap"))
    proc = subprocess.run(luigi_cmd(tmp_path / "data", tmp_path / "sources.yaml", release="v1", split_trials=20),
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (im,) = json.loads((tmp_path / "data" / "releases" / "v1" / "manifest.json").read_text())["images"]
    assert (im["id"], im["region"], im["split"], im["upstream_split"]) == ("palu_1", "palu", "test", "test")
    assert im["source_scene_id"] == "palu_8" and im["country_code"] == "ID"
    assert {k for k, v in im["class_pixels"].items() if v} == {"2", "3", "4", "5", "6", "8"}
    _validate(tmp_path / "data" / "releases" / "v1")


def test_a_release_of_this_pipeline_as_a_source_comes_back_pixel_for_pixel(tmp_path):
    root = _benchmark(tmp_path / "oem", {"wien": {"train": list(range(1, 7)), "val": [7], "test": [8, 9, 10]}})
    _build(tmp_path, _source("oem", root), "v1")
    v1 = tmp_path / "data" / "releases" / "v1"
    again = tmp_path / "again"
    again.mkdir()
    _build(again, _source("ours", v1), "r1")
    r1 = again / "data" / "releases" / "r1"
    before = {im["id"]: im for im in json.loads((v1 / "manifest.json").read_text())["images"]}
    after = json.loads((r1 / "manifest.json").read_text())["images"]
    assert sorted(im["source_scene_id"] for im in after) == sorted(before)
    for im in after:  # on the UTM lattice already: the same grid, the same pixels, the same split
        old = before[im["source_scene_id"]]
        assert (im["split"], im["upstream_split"], im["transform"]) == (old["split"], old["split"], old["transform"])
        for kind in ("image", "label"):
            with rasterio.open(r1 / im[kind]) as a, rasterio.open(v1 / old[kind]) as b:
                np.testing.assert_array_equal(a.read(), b.read())
    _validate(r1)


def test_the_benchmarks_own_overlap_across_splits_is_kept_and_named(tmp_path):
    """Two images of one place that the benchmark puts in train and test (its own leakage) keep their splits: the
    release builds, and ``validate`` names the pair as a warning instead of failing it."""
    root = _benchmark(tmp_path / "oem", {"graz": {"train": [1, 3], "test": [2]}})
    same = tmp_path / "oem" / "OpenEarthMap" / "graz" / "images"
    with rasterio.open(same / "graz_1.tif") as a, rasterio.open(same / "graz_2.tif", "r+") as b:
        b.transform = a.transform  # graz_2 on graz_1's place
    _build(tmp_path, _source("oem", root), "v1")
    images = {im["source_scene_id"]: im["split"] for im in json.loads(
        (tmp_path / "data" / "releases" / "v1" / "manifest.json").read_text())["images"]}
    assert images == {"graz_1": "train", "graz_2": "test", "graz_3": "train"}
    assert "their source benchmark splits them so" in _validate(tmp_path / "data" / "releases" / "v1")


def test_a_split_list_edited_upstream_redoes_no_scene_and_released_images_keep_their_split(tmp_path):
    root = _benchmark(tmp_path / "oem", {"wien": {"train": list(range(1, 7)), "val": [7], "test": [8, 9, 10]}})
    _build(tmp_path, _source("oem", root), "v1")
    top = root / "OpenEarthMap"  # wien_1 moves from train to test upstream
    (top / "train.txt").write_text("".join(f"wien_{n}.tif\n" for n in range(2, 7)))
    (top / "test.txt").write_text("".join(f"wien_{n}.tif\n" for n in (1, 8, 9, 10)))
    (tmp_path / "sources.yaml").write_text("\nsources:" + _source("oem", root))
    proc = subprocess.run(luigi_cmd(tmp_path / "data", tmp_path / "sources.yaml", "--PipelineConfig-tile-size",
                                    str(SIZE), release="v2", split_trials=20),
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = proc.stdout + proc.stderr
    assert "CatalogSource 1" in ran and "PrepareScene" not in ran.split("tasks ran")[1].split(")")[0]
    v2 = {im["source_scene_id"]: im for im in json.loads(
        (tmp_path / "data" / "releases" / "v2" / "manifest.json").read_text())["images"]}
    assert (v2["wien_1"]["split"], v2["wien_1"]["upstream_split"]) == ("train", "test")  # released: it stays
    assert "wien_1: in train, but its source benchmark has it in test (upstream_split) [upstream-split: released " \
           "in train before" in _validate(tmp_path / "data" / "releases" / "v2")
