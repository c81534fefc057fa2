"""The release's index: GeoParquet and GeoPackage (pipeline/release/geoparquet.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyproj import Transformer
from shapely.geometry import Point, box

from pipeline.release.geoparquet import GPKG_INDEX, INDEX, SHARE_COLUMNS, index_frame, write_index
from tests.helpers_outputs import demo_release, manifest_of, synthetic_records


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return demo_release(tmp_path_factory)


def test_index_has_one_row_per_manifest_image(release):
    manifest = manifest_of(release)
    frame = gpd.read_parquet(release / INDEX)
    assert frame.crs.to_epsg() == 4326
    assert list(frame["id"]) == [im["id"] for im in manifest["images"]]  # manifest (natural) order
    by_id = {im["id"]: im for im in manifest["images"]}
    for row in frame.itertuples():
        im = by_id[row.id]
        assert (row.split, row.region, row.country, row.continent, row.source) == (
            im["split"], im["region"], im["country"], im["continent"], im["source"])
        assert row.gsd == im["gsd"]
        assert (row.image, row.label, row.sha256_image) == (im["image"], im["label"], im["sha256_image"])
        assert (release / row.image).is_file() and (release / row.label).is_file()
        shares = [getattr(row, c) for c in SHARE_COLUMNS]
        assert sum(shares) == pytest.approx(1.0)
        assert row.share_8 == pytest.approx(im["class_pixels"]["8"] / (im["width"] * im["height"]))
        # the footprint lies in the manifest's lon/lat box and covers its centre
        w, s, e, n = im["bounds_lonlat"]
        assert box(w, s, e, n).buffer(1e-6).contains(row.geometry)
        assert row.geometry.contains(Point((w + e) / 2, (s + n) / 2))
        assert row.geometry.is_valid and row.geometry.exterior.is_ccw


def test_index_is_geoparquet_with_a_covering_bbox(release):
    meta = json.loads(pq.read_metadata(release / INDEX).metadata[b"geo"])
    assert meta["primary_column"] == "geometry"
    col = meta["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
    assert "covering" in col  # GeoParquet 1.1 bbox column for spatial filtering
    assert INDEX in {f["path"] for f in manifest_of(release)["files"]}


def test_footprint_is_the_transformed_utm_rectangle(tmp_path):
    records = synthetic_records(tmp_path, size=64)
    frame = index_frame(records)
    rec = records[0]
    minx, miny, maxx, maxy = rec["bounds"]
    t = Transformer.from_crs(rec["crs"], "EPSG:4326", always_xy=True)
    expected = [t.transform(x, y) for x, y in ((minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy))]
    got = list(frame.loc[frame["id"] == rec["id"], "geometry"].iloc[0].exterior.coords)[:4]
    assert np.allclose(got, expected, atol=1e-7)
    # a record whose CRS cannot be used falls back to its lon/lat box
    broken = dict(rec, crs="EPSG:999999")
    geom = index_frame([broken]).geometry.iloc[0]
    assert geom.equals(box(*rec["bounds_lonlat"]))


def test_index_is_deterministic_and_ordered(tmp_path):
    records = synthetic_records(tmp_path / "r", size=64)
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_index(a, records) == [INDEX, GPKG_INDEX]
    write_index(b, list(reversed(records)))  # later: GDAL would write another last_change into the GeoPackage
    assert (a / INDEX).read_bytes() == (b / INDEX).read_bytes()
    assert (a / GPKG_INDEX).read_bytes() == (b / GPKG_INDEX).read_bytes()
    frame = gpd.read_parquet(a / INDEX)
    assert list(frame["id"]) == ["lima_1", "vienna_1", "vienna_2"]
    assert frame["acquired"].isna().tolist() == [False, False, True]


def test_acquired_is_a_utc_timestamp_column_null_where_unknown(tmp_path):
    import pyarrow as pa

    from pipeline.release.geoparquet import write_index

    records = synthetic_records(tmp_path, size=32)
    write_index(tmp_path, records)
    field = pq.read_schema(tmp_path / INDEX).field("acquired")
    assert pa.types.is_timestamp(field.type) and field.type.tz == "UTC"
    got = dict(zip(*pq.read_table(tmp_path / INDEX, columns=["id", "acquired"]).to_pydict().values()))
    assert got["vienna_2"] is None
    assert got["vienna_1"].isoformat() == "2019-06-01T00:00:00+00:00"
    gpkg = gpd.read_file(tmp_path / GPKG_INDEX).set_index("id")["acquired"]
    assert pd.isna(gpkg["vienna_2"]) and gpkg["vienna_1"].isoformat() == "2019-06-01T00:00:00+00:00"


def test_gpkg_index_has_the_parquet_rows(release):
    """``index.gpkg``: the same rows, columns, values and footprints as ``index.parquet``, listed in the manifest
    with its checksum (so ``validate`` checks it as any file)."""
    parquet = gpd.read_parquet(release / INDEX)
    gpkg = gpd.read_file(release / GPKG_INDEX, layer="index")
    assert gpkg.crs.to_epsg() == 4326 and list(gpkg.columns) == list(parquet.columns)
    assert len(gpkg) == len(manifest_of(release)["images"]) == len(parquet)
    pd.testing.assert_frame_equal(pd.DataFrame(gpkg.drop(columns=["geometry", "acquired"])),
                                  pd.DataFrame(parquet.drop(columns=["geometry", "acquired"])), check_dtype=False)
    assert gpkg.geometry.geom_equals_exact(parquet.geometry, tolerance=1e-12).all()
    assert (gpkg["acquired"].isna() == parquet["acquired"].isna()).all()
    listed = {f["path"]: f for f in manifest_of(release)["files"]}
    assert GPKG_INDEX in listed


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="no GDAL command line tools (apt-get install gdal-bin)")
def test_gpkg_index_opens_in_the_systems_gdal(release):
    """The GDAL of the machine's packages (Debian's 3.6 has no Parquet driver, nor the QGIS built on it) opens
    ``index.gpkg`` without a warning and sees every image."""
    proc = subprocess.run(["ogrinfo", "-ro", "-so", str(release / GPKG_INDEX), "index"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"Feature Count: {len(manifest_of(release)['images'])}" in proc.stdout
    assert "Warning" not in proc.stdout + proc.stderr


def test_under_represented_counts_released_images_only():
    from pipeline.dataset.balance import released_per_continent, under_represented

    tiles = [{"key": f"k{i}", "continent": "Africa", "status": "pending"} for i in range(4)]
    tiles.append({"key": "e1", "continent": "Europe", "status": "labelled"})
    per = released_per_continent(tiles, {t["key"] for t in tiles})
    assert per == {"Europe": 1}  # the four pending African tiles are not released
    warnings = under_represented(per)
    assert "continent Africa is under-represented: 0 released images (mean 0.2 per continent)" in warnings
    assert not any(w.startswith("continent Europe") for w in warnings)
    assert len(under_represented({})) == 6


def test_a_missing_index_is_one_problem_and_older_releases_need_no_gpkg(release, tmp_path):
    """``validate``: a listed index file that is missing is said once (check 5's line; check 11 said it again); a
    release written before ``index.gpkg`` existed (not in its manifest) is valid without it."""
    from pipeline.release.validate.report import validate_release

    for name in (INDEX, GPKG_INDEX):
        copy = tmp_path / name
        shutil.copytree(release, copy)
        (copy / name).unlink()
        assert validate_release(copy) == [f"{name}: missing"]
    older = tmp_path / "older"
    shutil.copytree(release, older)
    (older / GPKG_INDEX).unlink()
    manifest = json.loads((older / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != GPKG_INDEX]
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert validate_release(older) == []
