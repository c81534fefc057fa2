"""Source adapters and footprint loading, on real small files written in tmp_path and on the shared
real samples (skipped when ../shared/data is absent)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import box

from pipeline.errors import AnnotationRejected, SceneRejected
from pipeline.scene import Scene
from pipeline.sources.adapters import ADAPTERS, get_adapter, scenes_for
from pipeline.sources.adapters.demo import DemoAdapter
from pipeline.sources.adapters.inria import InriaAdapter, inria_region
from pipeline.sources.adapters.local import LocalAdapter
from pipeline.sources.adapters.spacenet import SpaceNetAdapter, spacenet_scene_from_files
from pipeline.sources.adapters.xbd import XbdAdapter, disaster_region, fit_affine, vertex_pairs
from pipeline.sources.config import SourceConfig
from pipeline.sources.footprints import load_footprints, read_xbd_label, xbd_polygons
from pipeline.sources.options import COMMON_OPTIONS, KIND_OPTIONS
from tests.conftest import shared_file


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


SAFE_ID = re.compile(r"^[a-z0-9_.-]+$")
# A realistic xBD pixel -> lon/lat affine (slightly rotated, ~0.45 m pixels near Joplin, MO).
XBD_TRUE = (5.0747e-06, 7.844e-08, -94.4733330434734, 6.2927e-08, -4.0666e-06, 37.0691314222209)


# ------------------------------------------------------------------------------------------------
# helpers writing real files
# ------------------------------------------------------------------------------------------------
def source(kind: str, **options) -> SourceConfig:
    opts = {k: d for k, (_, d) in {**COMMON_OPTIONS, **KIND_OPTIONS[kind]}.items()}
    opts.update(options)
    return SourceConfig(name=f"my-{kind}", kind=kind, location="/somewhere", license=f"LIC-{kind}",
                        attribution=f"ATTR-{kind}", options=opts)


UTM_ORIGIN = from_origin(500000.0, 5000000.0, 0.3, 0.3)


def write_tif(path: Path, data: np.ndarray, crs: str = "EPSG:32633", transform: Affine = UTM_ORIGIN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform) as ds:
        ds.write(data)
    return path


def write_png(path: Path, size: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def apply(t, x, y):
    a, b, c, d, e, f = t
    return a * x + b * y + c, d * x + e * y + f


def wkt(coords) -> str:
    return "POLYGON ((" + ", ".join(f"{float(x)!r} {float(y)!r}" for x, y in coords) + "))"


def xbd_json(path: Path, pixel_polys: list[list[tuple[float, float]]], transform=XBD_TRUE,
             disaster: str = "joplin-tornado", capture_date: str = "2011-05-20T17:16:20.445Z") -> Path:
    """A label JSON shaped like the real xBD ones: features.xy / features.lng_lat WKT paired by uid."""
    xy, ll = [], []
    for i, poly in enumerate(pixel_polys):
        ring = list(poly) + [poly[0]]
        uid = f"uid-{i:04d}"
        xy.append({"properties": {"feature_type": "building", "uid": uid}, "wkt": wkt(ring)})
        ll.append({"properties": {"feature_type": "building", "uid": uid},
                   "wkt": wkt([apply(transform, x, y) for x, y in ring])})
    meta = {"sensor": "GEOEYE01", "gsd": 1.9, "capture_date": capture_date, "disaster": disaster,
            "disaster_type": "wind", "width": 1024, "height": 1024, "img_name": path.stem + ".png"}
    path.parent.mkdir(parents=True, exist_ok=True)
    # lng_lat listed in reverse order: pairing must go by uid, not by position
    path.write_text(json.dumps({"features": {"lng_lat": ll[::-1], "xy": xy}, "metadata": meta}))
    return path


def random_buildings(n: int, seed: int) -> list[list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x0, y0 = rng.uniform(20, 980, 2)
        w, h = rng.uniform(8, 40, 2)
        out.append([(x0, y0), (x0 + w, y0 + 0.3), (x0 + w - 0.2, y0 + h), (x0 + 0.1, y0 + h - 0.4)])
    return out


def check_common(scenes: list[Scene], src: SourceConfig) -> None:
    ids = [s.scene_id for s in scenes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for s in scenes:
        assert SAFE_ID.match(s.scene_id), s.scene_id
        assert s.source == src.name and s.license == src.license and s.attribution == src.attribution
        assert Path(s.image).is_file()
        Scene.from_dict(json.loads(json.dumps(s.to_dict())))  # JSON round trip


# ------------------------------------------------------------------------------------------------
# xBD
# ------------------------------------------------------------------------------------------------
def make_xbd(root: Path) -> None:
    tr = root / "train"
    write_png(tr / "images" / "joplin-tornado_00000001_pre_disaster.png", seed=1)
    write_png(tr / "images" / "joplin-tornado_00000001_post_disaster.png", seed=2)
    write_png(tr / "images" / "santa-rosa-wildfire_00000007_pre_disaster.png", seed=3)
    write_png(tr / "images" / "hurricane-michael_00000202_pre_disaster.png", seed=4)
    xbd_json(tr / "labels" / "joplin-tornado_00000001_pre_disaster.json", random_buildings(12, 1))
    xbd_json(tr / "labels" / "joplin-tornado_00000001_post_disaster.json", random_buildings(12, 1))
    xbd_json(tr / "labels" / "santa-rosa-wildfire_00000007_pre_disaster.json", random_buildings(5, 2),
             disaster="santa-rosa-wildfire", capture_date="2017-10-11T00:00:00Z")
    xbd_json(tr / "labels" / "hurricane-michael_00000202_pre_disaster.json", random_buildings(3, 3),
             disaster="hurricane-michael")
    write_png(tr / "landcover" / "santa-rosa-wildfire_00000007_pre_disaster.png", seed=5)


def test_xbd_layout_and_affine_fit(tmp_path):
    make_xbd(tmp_path)
    src = source("xbd")
    scenes = XbdAdapter().scenes(tmp_path, src)
    check_common(scenes, src)
    assert [s.scene_id for s in scenes] == [
        "hurricane-michael_00000202_pre_disaster",
        "joplin-tornado_00000001_pre_disaster",
        "santa-rosa-wildfire_00000007_pre_disaster",
    ]  # post-disaster image ignored
    by = {s.scene_id.split("_")[0]: s for s in scenes}
    assert {k: s.region_hint for k, s in by.items()} == {
        "hurricane-michael": "michael", "joplin-tornado": "joplin", "santa-rosa-wildfire": "santa_rosa"}
    j = by["joplin-tornado"]
    assert j.kind == "xbd" and j.georef is not None and j.georef.crs == "EPSG:4326"
    fit, true = np.array(j.georef.transform), np.array(XBD_TRUE)
    lin_fit, lin_true = fit[[0, 1, 3, 4]], true[[0, 1, 3, 4]]
    assert np.linalg.norm(lin_fit - lin_true) / np.linalg.norm(lin_true) < 1e-6
    assert np.abs(fit[[2, 5]] - true[[2, 5]]).max() < 1e-6 * abs(true[0])  # origin within 1e-6 px
    assert re.fullmatch(r"affine fit of 48 xy/lng_lat vertex pairs, RMS 0\.00 m", j.georef.origin)
    assert j.extra["fit_pairs"] == 48 and j.extra["fit_rms_m"] < 1e-3
    assert j.extra["gsd_fit"] == pytest.approx(0.45, abs=0.01)
    assert j.extra["gsd_metadata"] == 1.9 and j.extra["footprints_format"] == "xbd-json"
    assert j.acquired == "2011-05-20" and j.landcover is None
    assert j.footprints == str(tmp_path / "train/labels/joplin-tornado_00000001_pre_disaster.json")
    s = by["santa-rosa-wildfire"]
    assert s.landcover == str(tmp_path / "train/landcover/santa-rosa-wildfire_00000007_pre_disaster.png")
    assert s.acquired == "2017-10-11"
    # footprints are the lng_lat polygons; mapped back through the fitted georef they are the xy ones
    fp = load_footprints(j)
    assert fp.crs == "EPSG:4326" and len(fp) == 12
    inv = ~Affine(*j.georef.transform)
    xy_vertices = np.array([v for poly in random_buildings(12, 1) for v in poly])
    for g in fp.geometry:
        for lon, lat in g.exterior.coords:
            col, row = inv @ (lon, lat)
            assert np.hypot(*(xy_vertices - (col, row)).T).min() < 1e-3  # within 1/1000 px
    # deterministic
    assert XbdAdapter().scenes(tmp_path, src) == scenes


def test_xbd_geotransforms_json_and_no_building_rejection(tmp_path):
    tr = tmp_path / "train"
    write_png(tr / "images" / "palu-tsunami_00000003_pre_disaster.png")
    (tr / "labels").mkdir(parents=True)
    empty = {"features": {"lng_lat": [], "xy": []}, "metadata": {"disaster": "palu-tsunami", "gsd": 2.0}}
    (tr / "labels" / "palu-tsunami_00000003_pre_disaster.json").write_text(json.dumps(empty))
    write_png(tr / "images" / "mexico-earthquake_00000009_pre_disaster.png")
    xbd_json(tr / "labels" / "mexico-earthquake_00000009_pre_disaster.json", random_buildings(4, 9),
             disaster="mexico-earthquake")
    src = source("xbd")
    # no geotransforms file: the empty image is rejected, naming the file
    with pytest.raises(SceneRejected) as exc:
        XbdAdapter().scenes(tmp_path, src)
    assert exc.value.file.endswith("palu-tsunami_00000003_pre_disaster.png")
    assert exc.value.reason == ("xBD image has no buildings to fit a georeference and no "
                                "xview_geotransforms.json entry")
    rejected: list[SceneRejected] = []
    kept = XbdAdapter().scenes(tmp_path, src, rejected)
    assert [s.scene_id for s in kept] == ["mexico-earthquake_00000009_pre_disaster"]
    assert [r.file for r in rejected] == [str(tr / "images/palu-tsunami_00000003_pre_disaster.png")]
    assert kept[0].region_hint == "mexico"
    # with the geotransforms file (GDAL order c, a, b, f, d, e) the empty image gets its georef
    gdal = [119.87, 4.5e-06, 0.0, -0.89, 0.0, -4.5e-06]
    wgs84 = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
             'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]')
    (tmp_path / "xview_geotransforms.json").write_text(
        json.dumps({"palu-tsunami_00000003_pre_disaster.png": [gdal, wgs84]}))
    scenes = XbdAdapter().scenes(tmp_path, source("xbd", regions={"palu-tsunami": "central_sulawesi"}))
    palu = {s.scene_id: s for s in scenes}["palu-tsunami_00000003_pre_disaster"]
    assert palu.georef.transform == (4.5e-06, 0.0, 119.87, 0.0, -4.5e-06, -0.89)
    assert palu.georef.crs == "EPSG:4326" and "xview_geotransforms.json" in palu.georef.origin
    assert palu.region_hint == "central_sulawesi" and palu.extra["gsd_metadata"] == 2.0
    assert "gsd_fit" not in palu.extra and palu.extra["gsd_georef"] == pytest.approx(0.50, abs=0.01)
    assert len(load_footprints(palu)) == 0 and load_footprints(palu).crs == "EPSG:4326"


def test_xbd_collinear_and_missing_layout(tmp_path):
    pts = np.array([[0, 0], [1, 1], [2, 2], [5, 5.0]])
    with pytest.raises(SceneRejected, match="collinear"):
        fit_affine(pts, pts * 1e-5, "img.png")
    with pytest.raises(SceneRejected, match=">= 3 distinct"):
        fit_affine(pts[:2], pts[:2], "img.png")
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(SceneRejected, match="no xBD pre-disaster images") as exc:
        XbdAdapter().scenes(tmp_path, source("xbd"))
    assert exc.value.file == str(tmp_path)


@pytest.mark.parametrize("name, region", [
    ("santa-rosa-wildfire", "santa_rosa"), ("palu-tsunami", "palu"), ("mexico-earthquake", "mexico"),
    ("joplin-tornado", "joplin"), ("hurricane-florence", "florence"), ("socal-fire", "socal"),
    ("midwest-flooding", "midwest"), ("guatemala-volcano", "guatemala"), ("lower-puna-volcano", "lower_puna"),
    ("pinery-bushfire", "pinery"),
])
def test_disaster_region(name, region):
    assert disaster_region(name) == region


# ------------------------------------------------------------------------------------------------
# Inria
# ------------------------------------------------------------------------------------------------
def make_inria(base: Path) -> None:
    for stem in ["austin1", "austin2", "tyrol-w12", "vienna3"]:
        write_tif(base / "train" / "images" / f"{stem}.tif", np.zeros((3, 8, 8), np.uint8))
        if stem != "vienna3":
            write_tif(base / "train" / "gt" / f"{stem}.tif", np.full((8, 8), 255, np.uint8))
    write_tif(base / "train" / "landcover" / "austin2.tif", np.full((8, 8), 8, np.uint8))
    write_tif(base / "test" / "images" / "bellingham1.tif", np.zeros((3, 8, 8), np.uint8))


def test_inria_layout_nested_root_and_city_filter(tmp_path):
    make_inria(tmp_path / "AerialImageDataset")
    (tmp_path / "AerialImageDataset" / "train" / "images" / "notes.txt").write_text("not an image")
    src = source("inria")
    scenes = InriaAdapter().scenes(tmp_path, src)  # official extracted root one level down
    check_common(scenes, src)
    base = tmp_path / "AerialImageDataset" / "train"
    assert [(s.scene_id, s.region_hint) for s in scenes] == [
        ("austin1", "austin"), ("austin2", "austin"), ("tyrol-w12", "tyrolw"), ("vienna3", "vienna")]
    by = {s.scene_id: s for s in scenes}
    assert by["austin1"].building_mask == str(base / "gt/austin1.tif") and by["austin1"].landcover is None
    assert by["austin2"].landcover == str(base / "landcover/austin2.tif")
    assert by["vienna3"].building_mask is None and by["tyrol-w12"].extra["city"] == "tyrol-w"
    assert all(s.georef is None and s.kind == "inria" for s in scenes)
    for cities in (["tyrol-w"], ["TyrolW"]):
        assert [s.scene_id for s in InriaAdapter().scenes(tmp_path, source("inria", cities=cities))] == ["tyrol-w12"]
    test = InriaAdapter().scenes(tmp_path / "AerialImageDataset", source("inria", split="test"))
    assert [(s.scene_id, s.building_mask) for s in test] == [("bellingham1", None)]
    with pytest.raises(SceneRejected, match=r"of cities \['paris'\]"):
        InriaAdapter().scenes(tmp_path, source("inria", cities=["paris"]))
    assert inria_region("tyrol-e7") == "tyrole"


# ------------------------------------------------------------------------------------------------
# SpaceNet
# ------------------------------------------------------------------------------------------------
def geojson(path: Path, polys, crs: str | None = "urn:ogc:def:crs:OGC:1.3:CRS84", z: bool = True) -> Path:
    feats = []
    for p in polys:
        ring = [list(c) + ([0.0] if z else []) for c in p.exterior.coords]
        feats.append({"type": "Feature", "properties": {"partialDec": 1.0}, "geometry": {"type": "Polygon",
                                                                                        "coordinates": [ring]}})
    doc = {"type": "FeatureCollection", "features": feats}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def make_spacenet(root: Path) -> None:
    t = from_origin(-115.3, 36.2, 2.7e-6, 2.7e-6)
    for aoi, city, nums in [("AOI_2_Vegas_Train", "Vegas", [10, 2]), ("AOI_3_Paris_Train", "Paris", [5])]:
        k = aoi.split("_")[1]
        d = root / "SN2_buildings" / "train" / aoi
        for n in nums:
            write_tif(d / "RGB-PanSharpen" / f"RGB-PanSharpen_AOI_{k}_{city}_img{n}.tif",
                      np.zeros((3, 8, 8), np.uint16), "EPSG:4326", t)
            write_tif(d / "MUL-PanSharpen" / f"MUL-PanSharpen_AOI_{k}_{city}_img{n}.tif",
                      np.zeros((8, 8, 8), np.uint16), "EPSG:4326", t)
            geojson(d / "geojson/buildings" / f"buildings_AOI_{k}_{city}_img{n}.geojson",
                    [box(-115.29999, 36.19998, -115.29998, 36.19999)])
    vegas = root / "SN2_buildings/train/AOI_2_Vegas_Train"
    write_tif(vegas / "landcover/landcover_AOI_2_Vegas_img2.tif", np.full((8, 8), 3, np.uint8), "EPSG:4326", t)
    (vegas / "geojson/buildings/buildings_AOI_2_Vegas_img10.geojson").write_text("")  # no buildings
    sn1 = root / "SN1_buildings" / "train"
    write_tif(sn1 / "3band/3band_AOI_1_RIO_img7.tif", np.zeros((3, 8, 8), np.uint8), "EPSG:4326", t)
    write_tif(sn1 / "8band/8band_AOI_1_RIO_img7.tif", np.zeros((8, 8, 8), np.uint16), "EPSG:4326", t)
    geojson(sn1 / "geojson/Geo_AOI_1_RIO_img7.geojson",
            [box(-43.2, -22.9, -43.19999, -22.89999), box(-43.1, -22.9, -43.09999, -22.89999)])


def test_spacenet_sn1_sn2_layouts(tmp_path):
    make_spacenet(tmp_path)
    src = source("spacenet")
    scenes = SpaceNetAdapter().scenes(tmp_path, src)
    check_common(scenes, src)
    assert [(s.scene_id, s.region_hint) for s in scenes] == [
        ("aoi_1_rio_img7", "rio_de_janeiro"), ("aoi_2_vegas_img10", "las_vegas"), ("aoi_2_vegas_img2", "las_vegas"),
        ("aoi_3_paris_img5", "paris")]
    by = {s.scene_id: s for s in scenes}
    vegas = tmp_path / "SN2_buildings/train/AOI_2_Vegas_Train"
    v2 = by["aoi_2_vegas_img2"]
    assert v2.image == str(vegas / "RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img2.tif")
    assert v2.footprints == str(vegas / "geojson/buildings/buildings_AOI_2_Vegas_img2.geojson")
    assert v2.landcover == str(vegas / "landcover/landcover_AOI_2_Vegas_img2.tif")
    assert v2.footprints_crs == "EPSG:4326" and v2.extra["aoi"] == "AOI_2_Vegas"
    assert by["aoi_3_paris_img5"].landcover is None
    rio = load_footprints(by["aoi_1_rio_img7"])
    assert len(rio) == 2 and not rio.geometry.has_z.any() and rio.crs == "EPSG:4326"
    empty = load_footprints(by["aoi_2_vegas_img10"])  # zero-byte GeoJSON = no buildings
    assert len(empty) == 0 and empty.crs == "EPSG:4326"
    # filters and product
    for aois in (["AOI_2_Vegas"], ["vegas"], [2]):
        got = SpaceNetAdapter().scenes(tmp_path, source("spacenet", aois=aois))
        assert [s.scene_id for s in got] == ["aoi_2_vegas_img10", "aoi_2_vegas_img2"]
    mul = SpaceNetAdapter().scenes(tmp_path, source("spacenet", product="MUL-PanSharpen"))
    assert [s.extra["product"] for s in mul] == ["MUL-PanSharpen"] * 3  # no SN1 3band for MUL
    with pytest.raises(SceneRejected, match="for aois"):
        SpaceNetAdapter().scenes(tmp_path, source("spacenet", aois=["AOI_4_Shanghai"]))


def test_spacenet_invalid_geojson_is_no_buildings_but_not_for_local(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [ {')
    img = write_tif(tmp_path / "chip.tif", np.zeros((1, 4, 4), np.uint16), "EPSG:4326")
    sn = spacenet_scene_from_files(img, bad, source("spacenet"))
    assert sn.footprints_crs == "EPSG:4326" and len(load_footprints(sn)) == 0
    local = Scene(**{**sn.to_dict(), "kind": "local"})
    with pytest.raises(AnnotationRejected) as exc:
        load_footprints(local)
    assert exc.value.file == str(bad)


# ------------------------------------------------------------------------------------------------
# local
# ------------------------------------------------------------------------------------------------
def make_local(root: Path) -> None:
    utm = from_origin(450000.0, 40000.0, 0.3, 0.3)
    write_tif(root / "kampala" / "tile_01.tif", np.zeros((3, 8, 8), np.uint8), "EPSG:32636", utm)
    write_tif(root / "kampala" / "tile_02.tiff", np.zeros((3, 8, 8), np.uint8), "EPSG:32636", utm)
    write_tif(root / "loose.tif", np.zeros((3, 8, 8), np.uint8), "EPSG:32636", utm)
    write_tif(root / "labels" / "kampala" / "tile_01.tif", np.full((8, 8), 2, np.uint8), "EPSG:32636", utm)
    write_tif(root / "labels" / "loose.tif", np.full((8, 8), 5, np.uint8), "EPSG:32636", utm)
    geojson(root / "footprints" / "kampala" / "tile_01.geojson", [box(450000.3, 39998.0, 450001.2, 39999.1)],
            crs="urn:ogc:def:crs:EPSG::32636", z=False)


def test_local_layout(tmp_path):
    make_local(tmp_path)
    src = source("local")
    scenes = LocalAdapter().scenes(tmp_path, src)
    check_common(scenes, src)
    assert [(s.scene_id, s.region_hint) for s in scenes] == [
        ("kampala-tile_01", "kampala"), ("kampala-tile_02", "kampala"), ("loose", None)]
    by = {s.scene_id: s for s in scenes}
    t1 = by["kampala-tile_01"]
    assert t1.landcover == str(tmp_path / "labels/kampala/tile_01.tif")
    assert t1.footprints == str(tmp_path / "footprints/kampala/tile_01.geojson")
    assert t1.footprints_crs == "EPSG:32636"
    fp = load_footprints(t1)
    assert fp.crs == "EPSG:32636" and fp.geometry.iloc[0].area == pytest.approx(0.9 * 1.1)
    assert by["kampala-tile_02"].landcover is None and by["kampala-tile_02"].footprints is None
    assert by["loose"].landcover == str(tmp_path / "labels/loose.tif")
    # options: region, pattern, another labels folder
    assert {s.region_hint for s in LocalAdapter().scenes(tmp_path, source("local", region="uganda"))} == {"uganda"}
    only = LocalAdapter().scenes(tmp_path, source("local", pattern="tile_0*.tif*"))
    assert [s.scene_id for s in only] == ["kampala-tile_01", "kampala-tile_02"]
    other = tmp_path / "mylabels"
    write_tif(other / "kampala" / "tile_02.tif", np.full((8, 8), 7, np.uint8), "EPSG:32636")
    got = {s.scene_id: s for s in LocalAdapter().scenes(tmp_path, source("local", labels="mylabels"))}
    assert set(got) == {"kampala-tile_01", "kampala-tile_02", "loose"}  # mylabels/ excluded from images
    assert got["kampala-tile_02"].landcover == str(other / "kampala/tile_02.tif")
    assert got["kampala-tile_01"].landcover is None
    ov = LocalAdapter().scenes(tmp_path, source("local", region_override="somewhere"))
    assert {s.region_hint for s in ov} == {"somewhere"}


# ------------------------------------------------------------------------------------------------
# demo + registry
# ------------------------------------------------------------------------------------------------
def test_demo_delegates_and_registry(tmp_path):
    make_xbd(tmp_path / "xbd")
    make_inria(tmp_path / "inria")
    make_spacenet(tmp_path / "spacenet")
    make_local(tmp_path / "local")
    src = source("demo")
    scenes = scenes_for(src, tmp_path)
    assert isinstance(get_adapter("demo"), DemoAdapter)
    check_common(scenes, src)
    kinds = {s.kind for s in scenes}
    assert kinds == {"xbd", "inria", "spacenet", "local"}
    for s in scenes:
        assert s.scene_id.startswith(s.kind + "-") and "citation" not in s.extra
    ids = {s.scene_id for s in scenes}
    assert {"xbd-joplin-tornado_00000001_pre_disaster", "inria-tyrol-w12", "spacenet-aoi_2_vegas_img2",
            "local-kampala-tile_01"} <= ids
    assert len(scenes) == 3 + 4 + 4 + 3
    by = {s.scene_id: s for s in scenes}
    assert by["local-kampala-tile_01"].landcover == str(tmp_path / "local/labels/kampala/tile_01.tif")
    assert by["xbd-joplin-tornado_00000001_pre_disaster"].georef is not None
    with pytest.raises(SceneRejected, match="none of the sub-folders"):
        DemoAdapter().scenes(tmp_path / "xbd", src)
    assert set(ADAPTERS) == {"xbd", "inria", "spacenet", "local", "demo", "openaerialmap", "stac", "openearthmap",
                             "opencities"}
    assert ADAPTERS["openaerialmap"] == "pipeline.sources.adapters.openaerialmap:OpenAerialMapAdapter"
    for kind in ("xbd", "inria", "spacenet", "local"):
        assert get_adapter(kind).kind == kind
    with pytest.raises(KeyError, match="no adapter for kind 'inira'"):
        get_adapter("inira")


def test_duplicate_scene_ids_are_both_kept_with_ids_of_their_own(tmp_path):
    """Two files whose names map to one id both stay, each named by a digest of its own relative path."""
    from pipeline.sources.adapters.base import digest8

    write_tif(tmp_path / "A" / "x.tif", np.zeros((1, 4, 4), np.uint8))
    write_tif(tmp_path / "a" / "x.tif", np.zeros((1, 4, 4), np.uint8))
    write_tif(tmp_path / "b" / "y.tif", np.zeros((1, 4, 4), np.uint8))
    scenes = LocalAdapter().scenes(tmp_path, source("local"))
    ids = {Path(s.image).relative_to(tmp_path).as_posix(): s.scene_id for s in scenes}
    assert ids == {"A/x.tif": f"a-x-{digest8('A/x.tif')}", "a/x.tif": f"a-x-{digest8('a/x.tif')}",
                   "b/y.tif": "b-y"}


# ------------------------------------------------------------------------------------------------
# real samples
# ------------------------------------------------------------------------------------------------
def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_real_xbd_label_fit_and_mask(tmp_path):
    label = shared_file("xbd/joplin-tornado_00000050_pre_disaster.json")
    mask_png = shared_file("xbd/joplin-tornado_00000050_pre_disaster_b1.png")
    mask = cv2.imread(str(mask_png), cv2.IMREAD_UNCHANGED) > 0
    # the image itself is not shipped: the mask PNG stands in for it in a real xBD layout
    (tmp_path / "train/images").mkdir(parents=True)
    (tmp_path / "train/labels").mkdir(parents=True)
    shutil.copy(mask_png, tmp_path / "train/images/joplin-tornado_00000050_pre_disaster.png")
    shutil.copy(label, tmp_path / "train/labels/joplin-tornado_00000050_pre_disaster.json")
    [scene] = XbdAdapter().scenes(tmp_path, source("xbd"))
    assert scene.scene_id == "joplin-tornado_00000050_pre_disaster" and scene.region_hint == "joplin"
    assert scene.acquired == "2009-08-08" and scene.extra["gsd_metadata"] == pytest.approx(2.513, abs=1e-3)
    assert scene.extra["gsd_fit"] == pytest.approx(0.45, abs=0.01)
    assert scene.extra["fit_rms_m"] < 0.05 and scene.georef.origin.startswith("affine fit of ")
    # the pixel polygons rasterised reproduce the mask
    data = read_xbd_label(label)
    px, _ = vertex_pairs(data, label)
    assert len(px) == scene.extra["fit_pairs"] > 15 * 3
    xy = [g for _, g in xbd_polygons(data, "xy")]
    raster_xy = features.rasterize(((p, 1) for p in xy), out_shape=mask.shape) > 0
    assert iou(raster_xy, mask) > 0.9
    # the lon/lat footprints burnt through the fitted georef land on the same buildings
    fp = load_footprints(scene)
    assert len(fp) == 15 and fp.crs == "EPSG:4326"
    raster_ll = features.rasterize(((g, 1) for g in fp.geometry), out_shape=mask.shape,
                                   transform=Affine(*scene.georef.transform)) > 0
    assert iou(raster_ll, mask) > 0.9
    shifted = features.rasterize(((g, 1) for g in fp.geometry.translate(20 * 5.07e-6, 0)), out_shape=mask.shape,
                                 transform=Affine(*scene.georef.transform)) > 0
    assert iou(shifted, mask) < 0.8  # the check can fail: 20 px off is caught


def test_real_spacenet_chip_footprints_on_buildings(tmp_path):
    image = shared_file("spacenet/sample_geotiff.tif")
    labels = shared_file("spacenet/geotiff_labels.geojson")
    scene = spacenet_scene_from_files(image, labels, source("spacenet"))
    assert scene.scene_id == "sample_geotiff" and scene.footprints_crs == "EPSG:32616"
    fp = load_footprints(scene)
    assert len(fp) == 43 and fp.crs == "EPSG:32616"
    with rasterio.open(image) as ds:
        img = ds.read(1).astype(float)
        tr, bounds = ds.transform, ds.bounds
    chip = box(*bounds).buffer(1e-6)
    assert all(g.within(chip) for g in fp.geometry)
    grad = np.hypot(ndimage.sobel(img, 1), ndimage.sobel(img, 0))

    def edge_strength(geoms) -> float:
        edges = features.rasterize(((g.boundary, 1) for g in geoms), out_shape=img.shape, transform=tr) > 0
        return float(grad[edges].mean())

    aligned = edge_strength(fp.geometry)
    for dx, dy in [(20, 0), (-20, 0), (0, 20), (0, -20)]:
        assert aligned > 1.2 * edge_strength(fp.geometry.translate(dx, dy)), (dx, dy)
    # the same files found by the adapter in a flat folder
    shutil.copy(image, tmp_path / image.name)
    shutil.copy(labels, tmp_path / labels.name)
    [flat] = SpaceNetAdapter().scenes(tmp_path, source("spacenet"))
    assert flat.footprints == str(tmp_path / labels.name) and flat.footprints_crs == "EPSG:32616"


def test_real_inria_mask_links(tmp_path):
    image = shared_file("inria/austin_crop.tif")
    gt = shared_file("inria/austin_crop_gt.tif")
    (tmp_path / "train/images").mkdir(parents=True)
    (tmp_path / "train/gt").mkdir(parents=True)
    shutil.copy(image, tmp_path / "train/images/austin7.tif")
    shutil.copy(gt, tmp_path / "train/gt/austin7.tif")
    [scene] = InriaAdapter().scenes(tmp_path, source("inria"))
    assert scene.scene_id == "austin7" and scene.region_hint == "austin"
    assert scene.building_mask == str(tmp_path / "train/gt/austin7.tif")
    with rasterio.open(scene.building_mask) as m, rasterio.open(scene.image) as im:
        mask = m.read(1)
        assert (m.width, m.height) == (im.width, im.height) and m.crs == im.crs
        assert np.allclose(tuple(m.transform), tuple(im.transform), rtol=1e-9, atol=1e-6)
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert (mask == 255).mean() * 100 == pytest.approx(14.2, abs=0.5)


def test_xbd_tif_images(tmp_path):
    tr = tmp_path / "train"
    geo = Affine(*XBD_TRUE)
    write_tif(tr / "images" / "moore-tornado_00000001_pre_disaster.tif", np.zeros((3, 16, 16), np.uint8),
              "EPSG:4326", geo)
    xbd_json(tr / "labels" / "moore-tornado_00000001_pre_disaster.json", random_buildings(3, 4))
    write_png(tr / "images" / "moore-tornado_00000002_pre_disaster.png")
    write_tif(tr / "images" / "moore-tornado_00000002_pre_disaster.tif", np.zeros((3, 16, 16), np.uint8),
              "EPSG:4326", geo)
    xbd_json(tr / "labels" / "moore-tornado_00000002_pre_disaster.json", random_buildings(3, 5))
    a, b = XbdAdapter().scenes(tmp_path, source("xbd"))
    assert a.image.endswith("00000001_pre_disaster.tif") and a.georef is None  # the GeoTIFF's own georef
    assert a.extra["gsd_fit"] == pytest.approx(0.45, abs=0.01) and a.region_hint == "moore"
    assert b.image.endswith("00000002_pre_disaster.png") and b.georef is not None  # .png preferred
