"""Pre-annotation export and annotation import (pipeline/labels/annotations/), on small real files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine
from shapely.geometry import Polygon, box

from pipeline.constants import CLASS_COLORS
from pipeline.errors import AnnotationRejected
from pipeline.labels.annotations.export import export_preannotation, rasterize_footprints, write_label
from pipeline.labels.annotations.grid import TileGrid
from pipeline.labels.annotations.importer import find_annotation, import_annotation
from tests.conftest import shared_file

UTM = "EPSG:32633"
X0, Y0, GSD, N = 500000.0, 5000032.0, 0.5, 64


@pytest.fixture
def grid() -> TileGrid:
    """A 64 x 64 tile of 0.5 m pixels in UTM 33N, upper-left corner at (500000, 5000032)."""
    return TileGrid(crs=UTM, transform=(GSD, 0.0, X0, 0.0, -GSD, Y0), width=N, height=N)


def px_box(c0: int, r0: int, c1: int, r1: int, g: TileGrid | None = None) -> Polygon:
    """The polygon covering pixel columns c0..c1-1 and rows r0..r1-1 exactly (edges on pixel edges)."""
    a = Affine(*(g.transform if g else (GSD, 0.0, X0, 0.0, -GSD, Y0)))
    x0, y0 = a.c + a.a * c0, a.f + a.e * r0
    x1, y1 = a.c + a.a * c1, a.f + a.e * r1
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def expected(*rects: tuple[int, int, int, int, int], shape=(N, N)) -> np.ndarray:
    """An index array with ``value`` in rows r0:r1, cols c0:c1 for each (c0, r0, c1, r1, value), in order."""
    out = np.zeros(shape, dtype=np.uint8)
    for c0, r0, c1, r1, v in rects:
        out[r0:r1, c0:c1] = v
    return out


def write_tif(path: Path, data: np.ndarray, crs: str | None, transform: Affine | None, **kw) -> Path:
    data = data if data.ndim == 3 else data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, **kw)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def to_rgb(ids: np.ndarray) -> np.ndarray:
    """An (h, w, 3) RGB rendering of class ids with the class palette (0 -> black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for k, c in CLASS_COLORS.items():
        lut[k] = c
    return lut[ids]


def write_png(path: Path, ids_or_rgb: np.ndarray) -> Path:
    rgb = to_rgb(ids_or_rgb) if ids_or_rgb.ndim == 2 else ids_or_rgb
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def rejected(path: Path, grid: TileGrid) -> AnnotationRejected:
    with pytest.raises(AnnotationRejected) as ei:
        import_annotation(path, grid)
    assert ei.value.file == str(path)
    return ei.value


# ------------------------------------------------------------------------------------------- grid
def test_tile_grid_from_tile_record():
    rec = {"tile_id": "r000_c001", "window": [64, 0, 64, 32], "crs": UTM,
           "transform": [0.5, 0, 500032.0, 0, -0.5, 5000032.0], "bounds": [500032, 5000016, 500064, 5000032]}
    g = TileGrid.from_tile_record(rec)
    assert g == TileGrid(UTM, (0.5, 0.0, 500032.0, 0.0, -0.5, 5000032.0), 64, 32)
    assert g.shape == (32, 64)
    assert g.bounds == pytest.approx(tuple(rec["bounds"]))


# ------------------------------------------------------------------------------------- footprints
def test_rasterize_footprints_centre_rule_vs_all_touched():
    g = TileGrid(UTM, (1.0, 0.0, X0, 0.0, -1.0, 4000008.0), 8, 8)
    top = 4000008.0
    # 2.4 m square spanning x 0.8..3.2, y (from top) 0.8..3.2: centres 1.5, 2.5 inside, it touches 0..3.
    big = box(X0 + 0.8, top - 3.2, X0 + 3.2, top - 0.8)
    # 0.3 m shed inside pixel (5, 5) that covers no pixel centre.
    shed = box(X0 + 5.1, top - 5.4, X0 + 5.4, top - 5.1)
    fp = gpd.GeoDataFrame(geometry=[big, shed], crs=UTM)

    centre = rasterize_footprints(fp, g)
    touched = rasterize_footprints(fp, g, all_touched=True)

    want_centre = np.zeros((8, 8), np.uint8)
    want_centre[1:3, 1:3] = 1
    want_touched = np.zeros((8, 8), np.uint8)
    want_touched[0:4, 0:4] = 1
    want_touched[5, 5] = 1
    assert centre.dtype == np.uint8
    np.testing.assert_array_equal(centre, want_centre)  # 4 px for 5.76 m2: unbiased-ish, the shed vanishes
    np.testing.assert_array_equal(touched, want_touched)  # 16 px + 1: inflated, nothing vanishes


def test_rasterize_footprints_reprojects_and_clips(grid):
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    inside = px_box(10, 20, 30, 26)
    # A building half outside the tile's right edge: only its inside half is kept.
    straddling = px_box(56, 40, 72, 44)
    ll = [Polygon([to_ll.transform(x, y) for x, y in p.exterior.coords]) for p in (inside, straddling)]
    fp = gpd.GeoDataFrame(geometry=ll, crs="EPSG:4326")
    mask = rasterize_footprints(fp, grid)
    np.testing.assert_array_equal(mask, expected((10, 20, 30, 26, 1), (56, 40, 64, 44, 1)))
    assert rasterize_footprints(None, grid).sum() == 0


def test_export_preannotation_roundtrip(grid, tmp_path):
    image = write_tif(tmp_path / "img.tif", np.full((3, N, N), 7, np.uint8), UTM, Affine(*grid.transform))
    fp = gpd.GeoDataFrame(geometry=[px_box(4, 4, 12, 10), px_box(40, 50, 48, 70), px_box(100, 0, 110, 5)],
                          crs=UTM)
    out = tmp_path / "todo"
    rep = export_preannotation("r000_c001", grid, image, fp, out)
    want = expected((4, 4, 12, 10, 8), (40, 50, 48, 64, 8))
    assert rep == {"tile": "r000_c001", "buildings": 2, "building_pixels": int((want == 8).sum()),
                   "repaired_polygons": 0, "dropped_polygons": 0}
    assert sorted(p.name for p in out.iterdir()) == ["r000_c001.geojson", "r000_c001.tif", "r000_c001_image.tif"]
    assert (out / "r000_c001_image.tif").read_bytes() == image.read_bytes()

    with rasterio.open(out / "r000_c001.tif") as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (1, "uint8", 32633)
        assert tuple(src.transform)[:6] == grid.transform
    labels, report = import_annotation(out / "r000_c001.tif", grid)
    np.testing.assert_array_equal(labels, want)
    assert report["format"] == "index" and report["class_pixels"]["8"] == rep["building_pixels"]

    doc = json.loads((out / "r000_c001.geojson").read_text())
    assert {tuple(sorted(f["properties"].items())) for f in doc["features"]} == {
        (("class", 8), ("class_name", "building"))}
    vec, vrep = import_annotation(out / "r000_c001.geojson", grid)
    np.testing.assert_array_equal(vec, want)
    assert vrep["crs_source"] == "file"

    # Deterministic: a second export writes the same bytes.
    again = tmp_path / "todo2"
    export_preannotation("r000_c001", grid, image, fp, again)
    for name in ("r000_c001.tif", "r000_c001.geojson"):
        assert (again / name).read_bytes() == (out / name).read_bytes()

    # No footprints: an all-0 label and an empty, importable-as-empty collection.
    rep0 = export_preannotation("r001_c001", grid, image, None, out)
    assert rep0 == {"tile": "r001_c001", "buildings": 0, "building_pixels": 0, "repaired_polygons": 0,
                    "dropped_polygons": 0}
    assert json.loads((out / "r001_c001.geojson").read_text())["features"] == []


# ---------------------------------------------------------------------------------------- vectors
def test_vector_with_class_names_and_overlap_priority(grid, tmp_path):
    gdf = gpd.GeoDataFrame(
        {"Class_Name": ["Building", "Cropland", "road", "agriculture_land", "WATER", "developed space"]},
        geometry=[px_box(10, 10, 20, 20),   # building, listed first, drawn on top of the field below
                  px_box(0, 0, 32, 32),     # OEM code name for agriculture land
                  px_box(0, 40, 64, 44),    # road across the water
                  px_box(40, 0, 64, 8),
                  px_box(0, 36, 64, 48),
                  px_box(50, 50, 60, 60)],
        crs=UTM)
    path = tmp_path / "t.geojson"
    gdf.to_file(path)
    labels, rep = import_annotation(path, grid)
    want = expected((0, 0, 32, 32, 7), (40, 0, 64, 8, 7), (0, 36, 64, 48, 6), (0, 40, 64, 44, 4),
                    (10, 10, 20, 20, 8), (50, 50, 60, 60, 3))
    np.testing.assert_array_equal(labels, want)
    assert rep["format"] == "vector" and rep["repaired_polygons"] == 0
    assert rep["class_attribute"] == "Class_Name" and rep["features"] == 6 and rep["outside_polygons"] == 0
    assert rep["class_pixels"]["8"] == 100 and rep["unlabelled_pixels"] == int((want == 0).sum())


def test_vector_with_class_ids_and_polygon_partly_outside(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"class_id": [5, 2, 1]},
                           geometry=[px_box(-10, 0, 10, 10), px_box(20, 20, 30, 40), px_box(200, 200, 210, 210)],
                           crs=UTM)
    path = tmp_path / "t.geojson"
    gdf.to_file(path)
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, expected((0, 0, 10, 10, 5), (20, 20, 30, 40, 2)))
    assert rep["outside_polygons"] == 1


def test_gpkg_roundtrip(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"label": ["tree", "bareland"], "class": [5, 1]},
                           geometry=[px_box(0, 0, 64, 32), px_box(0, 32, 64, 64)], crs=UTM)
    path = tmp_path / "t.gpkg"
    gdf.to_file(path, layer="annotation")
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, expected((0, 0, 64, 32, 5), (0, 32, 64, 64, 1)))
    assert rep["class_attribute"] == "class" and rep["unlabelled_pixels"] == 0


def test_vector_in_epsg4326_lands_on_the_right_pixels(grid, tmp_path):
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    rects = [(3, 5, 17, 12, 8), (30, 40, 61, 47, 4)]
    geoms = [Polygon([to_ll.transform(x, y) for x, y in px_box(c0, r0, c1, r1).exterior.coords])
             for c0, r0, c1, r1, _ in rects]
    gdf = gpd.GeoDataFrame({"class": ["building", "road"]}, geometry=geoms, crs="EPSG:4326")
    path = tmp_path / "ll.geojson"
    gdf.to_file(path)
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, expected(*rects))
    assert rep["crs_source"] == "file"

    # The same polygons in a GeoJSON without a crs member: lon/lat by RFC 7946.
    doc = json.loads(path.read_text())
    doc.pop("crs", None)
    bare = tmp_path / "bare.geojson"
    bare.write_text(json.dumps(doc))
    labels2, rep2 = import_annotation(bare, grid)
    np.testing.assert_array_equal(labels2, labels)
    assert rep2["crs_source"] == "rfc7946"


def test_bow_tie_is_repaired_and_counted(grid, tmp_path):
    x = lambda c: X0 + c * GSD  # noqa: E731
    y = lambda r: Y0 - r * GSD  # noqa: E731
    bow = Polygon([(x(0), y(0)), (x(20), y(20)), (x(20), y(0)), (x(0), y(20))])  # crosses itself at (10, 10)
    assert not bow.is_valid
    gdf = gpd.GeoDataFrame({"class": [8, 5]}, geometry=[bow, px_box(40, 40, 50, 50)], crs=UTM)
    path = tmp_path / "bow.geojson"
    gdf.to_file(path)
    labels, rep = import_annotation(path, grid)
    assert rep["repaired_polygons"] == 1
    # make_valid splits the bow-tie into its left and right triangles (apex at the crossing).
    assert labels[10, 2] == 8 and labels[10, 17] == 8 and labels[2, 10] == 0 and labels[17, 10] == 0
    assert (labels[40:50, 40:50] == 5).all()


def test_vector_without_crs_inside_the_tile_is_taken_in_the_tile_crs(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"class": [6]}, geometry=[px_box(0, 0, 64, 16)], crs=None)
    path = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="crs"):
        gdf.to_file(path)
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, expected((0, 0, 64, 16, 6)))
    assert rep["crs_source"] == "tile"


# ---------------------------------------------------------------------------------------- rasters
def test_index_geotiff_roundtrip_and_window(grid, tmp_path):
    ids = (np.arange(N * N).reshape(N, N) % 9).astype(np.uint8)
    path = write_tif(tmp_path / "idx.tif", ids, UTM, Affine(*grid.transform))
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, ids)
    assert rep == {**rep, "format": "index", "georeferenced": True, "window": [0, 0, N, N]}

    # A larger raster that contains the tile 3 columns right and 5 rows down of its corner.
    big = np.zeros((N + 10, N + 6), np.uint8)
    big[5:5 + N, 3:3 + N] = ids
    t = Affine(GSD, 0, X0 - 3 * GSD, 0, -GSD, Y0 + 5 * GSD)
    path2 = write_tif(tmp_path / "big.tif", big, UTM, t)
    labels2, rep2 = import_annotation(path2, grid)
    np.testing.assert_array_equal(labels2, ids)
    assert rep2["window"] == [3, 5, N, N]

    # Nodata pixels read as unlabelled.
    nod = ids.copy()
    nod[0, :] = 255
    path3 = write_tif(tmp_path / "nod.tif", nod, UTM, Affine(*grid.transform), nodata=255)
    labels3, _ = import_annotation(path3, grid)
    assert (labels3[0] == 0).all() and (labels3[1:] == ids[1:]).all()


def test_palette_png_roundtrip(grid, tmp_path):
    ids = np.zeros((N, N), np.uint8)
    for k in range(9):
        ids[:, k * 7:(k + 1) * 7] = k
    path = write_png(tmp_path / "p.png", ids)
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, ids)
    assert rep["format"] == "palette" and rep["georeferenced"] is False and rep["window"] is None

    # RGBA: alpha 0 = unlabelled, whatever the colour.
    rgba = np.dstack([to_rgb(ids), np.full((N, N), 255, np.uint8)])
    rgba[:4, :, 3] = 0
    p4 = tmp_path / "p4.png"
    assert cv2.imwrite(str(p4), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    labels4, _ = import_annotation(p4, grid)
    assert (labels4[:4] == 0).all() and (labels4[4:] == ids[4:]).all()


def test_indexed_colour_png_is_read_through_its_palette(grid, tmp_path):
    """A paint program's indexed PNG: palette entries in arbitrary order, matched by colour."""
    idx = expected((0, 0, 64, 10, 7), (32, 10, 64, 64, 3))
    cmap = {i: (0, 0, 0, 255) for i in range(256)}
    cmap[3] = (*CLASS_COLORS[8], 255)  # entry 3 painted in building red
    cmap[7] = (*CLASS_COLORS[5], 255)  # entry 7 painted in tree green
    path = tmp_path / "indexed.png"
    with pytest.warns(Warning):  # rasterio: the PNG has no georeference
        with rasterio.open(path, "w", driver="PNG", width=N, height=N, count=1, dtype="uint8") as dst:
            dst.write(idx, 1)
            dst.write_colormap(1, cmap)
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, expected((0, 0, 64, 10, 5), (32, 10, 64, 64, 8)))
    assert rep["format"] == "palette"


def test_palette_geotiff_roundtrip(grid, tmp_path):
    ids = expected((0, 0, 64, 20, 2), (0, 20, 64, 40, 4), (5, 45, 25, 60, 8))
    rgb = np.moveaxis(to_rgb(ids), -1, 0)
    path = write_tif(tmp_path / "p.tif", rgb, UTM, Affine(*grid.transform), photometric="RGB")
    labels, rep = import_annotation(path, grid)
    np.testing.assert_array_equal(labels, ids)
    assert rep["format"] == "palette" and rep["georeferenced"] is True


def test_write_label_profile(tmp_path):
    for n, tiled in ((64, False), (512, True)):
        g = TileGrid(UTM, (GSD, 0.0, X0, 0.0, -GSD, Y0), n, n)
        arr = (np.arange(n * n).reshape(n, n) % 9).astype(np.uint8)
        path = tmp_path / f"l{n}.tif"
        write_label(arr, g, path)
        with rasterio.open(path) as src:
            assert src.compression.name.lower() == "deflate"
            assert src.profile.get("tiled", False) is tiled
            np.testing.assert_array_equal(src.read(1), arr)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    with pytest.raises(ValueError, match="above 8"):
        write_label(np.full((64, 64), 9, np.uint8), TileGrid(UTM, (GSD, 0.0, X0, 0.0, -GSD, Y0), 64, 64),
                    tmp_path / "bad.tif")


# ------------------------------------------------------------------------------ bad annotations
def test_reject_unknown_colour(grid, tmp_path):
    rgb = to_rgb(expected((0, 0, 64, 64, 5)))
    rgb[0:3, 0:4] = (0xA0, 0xA0, 0xA0)  # 12 px of a grey that is not developed space (#949494)
    rgb[10, 10] = (0xDE, 0x1F, 0x08)  # 1 px one step off the building red
    err = rejected(write_png(tmp_path / "c.png", rgb), grid)
    assert "unknown colours" in err.reason
    assert "#A0A0A0 (12 px)" in err.reason and "#DE1F08 (1 px)" in err.reason


def test_reject_unknown_class_name(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"class_name": ["building", "swamp"]},
                           geometry=[px_box(0, 0, 8, 8), px_box(8, 8, 16, 16)], crs=UTM)
    gdf.to_file(path := tmp_path / "n.geojson")
    err = rejected(path, grid)
    assert "unknown class name 'swamp'" in err.reason and "feature 1" in err.reason


def test_reject_class_id_9(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"class": [9]}, geometry=[px_box(0, 0, 8, 8)], crs=UTM)
    gdf.to_file(path := tmp_path / "n.gpkg")
    assert "class id 9 is not in 1..8" in rejected(path, grid).reason


def test_reject_missing_class_attribute(grid, tmp_path):
    gdf = gpd.GeoDataFrame({"kind": ["building"]}, geometry=[px_box(0, 0, 8, 8)], crs=UTM)
    gdf.to_file(path := tmp_path / "n.geojson")
    assert rejected(path, grid).reason.startswith("no class attribute")


def test_reject_index_values_outside_range(grid, tmp_path):
    ids = np.zeros((N, N), np.uint8)
    ids[0, :3] = 9
    ids[1, :] = 255
    path = write_tif(tmp_path / "i.tif", ids, UTM, Affine(*grid.transform))
    err = rejected(path, grid)
    assert err.reason == "values outside 0..8: 255 (64 px), 9 (3 px)"


def test_reject_wrong_shape_png(grid, tmp_path):
    path = write_png(tmp_path / "s.png", np.zeros((N, N - 4), np.uint8))
    assert rejected(path, grid).reason == f"shape {N - 4}x{N} differs from tile {N}x{N}"


def test_reject_misaligned_geotiff(grid, tmp_path):
    ids = np.ones((N, N), np.uint8)
    half = Affine(GSD, 0, X0 + GSD / 2, 0, -GSD, Y0)  # half a pixel east
    err = rejected(write_tif(tmp_path / "m.tif", ids, UTM, half), grid)
    assert err.reason.startswith("grid does not align") and "not on a whole pixel" in err.reason
    coarser = Affine(1.0, 0, X0, 0, -1.0, Y0)
    assert rejected(write_tif(tmp_path / "m2.tif", ids, UTM, coarser), grid).reason.startswith(
        "grid does not align: pixel size")
    shifted = Affine(GSD, 0, X0 + 2 * GSD, 0, -GSD, Y0)  # whole pixels, but the tile is not inside it
    assert "not inside" in rejected(write_tif(tmp_path / "m3.tif", ids, UTM, shifted), grid).reason
    other_crs = rejected(write_tif(tmp_path / "m4.tif", ids, "EPSG:32634", Affine(*grid.transform)), grid)
    assert other_crs.reason == f"grid does not align: CRS EPSG:32634 differs from tile CRS {UTM}"


def test_reject_extent_outside_the_tile(grid, tmp_path):
    far = box(X0 + 1000, Y0 + 1000, X0 + 1010, Y0 + 1010)
    gdf = gpd.GeoDataFrame({"class": [8]}, geometry=[far], crs=UTM)
    gdf.to_file(path := tmp_path / "far.geojson")
    assert rejected(path, grid).reason.startswith("extent does not overlap the tile")


def test_reject_no_crs_vector_with_metre_coordinates_elsewhere(grid, tmp_path):
    elsewhere = box(X0 + 5000, Y0, X0 + 5010, Y0 + 10)
    gdf = gpd.GeoDataFrame({"class": [8]}, geometry=[elsewhere], crs=None)
    with pytest.warns(UserWarning, match="crs"):
        gdf.to_file(path := tmp_path / "nocrs.gpkg")
    assert rejected(path, grid).reason.startswith("no CRS and coordinates do not match the tile")
    # A GeoJSON without crs member whose coordinates are not lon/lat has no CRS either.
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": 8},
         "geometry": {"type": "Polygon", "coordinates": [list(elsewhere.exterior.coords)]}}]}
    (gj := tmp_path / "nocrs.geojson").write_text(json.dumps(doc))
    assert rejected(gj, grid).reason.startswith("no CRS and coordinates do not match the tile")


def test_reject_unreadable_files(grid, tmp_path):
    (tif := tmp_path / "x.tif").write_bytes(b"this is not a tiff")
    assert rejected(tif, grid).reason.startswith("unreadable raster")
    (gj := tmp_path / "x.geojson").write_text("{not json")
    assert rejected(gj, grid).reason.startswith("unreadable vector file")
    (jpg := tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff")
    assert rejected(jpg, grid).reason.startswith("unknown annotation format '.jpg'")
    assert rejected(tmp_path / "missing.png", grid).reason == "file does not exist"


def test_reject_unrepairable_and_non_polygon(grid, tmp_path):
    x = lambda c: X0 + c * GSD  # noqa: E731
    flat = Polygon([(x(1), Y0 - 1), (x(5), Y0 - 1), (x(9), Y0 - 1), (x(1), Y0 - 1)])  # zero area
    gdf = gpd.GeoDataFrame({"class": [8]}, geometry=[flat], crs=UTM)
    gdf.to_file(path := tmp_path / "flat.geojson")
    assert "nothing polygonal left after make_valid" in rejected(path, grid).reason
    line = gpd.GeoDataFrame({"class": [4]}, geometry=[box(X0, Y0 - 5, X0 + 5, Y0).exterior], crs=UTM)
    line.to_file(path2 := tmp_path / "line.geojson")
    assert "LineString is not a polygon" in rejected(path2, grid).reason


# --------------------------------------------------------------------------------------- finding
def test_find_annotation(tmp_path):
    done = tmp_path / "done"
    assert find_annotation(done, "r000_c000") is None
    done.mkdir()
    (done / "r000_c000_image.tif").write_bytes(b"")
    (done / "r000_c0001.png").write_bytes(b"")
    assert find_annotation(done, "r000_c000") is None
    (done / "r000_c000.PNG").write_bytes(b"")
    assert find_annotation(done, "r000_c000") == done / "r000_c000.PNG"
    (done / "r000_c000.geojson").write_text("{}")
    with pytest.raises(AnnotationRejected) as ei:
        find_annotation(done, "r000_c000")
    assert ei.value.reason == "several annotation files: r000_c000.geojson, r000_c000.PNG"
    assert ei.value.file == str(done / "r000_c000")


# ------------------------------------------------------------------------------------ real samples
def test_real_osm_buildings_kampala(tmp_path):
    src = shared_file("openaerialmap/labels.geojson")
    raw = gpd.read_file(src)
    assert len(raw) == 206 and int((~raw.is_valid).sum()) == 1

    utm = "EPSG:32636"  # Kampala, 32.59 E
    minx, miny, maxx, maxy = raw.to_crs(utm).total_bounds
    gsd = 2.0  # coarse on purpose: keeps the grid small (a few hundred pixels a side)
    x0, y0 = np.floor(minx / gsd) * gsd - 10, np.ceil(maxy / gsd) * gsd + 10
    g = TileGrid(utm, (gsd, 0.0, x0, 0.0, -gsd, y0),
                 int(np.ceil((maxx - x0) / gsd)) + 5, int(np.ceil((y0 - miny) / gsd)) + 5)

    # As delivered it has no class attribute, so it is not an annotation.
    assert rejected(src, g).reason.startswith("no class attribute")

    raw["class_name"] = "buildings"
    raw.to_file(path := tmp_path / "kampala.geojson")
    labels, rep = import_annotation(path, g)
    assert rep["repaired_polygons"] == 1 and rep["outside_polygons"] == 0 and rep["features"] == 206
    mask = rasterize_footprints(raw, g)
    np.testing.assert_array_equal(labels, mask * 8)
    assert set(np.unique(labels)) == {0, 8} and rep["class_pixels"]["8"] > 1000


def test_real_openearthmap_label_as_palette_png(tmp_path):
    src = shared_file("openearthmap/palu_8_label.tif")
    with rasterio.open(src) as ds:
        ids = ds.read(1)
        g = TileGrid(ds.crs.to_string(), tuple(ds.transform)[:6], ds.width, ds.height)
    png = write_png(tmp_path / "palu_8.png", ids)
    labels, rep = import_annotation(png, g)
    np.testing.assert_array_equal(labels, ids)
    assert rep["format"] == "palette"
    # The original itself imports as an index raster on its own grid.
    same, rep2 = import_annotation(src, g)
    np.testing.assert_array_equal(same, ids)
    assert rep2["format"] == "index" and rep2["window"] == [0, 0, ds.width, ds.height]
