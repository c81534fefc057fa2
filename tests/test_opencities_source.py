"""The Open Cities AI Challenge source (``kind: opencities``): both upstream layouts read by the adapter, and the
whole annotation round trip through Luigi with the registry's archives served by moto's S3 server: drone
orthomosaics at 0.15 m with an alpha band, building footprints in lon/lat, pre-annotations with the buildings,
completed annotations released at 0.3 m in Accra, Ghana, Africa, under ODbL-1.0 with the dataset's citation."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

import tasks  # noqa: F401  (registers the tasks)
from pipeline.errors import ConfigError, SceneRejected
from pipeline.release.validate.report import validate_release
from pipeline.sources.adapters import get_adapter
from pipeline.sources.adapters.opencities import OpenCitiesAdapter, city_region
from pipeline.sources.config import parse_sources
from pipeline.sources.footprints import load_footprints
from tests.helpers_build import build_in_process

PREFIX = "open_cities_ai_challenge_"
UTM = "EPSG:32630"  # Accra
X0, Y0, GSD, SIZE = 808000.0, 620000.0, 0.15, 2200  # one 1024 px tile at 0.3 m per scene
BUCKET = "open-cities"


def _scene(image: Path, labels: Path, seed: int, crs: str = UTM, x0: float = X0) -> list:
    """An RGBA orthomosaic (alpha 255) at 0.15 m and its buildings as GeoJSON in lon/lat (no ``crs`` member)."""
    rng = np.random.default_rng(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(40, 200, size=(3, SIZE, SIZE), dtype=np.uint8)
    with rasterio.open(image, "w", driver="GTiff", width=SIZE, height=SIZE, count=4, dtype="uint8", crs=crs,
                       transform=from_origin(x0, Y0, GSD, GSD), tiled=True, compress="deflate",
                       photometric="RGB", alpha="YES") as ds:
        ds.write(np.concatenate([rgb, np.full((1, SIZE, SIZE), 255, np.uint8)]))
    houses = [box(x0 + 20 + 30 * i, Y0 - 40 - 25 * j, x0 + 32 + 30 * i, Y0 - 30 - 25 * j)
              for i in range(9) for j in range(11)]
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform

    def lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat(xy[:, 0], xy[:, 1]))

    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"building": "yes"}, "geometry": mapping(shapely.transform(h, lonlat))}
        for h in houses]}))
    return houses


def _registry(root: Path, tier: str, city: str, scene: str, seed: int) -> list:
    return _scene(root / f"{PREFIX}{tier}_source" / f"{PREFIX}{tier}_source_{city}_{scene}" / "image.tif",
                  root / f"{PREFIX}{tier}_labels" / f"{PREFIX}{tier}_labels_{city}_{scene}" / "labels.geojson", seed)


def _source(**options) -> object:
    doc = {"sources": [{"name": "oc", "kind": "opencities", "location": "/somewhere", "license": "ODbL-1.0",
                        "attribution": "GFDRR Open Cities AI Challenge", **({"options": options} if options else {})}]}
    return parse_sources(doc, Path("sources.yaml"))[0]


def test_both_layouts_tiers_cities_and_regions(tmp_path):
    _registry(tmp_path / "registry", "train_tier_1", "acc", "665946", 1)
    _registry(tmp_path / "registry", "train_tier_2", "dar", "0a1b2c", 2)
    (tmp_path / "registry" / f"{PREFIX}train_tier_1_labels" / f"{PREFIX}train_tier_1_labels_acc_665946"
     / "labels.geojson").rename(tmp_path / "elsewhere.geojson")  # an image whose labels are missing
    _registry(tmp_path / "registry", "train_tier_1", "ptn", "a42435", 3)
    stac = tmp_path / "drivendata" / "train_tier_1"
    _scene(stac / "znz" / "c7415c" / "c7415c.tif", stac / "znz" / "c7415c-labels" / "c7415c.geojson", 4)
    _scene(stac / "xyz" / "b00001" / "b00001.tif", stac / "xyz" / "b00001-labels" / "b00001.geojson", 5)
    (stac / "znz" / "c7415c" / "notes.tif").write_bytes(b"")  # not a scene: named unlike its folder

    adapter = get_adapter("opencities")
    assert isinstance(adapter, OpenCitiesAdapter)
    scenes = adapter.scenes(tmp_path, _source())
    assert [(s.scene_id, s.region_hint, s.extra["tier"]) for s in scenes] == [
        ("acc_665946", "accra", "train_tier_1"), ("ptn_a42435", "pointe_noire", "train_tier_1"),
        ("xyz_b00001", "xyz", "train_tier_1"), ("znz_c7415c", "zanzibar", "train_tier_1")]
    by = {s.scene_id: s for s in scenes}
    assert by["acc_665946"].footprints is None  # pending without a pre-annotation, not a reject
    znz = by["znz_c7415c"]
    assert znz.footprints == str(stac / "znz" / "c7415c-labels" / "c7415c.geojson")
    assert znz.footprints_crs == "EPSG:4326" and znz.extra["footprints_format"] == "vector"
    assert len(load_footprints(znz)) == 99 and znz.kind == "opencities"
    assert znz.extra["citation"].startswith("GFDRR Labs (2020)")
    assert [s.scene_id for s in adapter.scenes(tmp_path, _source(tiers=[2]))] == ["dar_0a1b2c"]
    assert [s.scene_id for s in adapter.scenes(tmp_path, _source(tiers=[1, 2], cities=["DAR", "zanzibar"]))] == [
        "dar_0a1b2c", "znz_c7415c"]
    with pytest.raises(SceneRejected, match="no Open Cities AI scenes of cities \\['kin'\\] in train_tier_1"):
        adapter.scenes(tmp_path, _source(cities=["kin"]))
    for bad in ([3], [], ["1"]):
        with pytest.raises(ConfigError, match="options.tiers"):
            _source(tiers=bad)
    assert city_region("DAR") == "dar_es_salaam" and city_region("abc") == "abc"


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(folder.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(folder.parent)), recursive=False)
    return buf.getvalue()


def test_registry_archives_on_s3_to_an_annotated_release(tmp_path, moto_s3):
    upstream = tmp_path / "upstream"
    houses = {scene: _registry(upstream, "train_tier_1", "acc", scene, seed)
              for seed, scene in enumerate(["665946", "a42435"])}
    _registry(upstream, "train_tier_2", "dar", "0a1b2c", 9)  # fetched with the prefix, not read (tier 1 only)
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ACL="public-read")
    for folder in sorted(upstream.iterdir()):
        s3.put_object(Bucket=BUCKET, Key=f"ai-challenge/{folder.name}.tar.gz", Body=_tar_gz(folder),
                      ACL="public-read")
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: open-cities
    kind: opencities
    location: s3://{BUCKET}/ai-challenge/
    license: ODbL-1.0
    attribution: GFDRR Labs, Open Cities AI Challenge
    options: {{endpoint_url: "{moto_s3}"}}
""")
    # every tile awaits 8-class annotation: no release, the pre-annotations written
    assert not build_in_process(tmp_path, "r1", loopback=True)
    todo = tmp_path / "data" / "annotation" / "todo"
    keys = sorted(p.stem for p in todo.glob("*.geojson"))
    assert [k.split("~")[:2] for k in keys] == [["open-cities", "acc_665946"], ["open-cities", "acc_a42435"]]
    done = todo.parent / "done"
    done.mkdir()
    for key in keys:
        with rasterio.open(todo / f"{key}.tif") as ds:
            pre, profile = ds.read(1), ds.profile
            assert ds.crs.to_string() == UTM and ds.res == (0.3, 0.3) and ds.width == 1024
            # the buildings of the labels, burned on the tile's grid: 99 houses of 12 x 10 m, in metres squared
            built = (pre == 8).sum() * 0.09
            assert set(np.unique(pre)) == {0, 8} and built == pytest.approx(sum(h.area for h in houses[
                key.split("~")[1].split("_")[1]]), rel=0.03)
        with rasterio.open(done / f"{key}.tif", "w", **profile) as dst:  # an annotator's work: rangeland around
            dst.write(np.where(pre == 8, 8, 2).astype(np.uint8), 1)

    assert build_in_process(tmp_path, "r2", loopback=True)
    rel = tmp_path / "data" / "releases" / "r2"
    assert validate_release(rel) == []
    manifest = json.loads((rel / "manifest.json").read_text())
    images = manifest["images"]
    assert sorted(im["key"] for im in images) == keys
    for im in images:
        assert (im["source_kind"], im["region"], im["country"], im["continent"], im["native_gsd"], im["gsd"],
                im["crs"], im["license"]) == ("opencities", "accra", "Ghana", "Africa", 0.15, 0.3, UTM, "ODbL-1.0")
        assert im["segments"]["8"] == 99 and im["class_pixels"]["2"] > 0  # every house its own segment
    assert [s["citation"] for s in manifest["sources"]] == [OpenCitiesAdapter.citation]
    card = (rel / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "odbl"
    assert OpenCitiesAdapter.citation in card
    fetched = json.loads(next((tmp_path / "data" / "raw").glob("open-cities-*/fetch.json")).read_text())
    assert sorted(Path(a["path"]).name for a in fetched["archives"]) == [
        f"{PREFIX}train_tier_{t}_{part}.tar.gz" for t in (1, 2) for part in ("labels", "source")]
    images = {f["path"]: f["url"] for f in fetched["files"] if f["path"].endswith("image.tif")}
    assert images[f"{PREFIX}train_tier_1_source/{PREFIX}train_tier_1_source_acc_665946/image.tif"] == \
        f"s3://{BUCKET}/ai-challenge/{PREFIX}train_tier_1_source.tar.gz"  # each file cites its archive
