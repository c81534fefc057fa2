"""Tests for pipeline.raster.tiling: lattice, warped image / label tiles, nodata policy, determinism, memory."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from pipeline.errors import AnnotationRejected
from pipeline.labels.landcover import write_label_tiles
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import tile_lattice, write_scene_tiles
from tests.conftest import ROOT, shared_file
from tests.test_raster import deg_transform, make_scene, rgb, write_tif

T = 1024


# --------------------------------------------------------------------------------------------------
# Lattice
# --------------------------------------------------------------------------------------------------

def test_lattice_small_scene_overhangs_equally():
    assert tile_lattice(1000, 1000) == [(0, 0, -12, -12, 1024, 1024)]


def test_lattice_counts_and_centring():
    lat = tile_lattice(2100, 3072)
    assert [(r, c) for r, c, *_ in lat] == [(r, c) for r in range(3) for c in range(2)]
    assert {w[2] for w in lat} == {26, 1050}       # (2100 - 2048) // 2 = 26 margin
    assert {w[3] for w in lat} == {0, 1024, 2048}
    assert all(w[4:] == (1024, 1024) for w in lat)
    # 3000: remainder 952 would overhang by 72 px > 5 % -> 2 tiles; 3050: overhang 22 -> 3 tiles
    assert [w[2] for w in tile_lattice(3000, 1024)] == [476, 1500]
    assert [w[2] for w in tile_lattice(3050, 1024)] == [-11, 1013, 2037]
    assert tile_lattice(900, 5000) == []
    assert tile_lattice(972, 1024) == []     # overhang 52 > 51.2
    assert len(tile_lattice(973, 1024)) == 1
    assert len(tile_lattice(3000, 1024, max_overhang=0.1)) == 3


@pytest.mark.parametrize("n", [1, 500, 1023, 1024, 1025, 2047, 2048, 4000, 5119, 10000])
def test_lattice_properties(n):
    offs = [w[2] for w in tile_lattice(n, 1024)]
    k = len(offs)
    assert k in (n // 1024, n // 1024 + 1)
    assert all(b - a == 1024 for a, b in zip(offs, offs[1:]))          # contiguous, no overlap
    if k:
        left, right = offs[0], n - (offs[-1] + 1024)
        assert left in (right, right - 1)                               # centred (odd pixel right)
        assert -0.05 * 1024 <= left + right                             # overhang within 5 %


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def read(path: Path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.crs, ds.transform, ds.profile, ds.dataset_mask()


def utm_block_scene(tmp_path: Path, label: np.ndarray, name: str = "s", image=None):
    """A UTM-south scene at 0.1 m whose origin lies on the 0.3 m lattice, with ``label`` as landcover."""
    h, w = label.shape
    transform = from_origin(500001.0, 7999999.8, 0.1, 0.1)
    img = image if image is not None else rgb(h, w)
    ip = write_tif(tmp_path / f"{name}.tif", img, "EPSG:32733", transform)
    lp = write_tif(tmp_path / f"{name}_label.tif", label.astype(np.uint8), "EPSG:32733", transform)
    return make_scene(ip, landcover=str(lp))


# --------------------------------------------------------------------------------------------------
# Image + label tiles
# --------------------------------------------------------------------------------------------------

def test_tiles_from_wgs84_scene(tmp_path):
    # 0.15 m in EPSG:4326 on the central meridian of zone 33 -> 0.3 m grid of about 1100 px -> 1 tile
    src_t = deg_transform(15.0 - 2200 * 0.15 / 2 / (111_320 * math.cos(math.radians(45))), 45.0, 0.15)
    img = rgb(2200, 2200)
    lon_f, lat_f = src_t @ (1200.5, 900.5)                         # centre of a bright feature
    img[:, 890:911, 1190:1211] = 255                                 # 21 x 21 px = 3.15 m square
    label = np.random.default_rng(1).integers(0, 9, (2200, 2200)).astype(np.uint8)
    ip = write_tif(tmp_path / "wgs.tif", img, "EPSG:4326", src_t)
    lp = write_tif(tmp_path / "wgs_label.tif", label, "EPSG:4326", src_t)
    scene = make_scene(ip, landcover=str(lp))
    plan = plan_scene(scene)
    assert plan["grid"]["crs"] == "EPSG:32633" and plan["grid"]["gsd"] == 0.3
    assert plan["resampling"] == {"image": "box+bilinear", "label": "mode"}
    out = tmp_path / "out"
    tiles, dropped = write_scene_tiles(scene, plan, out)
    assert dropped == [] and len(tiles) == 1
    t = tiles[0]
    assert set(t) == {"tile_id", "row", "col", "window", "crs", "transform", "bounds", "gsd",
                      "nodata_fraction", "image"}
    assert t["tile_id"] == "r000_c000" and t["image"] == "images/r000_c000.tif"
    assert t["crs"] == "EPSG:32633" and t["gsd"] == 0.3 and t["window"][2:] == [1024, 1024]
    data, crs, transform, profile, _ = read(out / t["image"])
    assert data.shape == (3, T, T) and data.dtype == np.uint8
    assert crs.to_epsg() == 32633
    assert tuple(transform)[:6] == tuple(t["transform"])
    assert transform.a == 0.3 and transform.e == -0.3 and transform.b == transform.d == 0
    assert t["bounds"] == pytest.approx([transform.c, transform.f - T * 0.3, transform.c + T * 0.3, transform.f])
    assert profile["compress"] == "deflate" and profile["blockxsize"] == 512 and profile["tiled"]
    assert profile.get("nodata") is None
    # pixel alignment: the bright feature lands where its UTM coordinates say (+-1 px)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(lon_f, lat_f)
    col_e, row_e = ~transform @ (x, y)
    rows, cols = np.nonzero(np.all(data == 255, axis=0))
    assert len(rows) > 20
    assert abs(cols.mean() + 0.5 - col_e) <= 1 and abs(rows.mean() + 0.5 - row_e) <= 1

    labels = write_label_tiles(scene, plan, tiles, out)
    assert labels[0]["tile_id"] == "r000_c000" and labels[0]["status"] == "labelled"
    assert labels[0]["label"] == "labels/r000_c000.tif"
    ldata, lcrs, ltransform, lprofile, _ = read(out / labels[0]["label"])
    assert ldata.shape == (1, T, T) and ldata.dtype == np.uint8
    assert lcrs == crs and ltransform == transform and lprofile.get("nodata") is None
    assert set(np.unique(ldata)) <= set(range(9))
    counts = np.bincount(ldata.ravel(), minlength=9)
    assert labels[0]["class_pixels"] == {str(k): int(counts[k]) for k in range(1, 9)}
    assert labels[0]["unlabelled_pixels"] == int(counts[0])


def test_labels_mode_preserves_ids_checkerboard(tmp_path):
    yy, xx = np.mgrid[0:1650, 0:1650]
    label = np.where((yy + xx) % 2 == 0, 2, 5).astype(np.uint8)
    scene = utm_block_scene(tmp_path, label, "checker")
    plan = plan_scene(scene)
    assert plan["grid"]["gsd"] == 0.3 and plan["resampling"]["label"] == "mode"
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out", tile_size=512)
    recs = write_label_tiles(scene, plan, tiles, tmp_path / "out")
    ldata = read(tmp_path / "out" / recs[0]["label"])[0]
    assert ldata.shape == (1, 512, 512)
    assert set(np.unique(ldata)) == {2, 5}
    assert recs[0]["class_pixels"]["2"] + recs[0]["class_pixels"]["5"] == 512 * 512


def test_labels_mode_reproduces_3x3_blocks(tmp_path):
    blocks = np.random.default_rng(7).integers(0, 9, (1100, 1100)).astype(np.uint8)
    label = np.kron(blocks, np.ones((3, 3), np.uint8))          # 3300 x 3300 at 0.1 m
    # image made the same way: the box average of constant 3x3 blocks is exact
    scene = utm_block_scene(tmp_path, label, "blocks", image=np.stack([label * 20, label * 10, label * 5]))
    plan = plan_scene(scene)
    assert plan["grid"]["width"] == 1100 and plan["grid"]["transform"][2] == 500001.0
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    recs = write_label_tiles(scene, plan, tiles, tmp_path / "out")
    col_off, row_off = tiles[0]["window"][:2]
    assert (col_off, row_off) == (38, 38)
    expected = blocks[row_off:row_off + T, col_off:col_off + T]
    ldata = read(tmp_path / "out" / recs[0]["label"])[0][0]
    np.testing.assert_array_equal(ldata, expected)
    idata = read(tmp_path / "out" / tiles[0]["image"])[0]
    np.testing.assert_array_equal(idata[0], expected * 20)


def test_nodata_border_drops_tile_and_masks_kept_tile(tmp_path):
    transform = from_origin(500001.0, 7999999.8, 0.3, 0.3)
    mostly = rgb(1100, 1100)
    mostly[:, :, :250] = 0                           # 250 - 38 = 212 of 1024 columns nodata -> 20.7 %
    p1 = write_tif(tmp_path / "border.tif", mostly, "EPSG:32733", transform, nodata=0)
    s1 = make_scene(p1)
    tiles, dropped = write_scene_tiles(s1, plan_scene(s1), tmp_path / "o1")
    assert tiles == [] and dropped == [{"tile_id": "r000_c000", "reason": "nodata 20.7% > 5%"}]
    assert not (tmp_path / "o1" / "images" / "r000_c000.tif").exists()

    little = rgb(1100, 1100)
    little[:, :, :60] = 0                            # 60 - 38 = 22 columns nodata -> 2.15 %
    label = np.full((1100, 1100), 3, np.uint8)
    p2 = write_tif(tmp_path / "little.tif", little, "EPSG:32733", transform, nodata=0)
    l2 = write_tif(tmp_path / "little_label.tif", label, "EPSG:32733", transform)
    s2 = make_scene(p2, landcover=str(l2))
    plan = plan_scene(s2)
    tiles, dropped = write_scene_tiles(s2, plan, tmp_path / "o2")
    assert dropped == [] and tiles[0]["nodata_fraction"] == pytest.approx(22 / 1024, abs=1e-6)
    data, _, _, _, mask = read(tmp_path / "o2" / tiles[0]["image"])
    assert (mask[:, :22] == 0).all() and (mask[:, 22:] == 255).all()
    assert (data[:, :, :22] == 0).all()
    recs = write_label_tiles(s2, plan, tiles, tmp_path / "o2")
    ldata = read(tmp_path / "o2" / recs[0]["label"])[0][0]
    assert (ldata[:, :22] == 0).all() and (ldata[:, 22:] == 3).all()
    assert recs[0]["unlabelled_pixels"] == 22 * 1024 and recs[0]["class_pixels"]["3"] == 1002 * 1024


def test_uint16_grey_becomes_stretched_rgb(tmp_path):
    yy, xx = np.mgrid[0:1050, 0:1050]
    data = (300 + xx * 2 + yy).astype(np.uint16)
    path = write_tif(tmp_path / "pan.tif", data, "EPSG:32616", from_origin(733601, 3725139, 0.5, 0.5))
    scene = make_scene(path)
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    img = read(tmp_path / "out" / tiles[0]["image"])[0]
    assert img.shape == (3, T, T) and img.dtype == np.uint8
    assert (img[0] == img[1]).all() and (img[1] == img[2]).all()
    assert img.min() == 0 and img.max() == 255                       # 2..98 % stretch clips the ends
    lo, hi = plan["radiometry"]["low"][0], plan["radiometry"]["high"][0]
    # the value of an interior pixel follows the linear stretch
    src_val = 300 + 2 * (500 + 13) + (500 + 13)                    # tile offset 13 px (1050-1024)//2
    assert int(img[0, 500, 500]) == pytest.approx(255 * (src_val - lo) / (hi - lo), abs=1)


def test_alpha_band_is_nodata_mask(tmp_path):
    data = np.concatenate([rgb(1100, 1100), np.full((1, 1100, 1100), 255, np.uint8)])
    data[3, :, -90:] = 0                          # 90 - 38 = 52 columns transparent -> 5.1 % -> dropped
    path = write_tif(tmp_path / "rgba.tif", data, "EPSG:32733", from_origin(500001.0, 7999999.8, 0.3, 0.3),
                     photometric="RGB", alpha="YES")
    scene = make_scene(path)
    tiles, dropped = write_scene_tiles(scene, plan_scene(scene), tmp_path / "out")
    assert dropped == [{"tile_id": "r000_c000", "reason": "nodata 5.1% > 5%"}]
    tiles, dropped = write_scene_tiles(scene, plan_scene(scene), tmp_path / "out2", max_nodata_fraction=0.06)
    img, _, _, _, mask = read(tmp_path / "out2" / tiles[0]["image"])
    assert img.shape[0] == 3 and (mask[:, -52:] == 0).all() and (img[:, :, -52:] == 0).all()


def test_outputs_are_byte_identical_on_rerun(tmp_path):
    blocks = np.random.default_rng(11).integers(0, 9, (700, 700)).astype(np.uint8)
    label = np.kron(blocks, np.ones((3, 3), np.uint8))[:2000, :2000]
    src_t = deg_transform(15.0, 45.0, 0.15)
    ip = write_tif(tmp_path / "a.tif", rgb(2000, 2000), "EPSG:4326", src_t)
    lp = write_tif(tmp_path / "a_label.tif", label, "EPSG:4326", src_t)
    scene = make_scene(ip, landcover=str(lp))
    outputs = []
    for run in ("run1", "run2"):
        plan = plan_scene(scene)
        tiles, dropped = write_scene_tiles(scene, plan, tmp_path / run, tile_size=256)
        labels = write_label_tiles(scene, plan, tiles, tmp_path / run)
        files = {p.relative_to(tmp_path / run).as_posix(): p.read_bytes()
                 for p in sorted((tmp_path / run).rglob("*.tif"))}
        outputs.append((json.dumps([plan, tiles, dropped, labels], sort_keys=True), files))
    assert len(outputs[0][1]) >= 8
    assert outputs[0] == outputs[1]


def test_pending_labels_without_landcover(tmp_path):
    path = write_tif(tmp_path / "x.tif", rgb(1024, 1024), "EPSG:32633", from_origin(500000, 5000000, 0.3, 0.3))
    scene = make_scene(path)
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    assert write_label_tiles(scene, plan, tiles, tmp_path / "out") == [
        {"tile_id": "r000_c000", "status": "pending", "label": None, "class_pixels": {}, "unlabelled_pixels": 0}]
    assert not (tmp_path / "out" / "labels").exists()


# --------------------------------------------------------------------------------------------------
# Label rejections
# --------------------------------------------------------------------------------------------------

def _label_case(tmp_path, label: np.ndarray, label_transform=None, label_crs="EPSG:32633", **kw):
    t = from_origin(500000, 5000000, 0.3, 0.3)
    tmp_path.mkdir(parents=True, exist_ok=True)
    ip = write_tif(tmp_path / "i.tif", rgb(1000, 1000), "EPSG:32633", t)
    lp = write_tif(tmp_path / "l.tif", label, label_crs, label_transform if label_transform is not None else t, **kw)
    scene = make_scene(ip, landcover=str(lp))
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    return scene, plan, tiles


def test_label_rejects_shape_values_and_georef(tmp_path):
    scene, plan, tiles = _label_case(tmp_path / "shape", np.ones((900, 900), np.uint8))
    with pytest.raises(AnnotationRejected) as exc:
        write_label_tiles(scene, plan, tiles, tmp_path / "shape" / "out")
    assert exc.value.reason == "label shape 900x900 differs from image 1000x1000"
    assert exc.value.file == scene.landcover

    bad = np.ones((1000, 1000), np.uint8)
    bad[5, 5], bad[9, 9] = 12, 255
    scene, plan, tiles = _label_case(tmp_path / "values", bad)
    with pytest.raises(AnnotationRejected, match=r"outside 0..8: \[12, 255\]"):
        write_label_tiles(scene, plan, tiles, tmp_path / "values" / "out")

    shifted = from_origin(500000 + 0.15, 5000000, 0.3, 0.3)             # half a pixel off
    scene, plan, tiles = _label_case(tmp_path / "geo", np.ones((1000, 1000), np.uint8), shifted)
    with pytest.raises(AnnotationRejected, match="geotransform"):
        write_label_tiles(scene, plan, tiles, tmp_path / "geo" / "out")

    scene, plan, tiles = _label_case(tmp_path / "crs", np.ones((1000, 1000), np.uint8), label_crs="EPSG:32634")
    with pytest.raises(AnnotationRejected, match="CRS"):
        write_label_tiles(scene, plan, tiles, tmp_path / "crs" / "out")


def test_label_without_georef_takes_the_images(tmp_path):
    label = np.full((1000, 1000), 6, np.uint8)
    label[:, :500] = 8
    # origin on the 0.3 m lattice, so the grid is the image's own pixel grid
    ip = write_tif(tmp_path / "i.tif", rgb(1000, 1000), "EPSG:32633", from_origin(500001.0, 5000000.1, 0.3, 0.3))
    lp = tmp_path / "l.png"
    with rasterio.open(lp, "w", driver="PNG", width=1000, height=1000, count=1, dtype="uint8") as dst:
        dst.write(label[np.newaxis])
    scene = make_scene(ip, landcover=str(lp))
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    recs = write_label_tiles(scene, plan, tiles, tmp_path / "out")
    ldata = read(tmp_path / "out" / recs[0]["label"])[0][0]
    # tile window starts at -12: 12 unlabelled columns, then 500 of class 8, 500 of class 6, 12 unlabelled
    assert (ldata[12:1012, 12:512] == 8).all() and (ldata[12:1012, 512:1012] == 6).all()
    assert recs[0]["unlabelled_pixels"] == T * T - 1000 * 1000


# --------------------------------------------------------------------------------------------------
# Real samples
# --------------------------------------------------------------------------------------------------

def test_real_inria_one_tile_with_aligned_label(tmp_path):
    image = shared_file("inria/austin_crop.tif")
    gt = shared_file("inria/austin_crop_gt.tif")
    # The raw mask is 0/255, not class ids: rejected as a landcover raster ...
    raw_scene = make_scene(image, landcover=str(gt))
    plan = plan_scene(raw_scene)
    tiles, dropped = write_scene_tiles(raw_scene, plan, tmp_path / "raw")
    with pytest.raises(AnnotationRejected, match=r"outside 0..8: \[255\]"):
        write_label_tiles(raw_scene, plan, tiles, tmp_path / "raw")
    # ... while the same mask as class 8 (its transform 0.3 vs the image's 0.29999999999997673) is used.
    with rasterio.open(gt) as ds:
        mask, profile = ds.read(1), ds.profile
    lp = write_tif(tmp_path / "gt8.tif", np.where(mask > 0, 8, 2).astype(np.uint8), profile["crs"],
                   profile["transform"])
    scene = make_scene(image, landcover=str(lp))
    assert len(tiles) == 1 and dropped == []
    t = tiles[0]
    assert t["crs"] == "EPSG:32614" and t["gsd"] == 0.3 and t["nodata_fraction"] < 0.05
    recs = write_label_tiles(scene, plan, tiles, tmp_path / "raw")
    ldata = read(tmp_path / "raw" / recs[0]["label"])[0][0]
    img, _, itransform, _, imask = read(tmp_path / "raw" / t["image"])
    assert read(tmp_path / "raw" / recs[0]["label"])[2] == itransform
    assert set(np.unique(ldata)) == {0, 2, 8}
    assert ((ldata == 0) == (imask == 0)).all()
    share = recs[0]["class_pixels"]["8"] / (recs[0]["class_pixels"]["8"] + recs[0]["class_pixels"]["2"])
    assert share == pytest.approx((mask > 0).mean(), abs=0.005)        # 14.2 % buildings


def test_real_palu_label_classes_preserved(tmp_path):
    image = shared_file("openearthmap/palu_8_image.tif")
    label = shared_file("openearthmap/palu_8_label.tif")
    scene = make_scene(image, landcover=str(label))
    plan = plan_scene(scene)
    assert plan["grid"]["crs"] == "EPSG:32750" and plan["grid"]["gsd"] == 0.5
    tiles, dropped = write_scene_tiles(scene, plan, tmp_path)
    assert len(tiles) == 1 and dropped == []
    recs = write_label_tiles(scene, plan, tiles, tmp_path)
    ldata = read(tmp_path / recs[0]["label"])[0][0]
    with rasterio.open(label) as ds:
        src = ds.read(1)
    assert set(np.unique(ldata)) - {0} == set(np.unique(src)) - {0} == {2, 3, 4, 5, 6, 8}
    for k in ("2", "3", "4", "5", "6", "8"):                    # nearest: class shares barely move
        assert recs[0]["class_pixels"][k] / (T * T) == pytest.approx((src == int(k)).mean(), abs=0.01)


def test_real_spacenet_tiles_stretched(tmp_path):
    image = shared_file("spacenet/sample_geotiff.tif")
    scene = make_scene(image)
    plan = plan_scene(scene)
    assert write_scene_tiles(scene, plan, tmp_path / "a") == ([], [])    # 900 px < 1024 - 5 %
    tiles, dropped = write_scene_tiles(scene, plan, tmp_path / "b", tile_size=512)
    assert len(tiles) + len(dropped) == 1
    img, crs, _, _, _ = read(tmp_path / "b" / tiles[0]["image"])
    assert img.shape == (3, 512, 512) and crs.to_epsg() == 32616 and img.std() > 10


# --------------------------------------------------------------------------------------------------
# Bounded memory
# --------------------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import numpy as np, rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from pipeline.raster.plan import plan_scene
    from pipeline.scene import Scene
    from pipeline.raster.tiling import write_scene_tiles

    tmp, n = Path(sys.argv[1]), int(sys.argv[2])
    path = tmp / "big.tif"
    profile = dict(driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(500000, 5000000, 0.1, 0.1), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate")
    strip = np.zeros((3, 512, n), np.uint8)
    strip[0] = (np.arange(n) // 97 % 200).astype(np.uint8)
    strip[1] = 90
    strip[2, :, ::7] = 200
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, n, 512):
            h = min(512, n - r)
            dst.write(strip[:, :h], window=Window(0, r, n, h))
    del strip
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scene = Scene(source="t", scene_id="big", kind="aerial", image=str(path), license="", attribution="")
    plan = plan_scene(scene)
    tiles, dropped = write_scene_tiles(scene, plan, tmp / "out")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_kb": base, "peak_kb": peak, "tiles": len(tiles), "dropped": len(dropped)}))
""")


def test_bounded_memory_big_scene(tmp_path):
    # 12000 x 12000 x 3 uint8 at 0.1 m (432 MB decoded, ~3 MB on disk) -> 4000 px grid at 0.3 m -> 3 x 3 tiles
    n = 12000
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path), str(n)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["tiles"] == 9 and out["dropped"] == 0
    growth_mb = (out["peak_kb"] - out["base_kb"]) / 1024
    # planning + tiling must not hold the scene (432 MB decoded) in memory: only GDAL's bounded block
    # cache (pipeline.raster.reading.GDAL_ENV, 64 MB), the tiles in flight and the warp buffers
    assert growth_mb < 400, f"peak RSS grew by {growth_mb:.0f} MB"


def test_mode_takes_exactly_k_by_k_source_pixels_at_a_northing_of_8000_km(tmp_path):
    """At 0.1 m to 0.3 m on the same lattice, each label pixel is the mode of exactly its 3x3 source pixels in every
    row of the tile: coordinates of millions of metres carry ~1e-8 px of float noise, more than GDAL's 1e-10 px,
    which took a fourth source row into half a tile's footprints (``pipeline.raster.warp._reproject``)."""
    block = np.array([[1, 1, 1], [1, 2, 2], [2, 2, 2]], np.uint8)  # 2 by 5 to 4; one more row of 1s: 1 by 7 to 5
    label = np.tile(block, (1100, 1100))
    scene = utm_block_scene(tmp_path, label, "rows", image=np.stack([label * 20, label * 10, label * 5]))
    plan = plan_scene(scene)
    assert plan["resampling"]["label"] == "mode" and plan["grid"]["transform"][5] == 7999999.8
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    (rec,) = write_label_tiles(scene, plan, tiles, tmp_path / "out")
    assert rec["class_pixels"]["2"] == T * T and rec["class_pixels"]["1"] == 0
