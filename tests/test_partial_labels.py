"""A source whose labels cover only some classes (LandCover.ai: 0 background, 1 building, 2 woodland, 3 water,
4 road): a tile its label leaves more than half unlabelled is not released half empty; it is pending, with the
reason in ``pending.csv``, and its pre-annotation starts from the source's classes (GeoTIFF and GeoJSON that
import back to the same pixels), so annotators only add what the source lacks.  Tiles the source labels enough
release as before."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import tasks  # noqa: F401  (registers the tasks)
from pipeline.labels.annotations.grid import TileGrid
from pipeline.labels.annotations.importer import import_annotation
from pipeline.release.validate.report import validate_release
from tests.helpers_build import build_in_process

CRS = "EPSG:32634"  # Poland
X0, Y0, GSD, SIZE = 500000.0, 5560000.0, 0.5, 1100  # one 1024 px tile at 0.5 m per scene
LANDCOVER_AI = {0: 0, 1: 8, 2: 5, 3: 6, 4: 4}  # background unlabelled, building, woodland -> tree, water, road


def _scene(folder: Path, name: str, mask: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    transform = from_origin(X0 + 2000 * seed, Y0, GSD, GSD)
    for sub, data in (("", rng.integers(30, 220, size=(3, SIZE, SIZE), dtype=np.uint8)), ("masks", mask[None])):
        path = folder / sub / f"{name}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=data.shape[0], dtype="uint8",
                           crs=CRS, transform=transform, tiled=True, compress="deflate") as ds:
            ds.write(data)


def test_partial_source_labels_become_the_pre_annotation(tmp_path):
    full = np.full((SIZE, SIZE), 2, np.uint8)  # woodland, a lake, a road and houses: every pixel labelled
    full[100:400, 100:400], full[600:620, :], full[700:760, 200:260] = 3, 4, 1
    part = np.zeros((SIZE, SIZE), np.uint8)  # background (fields, meadows) over ~70 % of the tile
    part[:330, :], part[500:520, :], part[800:860, 100:160] = 2, 4, 1
    _scene(tmp_path / "sheets", "M-34-5-A-b-1-1", full, 1)
    _scene(tmp_path / "sheets", "M-34-5-A-b-1-2", part, 2)
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: landcover-ai
    kind: local
    location: {tmp_path / 'sheets'}
    license: CC BY-NC-SA 4.0
    attribution: LandCover.ai (Boguszewski et al. 2021)
    options:
      labels: masks
      region: warsaw
      classes: {{{", ".join(f"{k}: {v}" for k, v in LANDCOVER_AI.items())}}}
""")
    assert build_in_process(tmp_path, "r1")
    rel = tmp_path / "data" / "releases" / "r1"
    assert validate_release(rel) == []
    images = json.loads((rel / "manifest.json").read_text())["images"]
    assert [im["source_scene_id"] for im in images] == ["m-34-5-a-b-1-1"]
    assert images[0]["unlabelled_pixels"] == 0 and images[0]["class_pixels"]["8"] > 0
    pending = list(csv.DictReader((rel / "pending.csv").open()))
    assert [p["source_scene_id"] for p in pending] == ["m-34-5-a-b-1-2"]
    assert pending[0]["reason"].startswith("awaiting annotation: the source's label M-34-5-A-b-1-2.tif leaves ")
    assert pending[0]["reason"].endswith("(more than 50 %); its classes are the pre-annotation")

    key = pending[0]["key"]
    todo = tmp_path / "data" / "annotation" / "todo"
    with rasterio.open(todo / f"{key}.tif") as ds:
        pre, profile = ds.read(1), ds.profile
        grid = TileGrid(ds.crs.to_string(), tuple(ds.transform)[:6], ds.width, ds.height)
        col, row = ~ds.transform * (X0 + 4000, Y0)  # the scene's corner in tile pixels
    r0, c0 = -round(row), -round(col)
    window = part[r0:r0 + 1024, c0:c0 + 1024]
    assert np.array_equal(pre, np.vectorize(LANDCOVER_AI.get)(window).astype(np.uint8))  # mapped, not resampled
    share = float(pending[0]["reason"].split(" leaves ")[1].split(" %")[0])
    assert share == pytest.approx(100 * (window == 0).mean(), abs=0.05) and share > 50
    assert set(np.unique(pre)) == {0, 4, 5, 8}
    from_vector, _ = import_annotation(todo / f"{key}.geojson", grid)  # the polygons say the same
    assert np.array_equal(from_vector, pre)
    names = {f["properties"]["class_name"] for f in json.loads((todo / f"{key}.geojson").read_text())["features"]}
    assert names == {"tree", "road", "building"}

    done = todo.parent / "done"
    done.mkdir()
    with rasterio.open(done / f"{key}.tif", "w", **profile) as dst:  # the annotator adds the fields
        dst.write(np.where(pre == 0, 7, pre).astype(np.uint8), 1)
    assert build_in_process(tmp_path, "r2")
    rel2 = tmp_path / "data" / "releases" / "r2"
    assert validate_release(rel2) == []
    released = {im["source_scene_id"]: im for im in json.loads((rel2 / "manifest.json").read_text())["images"]}
    assert set(released) == {"m-34-5-a-b-1-1", "m-34-5-a-b-1-2"}
    added = released["m-34-5-a-b-1-2"]
    assert added["class_pixels"]["7"] == int((pre == 0).sum()) and added["unlabelled_pixels"] == 0
    assert released["m-34-5-a-b-1-1"]["id"] == images[0]["id"] and released["m-34-5-a-b-1-1"]["split"] == \
        images[0]["split"]
    assert not list(csv.DictReader((rel2 / "pending.csv").open()))
