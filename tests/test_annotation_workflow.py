"""The annotation round trip through the pipeline: tiles of a source without 8-class labels are pending
and exported with their building footprints to todo/ (the first build, with every tile pending, refuses to
write an empty release); completed annotations dropped into done/ (palette PNG, GeoJSON polygons, index
GeoTIFF) are imported on the next build, bad ones are rejected with a named reason while every other tile
still releases."""
import csv
import json
from pathlib import Path

import cv2
import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box

import tasks  # noqa: F401  (registers the tasks)
from pipeline.constants import CLASS_COLORS
from pipeline.release.validate.report import validate_release
from tests.helpers_build import build_in_process

CRS = "EPSG:32633"
X0, Y0, GSD, SIZE = 500000.0, 5000000.0, 0.5, 3100  # 3x3 tiles of 1024 px at 0.5 m


def _write_scene(folder: Path) -> None:
    rng = np.random.default_rng(5)
    small = rng.integers(30, 220, size=(40, 40, 3), dtype=np.uint8)
    img = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    (folder / "footprints").mkdir(parents=True)
    with rasterio.open(folder / "town.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8",
                       crs=CRS, transform=from_origin(X0, Y0, GSD, GSD), tiled=True, compress="deflate") as ds:
        ds.write(img.transpose(2, 0, 1))
    houses = [box(X0 + 100 + 60 * i, Y0 - 300 - 45 * j, X0 + 120 + 60 * i, Y0 - 285 - 45 * j)
              for i in range(20) for j in range(25)]
    gpd.GeoDataFrame({"building": ["yes"] * len(houses)}, geometry=houses, crs=CRS).to_file(
        folder / "footprints" / "town.geojson", driver="GeoJSON")


def _palette_png(index: np.ndarray, path: Path, extra_colour=None) -> None:
    rgb = np.zeros(index.shape + (3,), np.uint8)
    for k, c in CLASS_COLORS.items():
        rgb[index == k] = c
    if extra_colour is not None:
        rgb[:10, :10] = extra_colour
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    base = tmp_path_factory.mktemp("annot")
    _write_scene(base / "imagery")
    (base / "sources.yaml").write_text(f"""
sources:
  - name: town
    kind: local
    location: {base / 'imagery'}
    license: CC BY 4.0
    attribution: test imagery
""")
    assert not build_in_process(base, "r1")  # every tile pending: no image to release, the build fails
    return base


def test_unlabelled_tiles_are_pending_and_exported_for_annotation(workflow):
    assert not (workflow / "data" / "releases" / "r1").exists()  # never an empty release
    todo = workflow / "data" / "annotation" / "todo"
    keys = sorted(p.stem for p in todo.glob("*.geojson"))
    assert len(keys) == 9
    for key in keys:
        assert (todo / f"{key}.tif").exists() and (todo / f"{key}_image.tif").exists()
        with rasterio.open(todo / f"{key}.tif") as ds:
            assert ds.crs.to_string() == CRS and ds.width == 1024
    # the footprints are the starting point: buildings (8) in the pre-annotation of the top-left tile
    first = keys[0]
    with rasterio.open(todo / f"{first}.tif") as ds:
        assert set(np.unique(ds.read(1))) == {0, 8}


def test_completed_annotations_are_imported_and_bad_ones_rejected(workflow):
    todo = workflow / "data" / "annotation" / "todo"
    done = workflow / "data" / "annotation" / "done"
    done.mkdir(parents=True)
    keys = sorted(p.stem for p in todo.glob("*.geojson"))
    grid = {}
    for k in keys:
        with rasterio.open(todo / f"{k}.tif") as ds:
            grid[k] = (ds.read(1), ds.transform, ds.crs)
    ok_png, ok_vec, ok_tif, bad_colour, bad_class, bad_shape, bad_crs, bowtie, untouched = keys
    # good: palette PNG (rangeland with the pre-annotated buildings)
    lab = np.where(grid[ok_png][0] == 8, 8, 2).astype(np.uint8)
    _palette_png(lab, done / f"{ok_png}.png")
    # good: polygons with class names, in the tile CRS
    t = grid[ok_vec][1]
    x0, y0 = t.c, t.f
    polys = [box(x0, y0 - 512 * GSD, x0 + 1024 * GSD, y0), box(x0, y0 - 1024 * GSD, x0 + 1024 * GSD, y0 - 512 * GSD)]
    gpd.GeoDataFrame({"class_name": ["tree", "Water"]}, geometry=polys, crs=CRS).to_file(done / f"{ok_vec}.geojson")
    # good: index GeoTIFF on the tile grid
    with rasterio.open(todo / f"{ok_tif}.tif") as src:
        profile = src.profile
        arr = np.where(src.read(1) == 8, 8, 7).astype(np.uint8)
    with rasterio.open(done / f"{ok_tif}.tif", "w", **profile) as dst:
        dst.write(arr, 1)
    # bad: unknown colour, unknown class name, wrong shape, a CRS that cannot be aligned
    _palette_png(np.full((1024, 1024), 2, np.uint8), done / f"{bad_colour}.png", extra_colour=(1, 2, 3))
    gpd.GeoDataFrame({"class_name": ["lava"]}, geometry=[polys[0]], crs=CRS).to_file(done / f"{bad_class}.geojson")
    _palette_png(np.full((1000, 1000), 2, np.uint8), done / f"{bad_shape}.png")
    with rasterio.open(done / f"{bad_crs}.tif", "w", driver="GTiff", width=1024, height=1024, count=1,
                       dtype="uint8", crs="EPSG:32634", transform=grid[bad_crs][1]) as dst:
        dst.write(np.full((1, 1024, 1024), 2, np.uint8))
    # an invalid (self-intersecting) polygon that make_valid repairs
    tb = grid[bowtie][1]
    bow = Polygon([(tb.c, tb.f), (tb.c + 512, tb.f - 512), (tb.c + 512, tb.f), (tb.c, tb.f - 512)])
    gpd.GeoDataFrame({"class": [5]}, geometry=[bow], crs=CRS).to_file(done / f"{bowtie}.geojson")
    # the pre-annotation copied to done/ unchanged: not a label, stays pending with its reason
    (done / f"{untouched}.tif").write_bytes((todo / f"{untouched}.tif").read_bytes())

    assert build_in_process(workflow, "r2")
    rel = workflow / "data" / "releases" / "r2"
    assert validate_release(rel) == []
    manifest = json.loads((rel / "manifest.json").read_text())
    released = {im["key"]: im for im in manifest["images"]}
    assert set(released) == {ok_png, ok_vec, ok_tif, bowtie}
    assert released[ok_vec]["class_pixels"]["5"] == 512 * 1024 and released[ok_vec]["class_pixels"]["6"] == 512 * 1024
    assert released[ok_png]["class_pixels"]["8"] > 0 and released[ok_png]["class_pixels"]["2"] > 0
    rows = {Path(r["file"]).stem: r for r in csv.DictReader((rel / "rejects.csv").open()) if r["stage"] == "annotation"}
    assert set(rows) == {bad_colour, bad_class, bad_shape, bad_crs}
    assert "#010203" in rows[bad_colour]["reason"].upper() or "010203" in rows[bad_colour]["reason"].upper()
    assert "lava" in rows[bad_class]["reason"]
    assert "1000x1000" in rows[bad_shape]["reason"]
    assert "align" in rows[bad_crs]["reason"] or "CRS" in rows[bad_crs]["reason"]
    pending = {r["key"]: r for r in csv.DictReader((rel / "pending.csv").open())}
    assert set(pending) == {bad_colour, bad_class, bad_shape, bad_crs, untouched}
    assert pending[untouched]["reason"] == (f"{untouched}.tif: same pixels as its pre-annotation "
                                            f"todo/{untouched}.tif (unedited)")
    assert pending[bad_colour]["reason"].startswith("awaiting annotation")
    labels = manifest["summary"]["labels"]
    assert (labels["pending"], labels["pending_unfinished"], labels["annotation_repaired_polygons"]) == (5, 1, 1)
    # the first build wrote no release
    assert not (workflow / "data" / "releases" / "r1").exists()
