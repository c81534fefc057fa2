"""Tests of the built-in DEMO source (oem_demo/generate.py), on size="small" in a temporary folder."""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.features
from pyproj import Geod
from shapely import wkt as shapely_wkt
from shapely.geometry import shape

from oem_demo.generate import generate_demo
from oem_demo.geodesy import metres_per_degree
from oem_demo.scenes import DEMO_SCENES, LAYOUTS, target_gsd
from pipeline.constants import CONTINENTS

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "root"  # does not exist yet: generate_demo creates it
    summary = generate_demo(root, seed=0, size="small")
    return root, summary


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _ground_gsd(path: Path) -> tuple[float, float]:
    """Ground size (m) of the centre pixel of a GeoTIFF along x and y, measured geodesically."""
    from pyproj import Transformer

    with rasterio.open(path) as src:
        tf, crs, w, h = src.transform, src.crs, src.width, src.height
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    cx, cy = w // 2, h // 2
    pts = [tf @ (cx, cy), tf @ (cx + 1, cy), tf @ (cx, cy + 1)]
    (lon0, lat0), (lon1, lat1), (lon2, lat2) = [to_ll.transform(*p) for p in pts]
    return GEOD.inv(lon0, lat0, lon1, lat1)[2], GEOD.inv(lon0, lat0, lon2, lat2)[2]


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    a = np.column_stack([src, np.ones(len(src))])
    coef, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return coef, float(np.abs(a @ coef - dst).max())


def _rings(wkt_text: str) -> np.ndarray:
    return np.asarray(shapely_wkt.loads(wkt_text).exterior.coords)


def test_size_is_validated(tmp_path):
    with pytest.raises(ValueError, match="'full', 'small'"):
        generate_demo(tmp_path / "x", size="medium")


def test_table_requirements():
    regions = {s.region for s in DEMO_SCENES if s.target_gsd is not None}
    assert len(regions) >= 12
    assert {s.continent for s in DEMO_SCENES} == set(CONTINENTS)
    assert {s.layout for s in DEMO_SCENES} == set(LAYOUTS)
    crss = {s.crs for s in DEMO_SCENES}
    assert {"EPSG:3857", "EPSG:4326"} <= crss
    assert any(re.fullmatch(r"EPSG:326\d\d", c) for c in crss)
    assert any(re.fullmatch(r"EPSG:327\d\d", c) for c in crss)
    assert {0.1, 0.15, 0.3, 0.5} <= {s.gsd for s in DEMO_SCENES}
    coarse = [s for s in DEMO_SCENES if s.gsd > 0.51]
    assert len(coarse) == 1 and coarse[0].gsd == 0.8 and coarse[0].layout == "local"
    assert coarse[0].spec("full")[0] == coarse[0].spec("small")[0] == 1
    for s in DEMO_SCENES:  # UTM zone and hemisphere are the right ones for the place
        m = re.fullmatch(r"EPSG:32([67])(\d\d)", s.crs)
        if m:
            assert int(m.group(2)) == int((s.lon + 180) // 6) + 1, s.region
            assert (m.group(1) == "7") == (s.lat < 0), s.region
    full = sum(s.expected_tiles("full") for s in DEMO_SCENES)
    assert 150 <= full <= 200
    per_region: dict[str, int] = {}
    for s in DEMO_SCENES:
        per_region[s.region] = per_region.get(s.region, 0) + s.expected_tiles("full")
    assert sum(n >= 7 for n in per_region.values()) > len(per_region) / 2
    # one region has more candidates than a region keeps (70), so the demo build runs hard-image selection
    assert max(per_region.values()) > 70
    assert target_gsd(0.1) == 0.3 and target_gsd(0.15) == 0.3 and target_gsd(0.8) is None


def test_layout_files_exist(demo):
    root, summary = demo
    scenes = summary["scenes"]
    assert scenes == sorted(scenes, key=lambda s: (s["layout"], s["region"], s["path"]))
    assert {s["layout"] for s in scenes} == set(LAYOUTS)
    for s in scenes:
        img = root / s["path"]
        assert img.is_file(), s["path"]
        if s["layout"] == "xbd":
            m = re.fullmatch(r"([a-z]+(?:-[a-z]+)+)_(\d{8})_pre_disaster\.png", img.name)
            assert m, img.name
            stem = img.stem
            assert (root / "xbd/train/labels" / f"{stem}.json").is_file()
            assert (root / "xbd/train/landcover" / f"{stem}.png").is_file()
            rgb = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
            assert rgb.shape == (1024, 1024, 3) and rgb.dtype == np.uint8
        elif s["layout"] == "inria":
            assert re.fullmatch(r"[a-z-]+\d+\.tif", img.name)
            for sub in ("gt", "landcover"):
                assert (root / "inria/train" / sub / img.name).is_file()
        elif s["layout"] == "spacenet":
            m = re.fullmatch(r"spacenet/(AOI_(\d+)_([A-Za-z]+))_Train/RGB-PanSharpen/RGB-PanSharpen_\1_img(\d+)\.tif",
                             s["path"])
            assert m, s["path"]
            aoi, n = m.group(1), m.group(4)
            base = root / "spacenet" / f"{aoi}_Train"
            assert (base / "geojson/buildings" / f"buildings_{aoi}_img{n}.geojson").is_file()
            assert (base / "landcover" / f"landcover_{aoi}_img{n}.tif").is_file()
        else:
            assert s["path"] == f"local/{s['region']}/{img.name}"
            assert (root / "local/labels" / s["region"] / img.name).is_file()
            assert (root / "local/footprints" / s["region"] / f"{img.stem}.geojson").is_file()
        if img.suffix == ".tif":
            with rasterio.open(img) as src:
                assert src.crs is not None and src.crs.to_string() == s["crs"]
                assert src.profile["tiled"] and src.block_shapes[0][0] in (256, 512)
                assert src.compression.name.lower() == "deflate"
                assert (src.width, src.height) == (s["width"], s["height"])


def test_same_seed_identical_other_seed_differs_and_rerun_replaces(demo, tmp_path):
    root, summary = demo
    again = generate_demo(tmp_path / "again", seed=0, size="small")
    assert again == summary
    h0 = _hashes(root)
    assert h0 == _hashes(tmp_path / "again")
    # a rerun over an existing demo with another seed rewrites every file and drops files it did not write
    stray = tmp_path / "again" / "local" / "tokyo" / "tokyo_99.tif"
    stray.write_bytes(b"x")
    generate_demo(tmp_path / "again", seed=1, size="small")
    assert not stray.exists()
    h1 = _hashes(tmp_path / "again")
    assert h1.keys() == h0.keys()
    assert all(h0[k] != h1[k] for k in h0 if k != "demo.json")


def test_crs_and_ground_gsd(demo):
    root, summary = demo
    seen_crs, seen_gsd = set(), []
    for s in summary["scenes"]:
        if s["layout"] == "xbd":
            continue
        gx, gy = _ground_gsd(root / s["path"])
        assert gx == pytest.approx(s["gsd"], rel=0.01) and gy == pytest.approx(s["gsd"], rel=0.01), s["path"]
        seen_crs.add(s["crs"])
        seen_gsd.append(s["gsd"])
    # xBD: ground GSD from the affine fitted to the JSON vertex pairs
    for s in summary["scenes"]:
        if s["layout"] != "xbd":
            continue
        lab = json.loads((root / "xbd/train/labels" / f"{Path(s['path']).stem}.json").read_text())
        xy = np.concatenate([_rings(f["wkt"]) for f in lab["features"]["xy"]])
        ll = np.concatenate([_rings(f["wkt"]) for f in lab["features"]["lng_lat"]])
        coef, _ = _fit_affine(xy, ll)
        mx, my = metres_per_degree(float(ll[:, 1].mean()))
        assert coef[0, 0] * mx == pytest.approx(0.5, rel=0.01) and -coef[1, 1] * my == pytest.approx(0.5, rel=0.01)
        seen_crs.add("EPSG:4326")
        seen_gsd.append(lab["metadata"]["gsd"])
    assert {"EPSG:3857", "EPSG:4326"} <= seen_crs
    assert any(c.startswith("EPSG:326") for c in seen_crs) and any(c.startswith("EPSG:327") for c in seen_crs)
    assert {0.1, 0.15, 0.3, 0.5} <= set(seen_gsd)
    assert seen_gsd.count(0.8) == 1


def test_continents_and_centres(demo):
    _, summary = demo
    assert {s["continent"] for s in summary["scenes"]} == set(CONTINENTS)
    table = {s.region: s for s in DEMO_SCENES}
    for s in summary["scenes"]:  # every file lies within ~2 km of its city centre
        lon, lat = s["center_lonlat"]
        t = table[s["region"]]
        assert GEOD.inv(lon, lat, t.lon, t.lat)[2] < 2500


def _label_array(root: Path, s: dict) -> np.ndarray:
    img = root / s["path"]
    if s["layout"] == "xbd":
        return cv2.imread(str(root / "xbd/train/landcover" / img.name), cv2.IMREAD_UNCHANGED)
    if s["layout"] == "inria":
        path = root / "inria/train/landcover" / img.name
    elif s["layout"] == "spacenet":
        path = img.parent.parent / "landcover" / img.name.replace("RGB-PanSharpen_", "landcover_")
    else:
        path = root / "local/labels" / s["region"] / img.name
    with rasterio.open(path) as src, rasterio.open(img) as im:
        assert src.transform == im.transform and src.crs == im.crs and src.shape == im.shape
        return src.read(1)


def test_labels_ids_and_classes(demo):
    root, summary = demo
    per_layout: dict[str, set[int]] = {}
    for s in summary["scenes"]:
        lab = _label_array(root, s)
        assert lab.dtype == np.uint8 and lab.shape == (s["height"], s["width"])
        ids = set(np.unique(lab).tolist())
        assert ids <= set(range(9))
        assert len(ids - {0}) >= 4, (s["path"], ids)
        if s["nodata"] == "none":
            assert 0 not in ids, s["path"]
        else:
            frac = float((lab == 0).mean())
            assert 0 < frac < 0.1, s["path"]
        per_layout.setdefault(s["layout"], set()).update(ids - {0})
    for layout, ids in per_layout.items():
        assert len(ids) >= 5, (layout, ids)
    assert set().union(*per_layout.values()) == set(range(1, 9))


def test_nodata_encodings(demo):
    root, summary = demo
    kinds = set()
    for s in summary["scenes"]:
        if s["layout"] != "local" or s["nodata"] == "none":
            continue
        lab = _label_array(root, s)
        with rasterio.open(root / s["path"]) as src:
            data = src.read()
            if s["nodata"] == "alpha":
                assert src.count == 4 and src.colorinterp[3].name == "alpha"
                assert np.array_equal(data[3] == 0, lab == 0)
            else:
                assert src.nodata == 0 and src.count == 3
                assert np.array_equal((data == 0).all(0), lab == 0)
                assert not (data[:, lab > 0] == 0).any()
        kinds.add(s["nodata"])
    assert kinds == {"alpha", "value"}


def test_xbd_json_is_one_affine_map(demo):
    root, summary = demo
    for s in summary["scenes"]:
        if s["layout"] != "xbd":
            continue
        stem = Path(s["path"]).stem
        lab = json.loads((root / "xbd/train/labels" / f"{stem}.json").read_text())
        meta = lab["metadata"]
        assert meta["img_name"] == f"{stem}.png" and meta["disaster"] == stem.split("_")[0]
        assert meta["width"] == meta["height"] == meta["original_width"] == meta["original_height"] == 1024
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", meta["capture_date"])
        for k in ("sensor", "provider_asset_type", "gsd", "disaster_type", "id", "catalog_id"):
            assert meta[k]
        xy, ll = lab["features"]["xy"], lab["features"]["lng_lat"]
        assert len(xy) == len(ll) >= 5
        assert [f["properties"]["uid"] for f in xy] == [f["properties"]["uid"] for f in ll]
        assert len({f["properties"]["uid"] for f in xy}) == len(xy)
        assert all(f["properties"]["feature_type"] == "building" for f in xy + ll)
        pxy = np.concatenate([_rings(f["wkt"]) for f in xy])
        pll = np.concatenate([_rings(f["wkt"]) for f in ll])
        coef, resid = _fit_affine(pxy, pll)
        assert resid < 1e-8  # degrees (~1 mm)
        lon, lat = coef[2]
        t = next(t for t in DEMO_SCENES if t.region == s["region"])
        assert abs(lon - t.lon) < 0.05 and abs(lat - t.lat) < 0.05


def _footprints(root: Path, s: dict) -> tuple[list, str]:
    img = root / s["path"]
    if s["layout"] == "xbd":
        lab = json.loads((root / "xbd/train/labels" / f"{img.stem}.json").read_text())
        return [shapely_wkt.loads(f["wkt"]) for f in lab["features"]["xy"]], "pixel"
    if s["layout"] == "inria":
        return [], "mask"
    if s["layout"] == "spacenet":
        path = img.parent.parent / "geojson/buildings" / img.name.replace("RGB-PanSharpen_", "buildings_").replace(
            ".tif", ".geojson")
    else:
        path = root / "local/footprints" / s["region"] / f"{img.stem}.geojson"
    gj = json.loads(path.read_text())
    assert gj["type"] == "FeatureCollection"
    name = gj["crs"]["properties"]["name"]
    if s["layout"] == "spacenet":
        assert name == "urn:ogc:def:crs:OGC:1.3:CRS84"
    else:
        assert name == "urn:ogc:def:crs:EPSG::" + s["crs"].split(":")[1]
    return [shape(f["geometry"]) for f in gj["features"]], "crs"


def test_footprints_match_building_pixels(demo):
    root, summary = demo
    for s in summary["scenes"]:
        lab = _label_array(root, s)
        bld = lab == 8
        geoms, kind = _footprints(root, s)
        if kind == "mask":
            with rasterio.open(root / "inria/train/gt" / Path(s["path"]).name) as src:
                gt = src.read(1)
            assert set(np.unique(gt).tolist()) <= {0, 255}
            assert np.array_equal(gt == 255, bld)
            continue
        assert len(geoms) == s["buildings"] >= 5, s["path"]
        if kind == "pixel":
            raster = rasterio.features.rasterize(geoms, out_shape=lab.shape, fill=0, default_value=1,
                                                 dtype="uint8").astype(bool)
        else:
            with rasterio.open(root / s["path"]) as src:
                raster = rasterio.features.rasterize(geoms, out_shape=lab.shape, transform=src.transform,
                                                     fill=0, default_value=1, dtype="uint8").astype(bool)
        iou = (raster & bld).sum() / max(1, (raster | bld).sum())
        assert iou > 0.9, (s["path"], iou)


def test_spacenet_is_11_bit(demo):
    root, summary = demo
    n = 0
    for s in summary["scenes"]:
        if s["layout"] != "spacenet":
            continue
        with rasterio.open(root / s["path"]) as src:
            assert src.count == 3 and src.dtypes[0] == "uint16" and src.crs.to_epsg() == 4326
            data = src.read()
        assert data.max() <= 2047 and data.max() > 255
        n += 1
    assert n >= 1


def test_images_look_natural(demo):
    """Image colours follow the land cover but are not the label palette: per-class mean colours differ
    between classes, and image pixels are textured (not flat fills)."""
    root, summary = demo
    s = next(s for s in summary["scenes"] if s["layout"] == "inria")
    lab = _label_array(root, s)
    with rasterio.open(root / s["path"]) as src:
        img = src.read().astype(np.float32)
    means = {c: img[:, lab == c].mean(1) for c in range(1, 9) if (lab == c).sum() > 500}
    assert len(means) >= 5
    keys = sorted(means)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(means[a] - means[b]).max() > 8, (a, b)
    assert img[:, lab == 2].std(1).min() > 3


def test_the_coarse_scene_exists_once(demo):
    _, summary = demo
    coarse = [s for s in summary["scenes"] if s["gsd"] > 0.51]
    assert len(coarse) == 1 and coarse[0]["gsd"] == 0.8 and coarse[0]["expected_tiles"] == 0
    assert math.isclose(_ground_gsd(demo[0] / coarse[0]["path"])[0], 0.8, rel_tol=0.01)
