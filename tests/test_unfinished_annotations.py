"""An annotation that is its todo pre-annotation unchanged (same pixels / same geometries, whatever the bytes),
or mostly unlabelled, keeps its tile pending with a reason (pending.csv), instead of becoming a label."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from pipeline.labels.annotations.export import export_preannotation
from pipeline.labels.annotations.grid import TileGrid
from pipeline.labels.keys import tile_key
from pipeline.labels.labelling import MAX_UNLABELLED_SHARE, apply_annotations
from pipeline.release.writer import PENDING_COLUMNS
from pipeline.scene import Scene

CRS = "EPSG:32633"
N = 64
X0, Y0, GSD = 500000.0, 5000000.0, 0.5
KEY = tile_key("src", "a", "r000_c000")
PENDING = [{"tile_id": "r000_c000", "status": "pending", "label": None, "class_pixels": {}, "unlabelled_pixels": 0}]


def _setup(tmp_path: Path) -> tuple[Path, Path, dict]:
    work, ann = tmp_path / "work", tmp_path / "annotation"
    (work / "images").mkdir(parents=True)
    with rasterio.open(work / "images/r000_c000.tif", "w", driver="GTiff", width=N, height=N, count=3,
                       dtype="uint8", crs=CRS, transform=from_origin(X0, Y0, GSD, GSD)) as ds:
        ds.write(np.full((3, N, N), 80, np.uint8))
    tile = {"tile_id": "r000_c000", "crs": CRS, "transform": [GSD, 0, X0, 0, -GSD, Y0], "window": [0, 0, N, N],
            "image": "images/r000_c000.tif"}
    houses = gpd.GeoDataFrame(geometry=[box(X0 + 2, Y0 - 10, X0 + 8, Y0 - 4), box(X0 + 12, Y0 - 20, X0 + 20, Y0 - 12)],
                              crs=CRS)
    export_preannotation(KEY, TileGrid.from_tile_record(tile), work / tile["image"], houses, ann / "todo")
    (ann / "done").mkdir()
    return work, ann, tile


def _apply(work: Path, ann: Path, tile: dict) -> dict:
    scene = Scene(source="src", scene_id="a", kind="local", image="x.tif", license="CC0", attribution="t")
    recs, rejects = apply_annotations(scene, [tile], PENDING, work, ann / "done")
    assert rejects == []
    return recs[0]


def _write_index(path: Path, ids: np.ndarray, **kw) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="uint8", crs=CRS,
                       transform=from_origin(X0, Y0, GSD, GSD), **kw) as ds:
        ds.write(ids, 1)


def test_a_resaved_unedited_raster_stays_pending(tmp_path):
    work, ann, tile = _setup(tmp_path)
    with rasterio.open(ann / "todo" / f"{KEY}.tif") as ds:
        pre = ds.read(1)
    _write_index(ann / "done" / f"{KEY}.tif", pre, compress="lzw")  # other bytes, same pixels
    assert (ann / "done" / f"{KEY}.tif").read_bytes() != (ann / "todo" / f"{KEY}.tif").read_bytes()
    rec = _apply(work, ann, tile)
    assert rec["status"] == "pending" and rec["label"] is None
    assert rec["reason"] == f"{KEY}.tif: same pixels as its pre-annotation todo/{KEY}.tif (unedited)"


def test_an_unedited_geojson_stays_pending_whatever_its_feature_order(tmp_path):
    work, ann, tile = _setup(tmp_path)
    doc = json.loads((ann / "todo" / f"{KEY}.geojson").read_text())
    doc["features"].reverse()
    (ann / "done" / f"{KEY}.geojson").write_text(json.dumps(doc, indent=2))
    rec = _apply(work, ann, tile)
    assert rec["status"] == "pending"
    assert rec["reason"] == f"{KEY}.geojson: same geometries as its pre-annotation todo/{KEY}.geojson (unedited)"


def test_a_mostly_unlabelled_annotation_stays_pending_and_a_finished_one_is_released(tmp_path):
    work, ann, tile = _setup(tmp_path)
    ids = np.zeros((N, N), np.uint8)
    ids[: N * 3 // 10] = 2  # 30 % labelled, 70 % unlabelled
    _write_index(ann / "done" / f"{KEY}.tif", ids)
    rec = _apply(work, ann, tile)
    assert MAX_UNLABELLED_SHARE == 0.5
    assert rec["status"] == "pending" and rec["reason"] == (
        f"{KEY}.tif: 70.3 % of the tile unlabelled (more than 50 %)")
    ids[:] = 3
    ids[:5, :5] = 8  # edited: every pixel labelled
    _write_index(ann / "done" / f"{KEY}.tif", ids)
    rec = _apply(work, ann, tile)
    assert rec["status"] == "labelled" and rec["origin"] == "annotation"


def test_pending_csv_has_the_reason_column():
    assert PENDING_COLUMNS[-1] == "reason"
    rows = list(csv.reader(["key,region,source,source_scene_id,tile,todo,reason"]))
    assert tuple(rows[0]) == PENDING_COLUMNS
