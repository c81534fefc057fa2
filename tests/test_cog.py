"""Release tiles are Cloud-Optimized GeoTIFFs (pipeline/raster/cog.py, written by
pipeline.release.writer.write_release)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from pipeline.raster.cog import COG_OPTIONS, follows_policy, place_cog, to_cog, validate_cog, write_cog
from pipeline.release.validate.report import validate_release, validate_report
from tests.helpers_outputs import demo_release, manifest_of, strip_cog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return demo_release(tmp_path_factory)


def _tiles(release: Path):
    for im in manifest_of(release)["images"]:
        yield im, release / im["image"], release / im["label"]


def test_every_release_tile_is_a_valid_cog(release):
    rio_cogeo = pytest.importorskip("rio_cogeo.cogeo")
    for _, image, label in _tiles(release):
        for path in (image, label):
            assert validate_cog(path) == [], path  # no errors and no warnings
            valid, errors, warnings = rio_cogeo.cog_validate(str(path), quiet=True)
            assert valid and not errors and not warnings, (path, errors, warnings)


def test_rio_cogeo_cli_validates_a_sample(release):
    # the console script of the interpreter running the tests (a venv's bin/ need not be on PATH)
    exe = shutil.which("rio", path=str(Path(sys.executable).parent)) or shutil.which("rio")
    assert exe is not None, "the rio command is missing: install the test extra (pip install -e '.[test]')"
    im = manifest_of(release)["images"][0]
    for rel in (im["image"], im["label"]):
        proc = subprocess.run([exe, "cogeo", "validate", str(release / rel)], capture_output=True, text=True)
        assert proc.returncode == 0 and "is a valid cloud optimized GeoTIFF" in proc.stdout, proc.stdout + proc.stderr


def test_tiles_keep_type_grid_and_policies(release):
    for im, image, label in _tiles(release):
        with rasterio.open(image) as img, rasterio.open(label) as lab:
            assert img.count == 3 and img.dtypes == ("uint8",) * 3
            assert lab.count == 1 and lab.dtypes == ("uint8",)
            assert img.crs == lab.crs and img.crs.to_string() == im["crs"]
            assert img.transform == lab.transform and list(img.transform)[:6] == pytest.approx(im["transform"])
            assert img.shape == lab.shape == (im["height"], im["width"])
            assert img.profile["blockxsize"] == 512 and lab.profile["blockxsize"] == 512
            assert img.overviews(1) and lab.overviews(1)
            assert img.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert img.compression.name.upper() == "DEFLATE"
            # labels: mode overviews never invent class ids
            full = set(np.unique(lab.read(1)).tolist())
        with rasterio.open(label, overview_level=0) as ov:
            assert set(np.unique(ov.read(1)).tolist()) <= full


def test_manifest_records_the_tile_format(release):
    assert manifest_of(release)["created_with"]["tile_format"] == "COG"


def test_validation_reports_a_non_cog_tile(release, tmp_path):
    copy = tmp_path / "rel"
    shutil.copytree(release, copy)
    im = manifest_of(release)["images"][0]
    strip_cog(copy / im["label"])  # same pixels, plain striped GeoTIFF
    problems = validate_release(copy)
    assert any(p.startswith(f"{im['label']}: not a valid COG: ") for p in problems), problems
    assert any(p.startswith(f"{im['label']}: sha256 mismatch") for p in problems)
    # check 11 (the COGs) ran in a forked process beside the others: the same report as all in this one
    assert validate_report(copy, concurrent=True) == validate_report(copy)
    assert problems[-1].startswith(f"{im['label']}: not a valid COG: ")  # check 11's lines come last, as before


@pytest.mark.parametrize("kind", ["image", "label"])
def test_to_cog_is_lossless_deterministic_and_keeps_the_mask(tmp_path, kind):
    rng = np.random.default_rng(0)
    bands = 3 if kind == "image" else 1
    data = rng.integers(0, 256 if kind == "image" else 9, (bands, 700, 700), dtype=np.uint8)
    mask = np.full((700, 700), 255, np.uint8)
    mask[:20] = 0
    transform = Affine(0.3, 0, 500000.0, 0, -0.3, 5000000.0)
    src = tmp_path / "src.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"), rasterio.open(
            src, "w", driver="GTiff", width=700, height=700, count=bands, dtype="uint8", crs="EPSG:32633",
            transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(data)
        ds.write_mask(mask)
    a, b = to_cog(src, tmp_path / "a.tif", kind=kind), to_cog(src, tmp_path / "b.tif", kind=kind)
    assert a.read_bytes() == b.read_bytes()
    assert validate_cog(a) == []
    with rasterio.open(a) as ds:
        assert np.array_equal(ds.read(), data)
        assert np.array_equal(ds.dataset_mask(), mask)
        assert ds.crs.to_epsg() == 32633 and ds.transform == transform
        resampling = ds.tags(ns="IMAGE_STRUCTURE")
        assert ("PREDICTOR" in resampling) == (COG_OPTIONS[kind]["PREDICTOR"] != "NO")
    with pytest.raises(ValueError):
        to_cog(a, a)


def test_write_cog_and_validate_cog_on_a_plain_tiff(tmp_path):
    arr = np.zeros((600, 600), np.uint8)
    out = write_cog(arr, tmp_path / "l.tif", crs="EPSG:32633", transform=[0.5, 0, 0, 0, -0.5, 0], kind="label")
    assert validate_cog(out) == []
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=600, height=600, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(0.5, 0, 0, 0, -0.5, 0)) as ds:
        ds.write(arr, 1)
    assert validate_cog(plain)  # striped, no overviews
    assert validate_cog(tmp_path / "missing.tif") == ["missing.tif: missing"]
    with pytest.raises(ValueError):
        write_cog(arr, tmp_path / "x.tif", crs="EPSG:32633", transform=[1, 0, 0, 0, -1, 0], kind="thumbnail")


def test_place_cog_links_policy_cogs_and_converts_others(tmp_path):
    arr = np.random.default_rng(1).integers(0, 9, (600, 600), dtype=np.uint8)
    cog = write_cog(arr, tmp_path / "cog.tif", crs="EPSG:32633", transform=[0.5, 0, 0, 0, -0.5, 0], kind="label")
    assert follows_policy(cog, kind="label") and not follows_policy(cog, kind="image")
    linked = place_cog(cog, tmp_path / "out" / "linked.tif", kind="label")
    assert linked.stat().st_ino == cog.stat().st_ino
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=600, height=600, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(0.5, 0, 0, 0, -0.5, 0)) as ds:
        ds.write(arr, 1)
    assert not follows_policy(plain, kind="label") and not follows_policy(tmp_path / "missing.tif")
    converted = place_cog(plain, tmp_path / "out" / "converted.tif", kind="label")
    assert converted.stat().st_ino != plain.stat().st_ino and validate_cog(converted) == []
    with rasterio.open(converted) as ds:
        assert np.array_equal(ds.read(1), arr)
