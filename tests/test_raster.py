"""Tests for pipeline.raster (gsd, plan, reading): UTM zones, native GSD, the GSD rule, scene plans and rejections."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.transform import from_origin

from pipeline.errors import SceneRejected
from pipeline.raster.gsd import choose_target_gsd, native_gsd_m, utm_crs_for
from pipeline.raster.plan import plan_scene, snap_grid
from pipeline.raster.reading import open_scene
from pipeline.scene import Georef, Scene
from tests.conftest import shared_file


def make_scene(image: Path, **kw) -> Scene:
    return Scene(source="test", scene_id=Path(image).stem, kind="aerial", image=str(image),
                 license="CC0", attribution="test", **kw)


def write_tif(path: Path, data: np.ndarray, crs, transform, **kw) -> Path:
    """Write (bands, rows, cols) ``data`` as a GeoTIFF."""
    if data.ndim == 2:
        data = data[np.newaxis]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, transform=transform, **kw)
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (3, h, w), dtype=np.uint8)


def deg_transform(lon: float, lat: float, gsd_m: float) -> Affine:
    """A north-up EPSG:4326 transform whose pixels are about ``gsd_m`` metres on the ground."""
    dlat = gsd_m / 110_574.0
    dlon = gsd_m / (111_320.0 * math.cos(math.radians(lat)))
    return Affine(dlon, 0.0, lon, 0.0, -dlat, lat)


# --------------------------------------------------------------------------------------------------
# UTM zones
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lon, lat, expected", [
    (16.37, 48.2, "EPSG:32633"),       # Vienna
    (-58.4, -34.6, "EPSG:32721"),      # Buenos Aires (south)
    (119.85, -0.71, "EPSG:32750"),     # Palu, just south of the equator
    (119.85, 0.0, "EPSG:32650"),       # the equator counts as north
    (5.999, 45.0, "EPSG:32631"),       # zone edge: 6 E starts zone 32
    (6.0, 45.0, "EPSG:32632"),
    (-180.0, 10.0, "EPSG:32601"),
    (179.999, -10.0, "EPSG:32760"),
    (5.0, 60.0, "EPSG:32632"),         # Norway exception (would be 31)
    (10.0, 78.0, "EPSG:32633"),        # Svalbard exception (would be 32)
    (-97.78, 30.22, "EPSG:32614"),     # Austin
])
def test_utm_crs_for(lon, lat, expected):
    assert utm_crs_for(lon, lat) == expected


# --------------------------------------------------------------------------------------------------
# Native GSD
# --------------------------------------------------------------------------------------------------

def test_native_gsd_utm_is_the_pixel_size():
    gsd, (lon, lat) = native_gsd_m("EPSG:32633", from_origin(500000, 5340000, 0.5, 0.5), 1000, 1000)
    assert gsd == pytest.approx(0.5, abs=1e-9)
    assert lon == pytest.approx(15.0, abs=0.01) and 48.0 < lat < 48.3


def test_native_gsd_epsg4326_at_equator():
    # 1e-5 degree at (lon 117 = central meridian of zone 50, lat 0): 1.1132 m x 1.1057 m, UTM scale 0.9996.
    gsd, (lon, lat) = native_gsd_m("EPSG:4326", Affine(1e-5, 0, 116.995, 0, -1e-5, 0.005), 1000, 1000)
    assert (lon, lat) == (pytest.approx(117.0), pytest.approx(0.0, abs=1e-9))
    expected = 0.9996 * (1.113195 + 1.105743) / 2
    assert gsd == pytest.approx(expected, rel=1e-3)


def test_native_gsd_web_mercator_shrinks_by_cos_lat():
    # A Web Mercator pixel of 0.2 "metres" at latitude 60 is 0.2 * cos(60) = 0.1 m on the ground.
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(9.0, 60.0)
    gsd, (lon, lat) = native_gsd_m("EPSG:3857", from_origin(x - 100, y + 100, 0.2, 0.2), 1000, 1000)
    assert lat == pytest.approx(60.0, abs=1e-3) and lon == pytest.approx(9.0, abs=1e-3)
    assert gsd == pytest.approx(0.1, rel=0.005)


def test_native_gsd_rotated_transform():
    rot = Affine.translation(500000, 5000000) @ Affine.rotation(30) @ Affine.scale(0.4, -0.4)
    gsd, _ = native_gsd_m("EPSG:32633", rot, 500, 500)
    assert gsd == pytest.approx(0.4, abs=1e-9)


# --------------------------------------------------------------------------------------------------
# GSD rule
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("native, expected", [
    (0.1, 0.3), (0.15, 0.3), (0.125, 0.5), (0.075, 0.3), (0.2, 0.3), (0.05, 0.3), (0.2449, 0.5),
    (0.245, 0.25), (0.249, 0.25), (0.2499, 0.25), (0.24999999, 0.25),
    (0.25, 0.25), (0.3, 0.3), (0.29999999999997673, 0.3), (0.4983, 0.5), (0.333, 0.33), (0.5, 0.5),
    (0.505, 0.5), (0.51, 0.5),
])
def test_choose_target_gsd_table(native, expected):
    assert choose_target_gsd(native) == expected


@pytest.mark.parametrize("crs, transform", [
    ("EPSG:3035", (0.25, 0.0, 4237544.75, 0.0, -0.25, 2369653.0)),   # Genoa, LAEA Europe
    ("EPSG:2154", (0.25, 0.0, 574715.5, 0.0, -0.25, 6280193.75)),    # Toulouse, Lambert-93
])
def test_exact_quarter_metre_national_grid_stays_at_quarter_metre(crs, transform):
    """A national orthophoto of exact 0.25 m pixels measures just under 0.25 m in UTM (grid scale factor);
    the 2 % tolerance below 0.25 m keeps it at 0.25 m instead of halving its resolution to 0.5 m."""
    native, _ = native_gsd_m(crs, transform, 4000, 4000)
    assert 0.2495 < native < 0.25
    assert choose_target_gsd(native) == 0.25


@pytest.mark.parametrize("native", [0.511, 0.8, 300.04])
def test_choose_target_gsd_rejects_coarse(native):
    with pytest.raises(SceneRejected) as exc:
        choose_target_gsd(native, file="a.tif")
    assert exc.value.file == "a.tif"
    assert exc.value.reason == f"GSD {native:.2f} m is coarser than 0.5 m"


@pytest.mark.parametrize("native", [0.0, -1.0, float("nan")])
def test_choose_target_gsd_rejects_nonsense(native):
    with pytest.raises(SceneRejected):
        choose_target_gsd(native, file="a.tif")


# --------------------------------------------------------------------------------------------------
# Plans on synthetic GeoTIFFs
# --------------------------------------------------------------------------------------------------

def _on_lattice(value: float, gsd: float) -> bool:
    return abs(value / gsd - round(value / gsd)) < 1e-6


@pytest.mark.parametrize("case, native, target", [
    ("utm_south_0.1", 0.1, 0.3),
    ("wgs84_0.15", 0.15, 0.3),
    ("utm_south_0.3", 0.3, 0.3),
    ("webmerc_0.5", 0.5, 0.5),
    ("wgs84_0.125", 0.125, 0.5),
])
def test_plan_synthetic(tmp_path, case, native, target):
    n = 400
    if case.startswith("utm_south"):
        crs, transform = "EPSG:32733", from_origin(500001.05, 7999999.95, native, native)
        expected_utm = "EPSG:32733"
    elif case.startswith("wgs84"):
        crs, transform = "EPSG:4326", deg_transform(15.0, -12.0, native)
        expected_utm = "EPSG:32733"
    else:
        lon, lat = 15.5, 48.0
        x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
        size = native / math.cos(math.radians(lat))
        crs, transform = "EPSG:3857", from_origin(x, y, size, size)
        expected_utm = "EPSG:32633"
    path = write_tif(tmp_path / f"{case}.tif", rgb(n, n), crs, transform)
    plan = plan_scene(make_scene(path))
    assert plan["status"] == "ok" and plan["reason"] is None and plan["file"] == str(path)
    assert plan["native"]["gsd"] == pytest.approx(native, rel=0.01)
    assert plan["native"]["crs"] == crs and plan["native"]["dtype"] == "uint8"
    grid = plan["grid"]
    assert grid["crs"] == expected_utm and grid["gsd"] == target
    a, b, x0, d, e, y0 = grid["transform"]
    assert (a, b, d, e) == (target, 0.0, 0.0, -target)
    assert _on_lattice(x0, target) and _on_lattice(y0, target)
    # the grid covers the footprint and is at most a few pixels larger than it
    extent = n * native
    assert extent <= grid["width"] * target <= extent * 1.03 + 2 * target
    assert extent <= grid["height"] * target <= extent * 1.03 + 2 * target
    downsampling = native < target / 1.2
    assert plan["resampling"] == ({"image": "box+bilinear", "label": "mode"} if downsampling
                                  else {"image": "bilinear", "label": "nearest"})
    assert plan["radiometry"] == {"bands": [1, 2, 3], "alpha_band": None, "scale": "none",
                                  "low": [0.0, 0.0, 0.0], "high": [255.0, 255.0, 255.0]}


def test_plan_rejects_coarse(tmp_path):
    path = write_tif(tmp_path / "coarse.tif", rgb(64, 64), "EPSG:32633", from_origin(500000, 5000000, 0.8, 0.8))
    with pytest.raises(SceneRejected) as exc:
        plan_scene(make_scene(path))
    assert exc.value.file == str(path) and exc.value.reason == "GSD 0.80 m is coarser than 0.5 m"


def test_grid_snapping_aligns_overlapping_scenes(tmp_path):
    # Two overlapping scenes with origins off the 0.3 m lattice share one lattice after snapping.
    p1 = write_tif(tmp_path / "a.tif", rgb(300, 300), "EPSG:32633", from_origin(500000.17, 5000000.04, 0.3, 0.3))
    p2 = write_tif(tmp_path / "b.tif", rgb(300, 300), "EPSG:32633", from_origin(500031.01, 4999980.23, 0.3, 0.3))
    g1, g2 = plan_scene(make_scene(p1))["grid"], plan_scene(make_scene(p2))["grid"]
    assert g1["transform"][2] == pytest.approx(500000.1) and g1["transform"][5] == pytest.approx(5000000.2)
    assert g1["width"] == 301 and g1["height"] == 301
    dx = (g2["transform"][2] - g1["transform"][2]) / 0.3
    dy = (g2["transform"][5] - g1["transform"][5]) / 0.3
    assert abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6


def test_snap_grid_ignores_float_noise():
    transform, w, h = snap_grid((617100.0000000001, 3344099.9999999995, 617399.9999999999, 3344400.0000000005), 0.3)
    assert (w, h) == (1000, 1000)
    assert transform == [0.3, 0.0, 617100.0, 0.0, -0.3, 3344400.0]


def test_plan_rotated_transform_is_accepted(tmp_path):
    rot = Affine.translation(500000, 5000000) @ Affine.rotation(20) @ Affine.scale(0.3, -0.3)
    path = write_tif(tmp_path / "rot.tif", rgb(200, 200), "EPSG:32633", rot)
    plan = plan_scene(make_scene(path))
    # the footprint of a 60 m square rotated by 20 degrees spans 60 * (cos 20 + sin 20) = 76.9 m
    assert plan["grid"]["gsd"] == 0.3
    expected = 60 * (math.cos(math.radians(20)) + math.sin(math.radians(20))) / 0.3
    assert plan["grid"]["width"] == pytest.approx(expected, abs=2)


def test_plan_uint16_grey_is_stretched(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(200, 3000, (300, 300)).astype(np.uint16)
    data[:50] = 0  # nodata rows must not enter the percentiles
    path = write_tif(tmp_path / "pan.tif", data, "EPSG:32616", from_origin(733601, 3725139, 0.5, 0.5), nodata=0)
    rad = plan_scene(make_scene(path))["radiometry"]
    valid = data[50:].astype(float)
    assert rad["bands"] == [1, 1, 1] and rad["scale"] == "linear" and rad["alpha_band"] is None
    assert rad["low"] == [pytest.approx(np.percentile(valid, 2), rel=0.02)] * 3
    assert rad["high"] == [pytest.approx(np.percentile(valid, 98), rel=0.02)] * 3


def test_plan_four_bands_alpha_and_non_alpha(tmp_path):
    data = np.concatenate([rgb(100, 100), np.full((1, 100, 100), 255, np.uint8)])
    t = from_origin(500000, 5000000, 0.3, 0.3)
    pa = write_tif(tmp_path / "rgba.tif", data, "EPSG:32633", t, photometric="RGB", alpha="YES")
    pn = write_tif(tmp_path / "rgbn.tif", data, "EPSG:32633", t, alpha="UNSPECIFIED")
    assert plan_scene(make_scene(pa))["radiometry"]["alpha_band"] == 4
    assert plan_scene(make_scene(pn))["radiometry"]["alpha_band"] is None
    assert plan_scene(make_scene(pn))["radiometry"]["bands"] == [1, 2, 3]
    # the scene may declare band 4 to be alpha
    assert plan_scene(make_scene(pn, extra={"alpha_band": 4}))["radiometry"]["alpha_band"] == 4


def test_georef_applied_to_unreferenced_image(tmp_path):
    path = tmp_path / "img.png"
    with rasterio.open(path, "w", driver="PNG", width=200, height=200, count=3, dtype="uint8") as dst:
        dst.write(rgb(200, 200))
    georef = Georef(crs="EPSG:4326", transform=tuple(deg_transform(-122.7, 38.5, 0.45))[:6], origin="test")
    with pytest.raises(SceneRejected, match="no CRS"):
        plan_scene(make_scene(path))
    scene = make_scene(path, georef=georef)
    with open_scene(scene) as ds:
        assert ds.crs == rasterio.crs.CRS.from_epsg(4326)
        assert tuple(ds.transform)[:6] == pytest.approx(georef.transform)
        assert ds.read(1, window=((0, 2), (0, 2))).shape == (2, 2)
    plan = plan_scene(scene)
    assert plan["grid"]["crs"] == "EPSG:32610" and plan["grid"]["gsd"] == 0.45


# --------------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------------

def _reject_reason(path: Path, **kw) -> str:
    with pytest.raises(SceneRejected) as exc:
        plan_scene(make_scene(path, **kw))
    assert exc.value.file == str(path)
    return exc.value.reason


def test_reject_truncated_tiff(tmp_path):
    full = write_tif(tmp_path / "full.tif", rgb(512, 512), "EPSG:32633", from_origin(500000, 5000000, 0.3, 0.3))
    data = full.read_bytes()
    half = tmp_path / "half.tif"
    half.write_bytes(data[: len(data) // 2])
    assert _reject_reason(half).startswith("cannot read")
    header = tmp_path / "header.tif"
    header.write_bytes(data[:100])
    assert _reject_reason(header).startswith("cannot read")


def test_reject_not_a_raster_and_missing(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_text("this is not a tiff")
    assert _reject_reason(junk).startswith("cannot read")
    assert _reject_reason(tmp_path / "missing.tif").startswith("cannot read")


def test_reject_no_crs(tmp_path):
    path = write_tif(tmp_path / "nocrs.tif", rgb(64, 64), None, from_origin(500000, 5000000, 0.3, 0.3))
    assert "no CRS" in _reject_reason(path)


def test_reject_no_geotransform(tmp_path):
    path = tmp_path / "plain.png"
    with rasterio.open(path, "w", driver="PNG", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(rgb(64, 64))
    with rasterio.open(tmp_path / "crs_only.tif", "w", driver="GTiff", width=64, height=64, count=3,
                       dtype="uint8", crs="EPSG:32633") as dst:
        dst.write(rgb(64, 64))
    assert "no CRS" in _reject_reason(path)
    assert "no geotransform" in _reject_reason(tmp_path / "crs_only.tif")


def test_reject_eight_bands(tmp_path):
    data = np.ones((8, 32, 32), np.uint8)
    path = write_tif(tmp_path / "ms.tif", data, "EPSG:32633", from_origin(500000, 5000000, 0.3, 0.3))
    assert _reject_reason(path).startswith("expects 1, 3 or 4 bands, got 8 (no band is marked red, green and blue: "
                                           "set the source's options.bands")


def test_reject_all_nodata(tmp_path):
    data = np.zeros((3, 64, 64), np.uint8)
    path = write_tif(tmp_path / "empty.tif", data, "EPSG:32633", from_origin(500000, 5000000, 0.3, 0.3), nodata=0)
    assert _reject_reason(path) == "all pixels are nodata"
    alpha = np.concatenate([rgb(64, 64), np.zeros((1, 64, 64), np.uint8)])
    path = write_tif(tmp_path / "transparent.tif", alpha, "EPSG:32633", from_origin(500000, 5000000, 0.3, 0.3),
                     photometric="RGB", alpha="YES")
    assert _reject_reason(path) == "all pixels are nodata"


# --------------------------------------------------------------------------------------------------
# Real samples
# --------------------------------------------------------------------------------------------------

def test_real_landsat_rejected_as_too_coarse():
    path = shared_file("rejects/RGB.byte.tif")
    with pytest.raises(SceneRejected) as exc:
        plan_scene(make_scene(path))
    assert exc.value.reason == "GSD 300.04 m is coarser than 0.5 m"


def test_real_inria_plan():
    path = shared_file("inria/austin_crop.tif")
    plan = plan_scene(make_scene(path))
    assert plan["native"]["crs"] == "EPSG:26914" and plan["native"]["gsd"] == pytest.approx(0.3, abs=1e-3)
    assert plan["grid"]["crs"] == "EPSG:32614" and plan["grid"]["gsd"] == 0.3
    assert 1000 <= plan["grid"]["width"] <= 1002 and 1000 <= plan["grid"]["height"] <= 1002
    assert plan["resampling"] == {"image": "bilinear", "label": "nearest"}


def test_real_spacenet_uint16_plan():
    path = shared_file("spacenet/sample_geotiff.tif")
    plan = plan_scene(make_scene(path))
    assert plan["native"]["dtype"] == "uint16" and plan["native"]["nodata"] == 0.0
    assert plan["grid"] == {"crs": "EPSG:32616", "transform": [0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0],
                            "width": 900, "height": 900, "gsd": 0.5}
    rad = plan["radiometry"]
    assert rad["bands"] == [1, 1, 1] and rad["scale"] == "linear"
    assert 0 < rad["low"][0] < rad["high"][0] < 65535


def test_real_palu_plan():
    path = shared_file("openearthmap/palu_8_image.tif")
    plan = plan_scene(make_scene(path))
    assert plan["native"]["crs"] == "EPSG:4326"
    assert plan["native"]["gsd"] == pytest.approx(0.5, abs=0.01)
    assert plan["grid"]["crs"] == "EPSG:32750" and plan["grid"]["gsd"] == 0.5
    lon, lat = plan["center_lonlat"]
    assert lat < 0 and 119 < lon < 121
