"""Tiles written once (final COGs at tiling, linked by the release), box+bilinear, header-only plan (issue 17)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.errors import AnnotationRejected, SceneRejected
from pipeline.labels.landcover import write_label_tiles
from pipeline.raster.cog import follows_policy, has_label_metadata, place_cog, validate_cog, write_tile_cog
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import write_scene_tiles
from pipeline.raster.warp import prereduce_factor
from tests.test_raster import make_scene, rgb, write_tif

# 2048² at 0.15 m on the 0.3 m lattice (499999.8 = 1666666 x 0.3, 5000000.1 = 16666667 x 0.3): one 1024² tile
ORIGIN = from_origin(499999.8, 5000000.1, 0.15, 0.15)
TILED = {"tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """An aligned 2x scene with a label, tiled once: (scene, plan, out dir, tiles, labels, source pixels)."""
    tmp = tmp_path_factory.mktemp("aligned")
    data = rgb(2048, 2048, seed=3)
    label = np.random.default_rng(4).integers(0, 9, (2048, 2048)).astype(np.uint8)
    ip = write_tif(tmp / "i.tif", data, "EPSG:32633", ORIGIN, **TILED)
    lp = write_tif(tmp / "l.tif", label, "EPSG:32633", ORIGIN, **TILED)
    scene = make_scene(ip, landcover=str(lp))
    plan = plan_scene(scene)
    tiles, dropped = write_scene_tiles(scene, plan, tmp / "out")
    labels = write_label_tiles(scene, plan, tiles, tmp / "out")
    return scene, plan, tmp / "out", tiles, labels, data


def test_box_bilinear_on_an_aligned_integer_grid_is_the_box_average(aligned):
    _, plan, out, tiles, _, data = aligned
    assert plan["resampling"] == {"image": "box+bilinear", "label": "mode"}
    assert plan["grid"]["width"] == plan["grid"]["height"] == 1024 and [t["tile_id"] for t in tiles] == ["r000_c000"]
    with rasterio.open(out / tiles[0]["image"]) as ds:
        got = ds.read()
    box = data.reshape(3, 1024, 2, 1024, 2).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(got.astype(np.float64) - box).max() <= 0.5


def test_prereduce_factor():
    assert prereduce_factor("box+bilinear", 2.0, True) == 2
    assert prereduce_factor("box+bilinear", 3.9, True) == 3
    assert prereduce_factor("box+bilinear", 1.9, True) == 1          # below 1.95: GDAL average at full res
    assert prereduce_factor("box+bilinear", 4.0, False) == 1         # nodata / alpha / mask in the source
    assert prereduce_factor("average", 4.0, True) == 1


def test_tiles_are_final_cogs_and_the_release_links_them(aligned, tmp_path):
    _, _, out, tiles, labels, _ = aligned
    image, label = out / tiles[0]["image"], out / labels[0]["label"]
    for path, kind in ((image, "image"), (label, "label")):
        assert validate_cog(path) == [] and follows_policy(path, kind=kind)
        with rasterio.open(path) as ds:
            assert ds.overviews(1) == [2] and ds.block_shapes[0] == (512, 512)
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert kind == "image" or has_label_metadata(ds)
        placed = place_cog(path, tmp_path / "rel" / f"{kind}.tif", kind=kind)
        assert os.stat(placed).st_ino == os.stat(path).st_ino          # a hard link: no pixel re-encoded


def test_write_tile_cog_mask_overview_and_determinism(tmp_path):
    data = rgb(1024, 1024)
    mask = np.full((1024, 1024), 255, np.uint8)
    mask[:, :40] = 0
    kw = {"crs": "EPSG:32633", "transform": from_origin(500000, 5000000, 0.3, 0.3), "kind": "image", "mask": mask}
    a, b = write_tile_cog(tmp_path / "a.tif", data, **kw), write_tile_cog(tmp_path / "b.tif", data, **kw)
    assert a.read_bytes() == b.read_bytes() and validate_cog(a) == []
    with rasterio.open(a) as ds:
        assert np.array_equal(ds.read(), data) and np.array_equal(ds.dataset_mask(), mask)
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        ov = ds.dataset_mask(out_shape=(512, 512))
        assert ov[:, :20].max() == 0 and ov[:, 20:].min() == 255


def test_header_only_plan_and_a_corrupt_middle_block_is_rejected_by_the_tiling(tmp_path):
    path = write_tif(tmp_path / "c.tif", rgb(2048, 2048), "EPSG:32633", ORIGIN, **TILED)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 400] = bytes(range(200)) * 2
    path.write_bytes(bytes(raw))
    scene = make_scene(path)
    plan = plan_scene(scene)                                          # first and last blocks are intact
    assert plan["status"] == "ok"
    with pytest.raises(SceneRejected) as exc:
        write_scene_tiles(scene, plan, tmp_path / "out")
    assert exc.value.reason.startswith("cannot read") and exc.value.file == str(path)


def test_bad_label_values_under_a_tile_leave_no_label_file(aligned, tmp_path):
    scene, plan, out, tiles, _, _ = aligned
    label = np.ones((2048, 2048), np.uint8)
    label[1000, 1000] = 42
    lp = write_tif(tmp_path / "bad.tif", label, "EPSG:32633", ORIGIN, **TILED)
    bad = make_scene(scene.image, landcover=str(lp))
    (tmp_path / "o" / "images").mkdir(parents=True)
    os.link(out / tiles[0]["image"], tmp_path / "o" / tiles[0]["image"])
    with pytest.raises(AnnotationRejected, match=r"outside 0\.\.8: \[42\]"):
        write_label_tiles(bad, plan, tiles, tmp_path / "o")
    assert not list((tmp_path / "o" / "labels").glob("*.tif"))
