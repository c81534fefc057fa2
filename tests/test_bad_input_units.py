"""Bad-input cases that tests/test_bad_input.py does not drive through a whole build, at the level of the
function the pipeline calls for them (same code path as the Luigi task):

* a skewed (sheared, not only rotated) source affine: ``PrepareScene`` -> :func:`pipeline.raster.plan.plan_scene`
  accepts it and plans a north-up UTM grid, ``TileScene`` -> :func:`pipeline.raster.tiling.write_scene_tiles`
  warps it;
* a source's building footprints (the pre-annotation of pending tiles, ``ExportAnnotationTodo`` ->
  :func:`pipeline.labels.labelling.export_todo`): footprints outside the tile, footprints whose file declares
  another CRS, invalid (self-intersecting) polygons and an unreadable footprint file.  None of them loses
  the tile: it stays pending with its image exported, and an unreadable file is named in the export's
  ``footprints_error``.
"""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from shapely.geometry import Polygon, box

from pipeline.labels.labelling import export_todo
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import write_scene_tiles
from pipeline.scene import Scene

UTM = "EPSG:32633"
GSD = 0.3
N = 256
X0, Y0 = 500000.0, 5000000.0


def _tif(path: Path, transform: Affine, n: int = N) -> Path:
    rng = np.random.default_rng(1)
    data = rng.integers(1, 255, (3, n, n), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs=UTM,
                       transform=transform) as ds:
        ds.write(data)
    return path


def _scene(image: Path, **kw) -> Scene:
    return Scene(source="src", scene_id=image.stem, kind="local", image=str(image), license="CC0",
                 attribution="test", **kw)


def test_skewed_transform_is_accepted_and_warped_north_up(tmp_path):
    skewed = Affine.translation(X0, Y0) @ Affine.shear(15, 0) @ Affine.scale(GSD, -GSD)
    image = _tif(tmp_path / "skewed.tif", skewed, n=1200)
    scene = _scene(image)
    plan = plan_scene(scene, tile_size=1024)
    assert plan["status"] == "ok"
    t = plan["grid"]["transform"]
    assert plan["grid"]["crs"] == UTM and t[1] == 0 and t[3] == 0 and t[0] == -t[4] == plan["grid"]["gsd"]
    assert 0.25 <= plan["native"]["gsd"] <= 0.5  # measured along the sheared pixel steps
    tiles, dropped = write_scene_tiles(scene, plan, tmp_path / "out", tile_size=1024, max_nodata_fraction=0.6)
    assert len(tiles) + len(dropped) >= 1
    for rec in tiles:
        with rasterio.open(tmp_path / "out" / rec["image"]) as ds:
            assert ds.transform.b == 0 and ds.transform.d == 0 and ds.count == 3


@pytest.fixture
def pending_tile(tmp_path):
    transform = Affine(GSD, 0, X0, 0, -GSD, Y0)
    image = _tif(tmp_path / "tile.tif", transform)
    tile = {"tile_id": "r000_c000", "crs": UTM, "transform": list(transform)[:6], "window": [0, 0, N, N]}
    return image, tile


def _px_box(c0, r0, c1, r1) -> Polygon:
    return box(X0 + c0 * GSD, Y0 - r1 * GSD, X0 + c1 * GSD, Y0 - r0 * GSD)


def _export(tmp_path, image, tile, footprints: Path, crs: str | None = UTM) -> tuple[dict, np.ndarray]:
    scene = _scene(image, footprints=str(footprints), footprints_crs=crs)
    todo = tmp_path / f"todo-{footprints.stem}"
    rec = export_todo(scene, tile, image, todo)
    files = sorted(p.name for p in todo.iterdir())
    assert len(files) == 3 and any(f.endswith("_image.tif") for f in files), files  # nothing lost
    with rasterio.open(next(p for p in todo.iterdir() if p.suffix == ".tif" and "_image" not in p.name)) as ds:
        return rec, ds.read(1)


def test_source_footprints_outside_the_tile_give_an_empty_preannotation(tmp_path, pending_tile):
    image, tile = pending_tile
    far = gpd.GeoDataFrame(geometry=[_px_box(5000, 5000, 5010, 5010)], crs=UTM)
    far.to_file(path := tmp_path / "far.geojson")
    rec, mask = _export(tmp_path, image, tile, path)
    assert rec["buildings"] == 0 and int(mask.sum()) == 0 and "footprints_error" not in rec


def test_source_footprints_in_another_crs_are_reprojected(tmp_path, pending_tile):
    image, tile = pending_tile
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    b = _px_box(10, 20, 40, 50)
    ll = Polygon([to_ll.transform(x, y) for x, y in b.exterior.coords])
    gpd.GeoDataFrame(geometry=[ll], crs="EPSG:4326").to_file(path := tmp_path / "lonlat.geojson")
    rec, mask = _export(tmp_path, image, tile, path)  # the scene says UTM, the file says lon/lat
    assert rec["buildings"] == 1 and "footprints_error" not in rec
    rows, cols = np.nonzero(mask == 8)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 49, 10, 39)


def test_source_footprints_invalid_polygon_is_repaired(tmp_path, pending_tile):
    image, tile = pending_tile
    x = lambda c: X0 + c * GSD  # noqa: E731
    y = lambda r: Y0 - r * GSD  # noqa: E731
    bow_tie = Polygon([(x(10), y(10)), (x(50), y(50)), (x(50), y(10)), (x(10), y(50)), (x(10), y(10))])
    assert not bow_tie.is_valid
    gpd.GeoDataFrame(geometry=[bow_tie], crs=UTM).to_file(path := tmp_path / "bowtie.geojson")
    rec, mask = _export(tmp_path, image, tile, path)
    assert rec["buildings"] >= 1 and int((mask == 8).sum()) > 0 and "footprints_error" not in rec


def test_unreadable_source_footprints_are_named_and_the_tile_still_exported(tmp_path, pending_tile):
    image, tile = pending_tile
    (path := tmp_path / "broken.geojson").write_text("{not json")
    rec, mask = _export(tmp_path, image, tile, path)
    assert str(path) in rec["footprints_error"] and "unreadable footprint file" in rec["footprints_error"]
    assert int(mask.sum()) == 0
    missing = tmp_path / "missing.geojson"
    rec2 = export_todo(_scene(image, footprints=str(missing), footprints_crs=UTM), tile, image, tmp_path / "t2")
    assert rec2["footprints_error"] == f"{missing}: footprint file does not exist"
    assert json.loads((tmp_path / "t2" / f"{rec2['tile']}.geojson").read_text())["features"] == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_building_mask_of_another_shape_is_named_and_the_tile_still_exported(tmp_path, pending_tile):
    image, tile = pending_tile
    good = np.zeros((N, N), np.uint8)
    good[20:50, 10:40] = 255
    bad = np.zeros((N // 2, N // 2), np.uint8)  # an Inria-style gt/ mask that does not match its image
    for name, data in (("mask_ok.tif", good), ("mask_half.tif", bad)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                           count=1, dtype="uint8") as ds:
            ds.write(data[np.newaxis])
    rec = export_todo(_scene(image, building_mask=str(tmp_path / "mask_ok.tif")), tile, image, tmp_path / "ok")
    assert rec["buildings"] == 1 and "footprints_error" not in rec
    rec = export_todo(_scene(image, building_mask=str(tmp_path / "mask_half.tif")), tile, image, tmp_path / "half")
    assert rec["footprints_error"] == f"{tmp_path / 'mask_half.tif'}: building mask shape 128x128 differs from " \
                                      f"image {N}x{N}"
    assert (tmp_path / "half" / f"{rec['tile']}_image.tif").is_file() and rec["buildings"] == 0
    # ... and it becomes one rejects.csv row (one per file and reason, however many tiles used the mask)
    from pipeline.dataset.pool import REJECT_COLUMNS, footprint_rejects

    rows = footprint_rejects([rec, dict(rec, key="other"), {"key": "fine"}], {"src": {"root": str(tmp_path)}})
    assert rows == [{"source": rec["reject"]["source"], "scene_id": rec["reject"]["scene_id"],
                     "file": "mask_half.tif", "stage": "footprints",
                     "reason": f"building mask shape 128x128 differs from image {N}x{N}"}]
    assert set(rows[0]) == set(REJECT_COLUMNS)


def test_a_size_just_over_a_limit_is_told_in_bytes(tmp_path):
    """A size and the limit it is over read alike once rounded ("29.2 KiB, over local_file_max_bytes (29.2 KiB)"):
    then both are given in bytes."""
    from pipeline.limits import human_sizes
    from pipeline.sources.localfs import file_problem

    path = tmp_path / "a.tif"
    path.write_bytes(b"x" * 29_883)
    assert file_problem(path, 29_850) == "is 29,883 B, over local_file_max_bytes (29,850 B)"
    assert human_sizes(3 << 20, 1 << 20) == ("3.0 MiB", "1.0 MiB")
