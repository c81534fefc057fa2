"""SpaceNet's chips (650 px at 0.3 m: smaller than one 1024 px tile) joined into mosaic scenes: the grouping rules
(:mod:`pipeline.sources.mosaic`), the mosaic read as one raster with the chips' pixels where they are and nodata
elsewhere, and a SpaceNet 2 AOI folder of 4 x 4 chips built into four 1024 px tiles whose pre-annotations hold every
building, those cut in two by a chip edge whole again, where a chip-by-chip build released nothing."""
from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import cv2
import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.affinity import translate
from shapely.geometry import box, mapping

import tasks  # noqa: F401  (registers the tasks)
from pipeline.labels.annotations.grid import TileGrid, burn
from pipeline.raster.reading import open_scene
from pipeline.release.validate.report import validate_release
from pipeline.scene import Scene
from pipeline.sources import mosaic
from pipeline.sources.footprints import load_footprints
from pipeline.sources.mosaic import mosaic_scenes
from tests.helpers_build import build_in_process

A, E = 3.3e-6, -2.7e-6  # ~0.3 m at Las Vegas (36.2 N), in degrees
LON0, LAT0, CHIP = -115.30, 36.20, 650
Y0 = 4009999.8  # a multiple of 0.3 m: the UTM chips lie on the output grid


def _chip(path: Path, col: int, row: int, seed: int, *, dx: float = 0.0, count: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(200, 1800, size=(13, 13, count)).astype(np.float32)
    data = cv2.resize(small, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC).clip(1, 2047).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=CHIP, height=CHIP, count=count, dtype="uint16",
                       crs="EPSG:4326", transform=from_origin(LON0 + (col * CHIP + dx) * A, LAT0 + row * CHIP * E,
                                                              A, -E), tiled=True, compress="deflate") as ds:
        ds.write(data.reshape(CHIP, CHIP, count).transpose(2, 0, 1))
    return path


def _scene(image: Path, region: str = "las_vegas", **extra) -> Scene:
    return Scene(source="sn", scene_id=image.stem.lower(), kind="spacenet", image=str(image), license="",
                 attribution="", region_hint=region, **extra)


def test_grouping_rules(tmp_path, monkeypatch):
    grid = [_scene(_chip(tmp_path / f"g{c}{r}.tif", c, r, 10 * c + r)) for c in range(2) for r in range(2)]
    far = _scene(_chip(tmp_path / "far.tif", 9, 0, 5))  # not touching the others
    shifted = _scene(_chip(tmp_path / "shifted.tif", 2, 0, 6, dx=0.5))  # touching, half a pixel off the lattice
    other = _scene(_chip(tmp_path / "other.tif", 2, 1, 7), region="henderson")  # touching, another region
    labelled = _scene(_chip(tmp_path / "lab.tif", 0, 2, 8), landcover=str(tmp_path / "lab.tif"))  # has labels
    out = mosaic_scenes([far, shifted, other, labelled, *grid])
    assert [s.scene_id for s in out] == ["far", "g00-mosaic4", "lab", "other", "shifted"]
    joined = out[1].extra["mosaic"]
    assert (joined["width"], joined["height"]) == (2 * CHIP, 2 * CHIP)
    assert [(c["scene_id"], c["x"], c["y"]) for c in joined["chips"]] == [
        ("g00", 0, 0), ("g01", 0, CHIP), ("g10", CHIP, 0), ("g11", CHIP, CHIP)]
    assert joined["transform"] == pytest.approx([A, 0, LON0, 0, E, LAT0])
    with open_scene(out[1]) as ds, rasterio.open(grid[3].image) as g11:
        assert (ds.width, ds.height, ds.count, ds.crs.to_epsg()) == (2 * CHIP, 2 * CHIP, 3, 4326)
        window = ds.read(window=((CHIP, 2 * CHIP), (CHIP, 2 * CHIP)))
        assert np.array_equal(window, g11.read())  # the chip's pixels, where it lies
        assert ds.dataset_mask().all()
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", CHIP)  # a block per chip: a mosaic per block, each reaching out
    blocks = mosaic_scenes(grid)
    assert [s.scene_id for s in blocks] == ["g00-mosaic4", "g01-mosaic4", "g10-mosaic4", "g11-mosaic4"]
    cores = [s.extra["mosaic"]["core"] for s in blocks]
    assert [c["area"] for c in cores] == [pytest.approx([LON0, LAT0 + 2 * CHIP * E, LON0 + 2 * CHIP * A, LAT0])] * 4
    assert [c["bounds"] for c in cores] == [  # each block once: g01 is the chip below g00
        pytest.approx([LON0 + c * CHIP * A, LAT0 + (r + 1) * CHIP * E, LON0 + (c + 1) * CHIP * A, LAT0 + r * CHIP * E])
        for c in range(2) for r in range(2)]


def _utm_chip(path: Path, col: int, row: int) -> Path:
    """A uint8 chip of CHIP px at 0.3 m in UTM 11N whose pixels say where they are."""
    yy, xx = np.mgrid[row * CHIP:(row + 1) * CHIP, col * CHIP:(col + 1) * CHIP]
    data = np.stack([(xx * 7 + yy * 3) % 251, (xx // 3 + yy // 5) % 253, (xx * yy) % 241]).astype(np.uint8) + 1
    with rasterio.open(path, "w", driver="GTiff", width=CHIP, height=CHIP, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(660000.0 + col * CHIP * 0.3, Y0 - row * CHIP * 0.3,
                                                              0.3, 0.3)) as ds:
        ds.write(data)
    return path


def test_drone_chips_reach_half_a_coarsest_tile_into_the_next_block(tmp_path, monkeypatch):
    """Chips of 5 cm: a 1024 px tile at 0.5 m is 10240 of their pixels, so a block's mosaic reaches 5120 px (not
    the 2048 of 0.3 m chips) beyond it, and the tiles centred at its edge are read whole."""
    chips = []
    for col in range(12):
        path = tmp_path / f"d{col:02d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=1000, height=1000, count=3, dtype="uint8",
                           crs="EPSG:32611", transform=from_origin(660000.0 + col * 50.0, Y0, 0.05, 0.05)) as ds:
            ds.write(np.full((3, 1000, 1000), col + 1, np.uint8))
        chips.append(_scene(path))
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", 4000)
    first = mosaic_scenes(chips)[0]
    assert first.scene_id == "d00-mosaic10"  # chips starting before 4000 + 5120 px
    assert max(c["x"] + c["width"] for c in first.extra["mosaic"]["chips"]) == 10000


def test_blocks_smaller_than_a_tile_still_make_each_tile_once(tmp_path, monkeypatch):
    """12 x 8 chips of 200 px at 5 cm in blocks of 400 px, tiled at 128 px at 0.3 m (768 chip px): most blocks have
    no tile centred in them (their tile stage says so), the others make the area's 3 x 2 tiles, each once."""
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import tile_jobs

    chips = []
    for col in range(12):
        for row in range(8):
            path = tmp_path / f"s{col:02d}{row}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=3, dtype="uint8",
                               crs="EPSG:32611", transform=from_origin(660000.0 + col * 10.0, Y0 - row * 10.0,
                                                                      0.05, 0.05)) as ds:
                ds.write(np.full((3, 200, 200), 7 * col + row + 1, np.uint8))
            chips.append(_scene(path))
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", 400)
    scenes = mosaic_scenes(chips)
    assert len(scenes) == 24 and all(s.extra["mosaic"]["core"] for s in scenes)
    made = []
    for scene in scenes:
        plan = plan_scene(scene, tile_size=128)
        made += [tuple(round(v, 3) for v in grid.transform[:6]) for _, grid, _ in tile_jobs(plan, 128)]
    assert len(made) == len(set(made)) == 3 * 2
    assert sorted({t[2] for t in made}) == [660000.0, 660038.4, 660076.8]


def test_an_area_across_a_utm_zone_boundary_is_tiled_in_one_zone(tmp_path, monkeypatch):
    """10 chips on both sides of 84 W (UTM 16 | 17; Atlanta's SpaceNet 4 AOI is there) in blocks of one chip: the
    mosaics of the western blocks are centred in zone 16, yet every block is planned in the zone of the area's
    centre (17), so their tiles share one lattice, none twice."""
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import tile_jobs

    chips = []
    for col in range(10):
        path = tmp_path / f"z{col}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=CHIP, height=CHIP, count=3, dtype="uint8",
                           crs="EPSG:4326", transform=from_origin(-84.010 + col * CHIP * 3.7e-6, 33.75, 3.7e-6,
                                                                  2.7e-6)) as ds:
            ds.write(np.full((3, CHIP, CHIP), col + 1, np.uint8))
        chips.append(_scene(path, region="atlanta"))
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", CHIP)
    plans = [plan_scene(s, tile_size=128) for s in mosaic_scenes(chips)]
    assert {p["center_lonlat"][0] < -84 for p in plans} == {True, False}  # mosaics on both sides
    assert {p["grid"]["crs"] for p in plans} == {"EPSG:32617"}  # the area's centre, -83.998, is in zone 17
    made = [tuple(round(v, 3) for v in grid.transform[:6]) for p in plans for _, grid, _ in tile_jobs(p, 128)]
    assert len(made) == len(set(made)) > 0


def test_an_area_of_several_blocks_loses_no_tile_between_them(tmp_path, monkeypatch):
    """6 x 2 chips of 650 px (3900 x 1300 px at 0.3 m) in blocks of 3 x 3 chips, tiled at 256 px: each block's mosaic
    makes the tiles centred in it, on one lattice anchored at the area's corner, so the area gives all its 15 x 5
    whole tiles, none twice, each the chips' pixels (before: a lattice centred per block, 7 + 7 columns, the strip
    between them lost)."""
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import write_scene_tiles

    chips = [_scene(_utm_chip(tmp_path / f"c{c}{r}.tif", c, r)) for c in range(6) for r in range(2)]
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", 3 * CHIP)
    scenes = mosaic_scenes(chips)
    assert [s.scene_id for s in scenes] == ["c00-mosaic12", "c30-mosaic12"]  # each reaches over the other
    tiles = []
    for scene in scenes:
        plan = plan_scene(scene, tile_size=256)
        assert plan["grid"]["gsd"] == 0.3 and plan["tiling"]["anchor"] == [660000.0, Y0]
        made, dropped = write_scene_tiles(scene, plan, tmp_path / scene.scene_id, tile_size=256)
        assert dropped == []
        tiles += [(tmp_path / scene.scene_id / t["image"], t["bounds"]) for t in made]
    assert len(tiles) == (3900 // 256) * (1300 // 256) == 75
    corners = sorted((b[0], b[3]) for _, b in tiles)
    assert len(set(corners)) == 75 and (660000.0, Y0) in corners  # none twice, from the area's corner on
    assert {round((x - 660000.0) / 76.8, 6) for x, _ in corners} == set(range(15))  # every column, seams included
    for path, (minx, _, _, maxy) in tiles:
        col, row = round((minx - 660000.0) / 0.3), round((Y0 - maxy) / 0.3)
        yy, xx = np.mgrid[row:row + 256, col:col + 256]
        want = np.stack([(xx * 7 + yy * 3) % 251, (xx // 3 + yy // 5) % 253, (xx * yy) % 241]).astype(np.uint8) + 1
        with rasterio.open(path) as ds:
            assert np.array_equal(ds.read(), want), path.name


def test_a_chip_that_kills_its_reader_costs_only_itself(tmp_path, monkeypatch):
    grid = [_scene(_chip(tmp_path / f"g{c}{r}.tif", c, r, 10 * c + r)) for c in range(2) for r in range(2)]
    read = mosaic.chip_of

    def crashing(scene: Scene):  # a chip whose header crashes the decoder (GDAL is native code)
        if scene.scene_id == "g11":
            os.kill(os.getpid(), signal.SIGSEGV)
        return read(scene)

    monkeypatch.setattr(mosaic, "chip_of", crashing)
    assert [s.scene_id for s in mosaic.mosaic_contained(grid, str(tmp_path))] == ["g00-mosaic3", "g11"]


def _houses(col: int, row: int) -> list:
    """Buildings of 15 x 12 m every 40 m, in lon/lat; some straddle the chips' edges."""
    x0, y0 = LON0 + col * CHIP * A, LAT0 + row * CHIP * E
    return [box(x0 + i * 133 * A, y0 + (j * 133 + 50) * E, x0 + (i * 133 + 50) * A, y0 + j * 133 * E)
            for i in range(5) for j in range(5)]


def _spacenet_aoi(root: Path, n: int) -> list:
    """An SN2 AOI folder of ``n`` x ``n`` chips with per-chip building GeoJSONs (buildings cut at chip edges)."""
    aoi = root / "AOI_2_Vegas_Train"
    chip_box = {}
    for col in range(n):
        for row in range(n):
            k = row * n + col + 1
            _chip(aoi / "RGB-PanSharpen" / f"RGB-PanSharpen_AOI_2_Vegas_img{k}.tif", col, row, k)
            x0, y0 = LON0 + col * CHIP * A, LAT0 + row * CHIP * E
            chip_box[k] = box(x0, y0 + CHIP * E, x0 + CHIP * A, y0)
    houses = [h for col in range(n) for row in range(n) for h in _houses(col, row)]
    houses = [translate(h, xoff=110 * A) for h in houses]  # shifted so that the last column straddles the edge
    for k, cb in chip_box.items():
        parts = [h.intersection(cb) for h in houses if h.intersection(cb).area > 0]
        doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"partialDec": 1.0},
                                                           "geometry": mapping(p)} for p in parts]}
        path = aoi / "geojson" / "buildings" / f"buildings_AOI_2_Vegas_img{k}.geojson"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    _chip(aoi / "RGB-PanSharpen" / "RGB-PanSharpen_AOI_2_Vegas_img99.tif", 12, 0, 99)  # alone: too small
    (aoi / "geojson" / "buildings" / "buildings_AOI_2_Vegas_img99.geojson").write_text("")
    return houses


@pytest.mark.parametrize("block", [mosaic.MOSAIC_BLOCK, 2 * CHIP])
def test_spacenet_chips_become_tiles(tmp_path, monkeypatch, block):
    """The AOI in one mosaic, and in four blocks (each a mosaic whose tiles are those centred in it, on one
    lattice): the same four tiles, whose pre-annotations are the whole buildings across chip and block edges."""
    monkeypatch.setattr(mosaic, "MOSAIC_BLOCK", block)
    houses = _spacenet_aoi(tmp_path / "sn2", 4)
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: spacenet-vegas
    kind: spacenet
    location: {tmp_path / 'sn2'}
    license: CC BY-SA 4.0
    attribution: SpaceNet on AWS
""")
    assert not build_in_process(tmp_path, "r1")  # every tile awaits annotation, pre-annotated with the buildings
    catalog = json.loads(next((tmp_path / "data" / "catalog").glob("spacenet-vegas-*.json")).read_text())
    named = ["img1"] if block > 4 * CHIP else ["img1", "img10", "img11", "img3"]  # each block's first own chip
    assert [s["scene_id"] for s in catalog["scenes"]] == [f"aoi_2_vegas_{n}-mosaic16" for n in named] + [
        "aoi_2_vegas_img99"]
    todo = tmp_path / "data" / "annotation" / "todo"
    keys = sorted(p.stem for p in todo.glob("*.geojson"))
    if block > 4 * CHIP:
        assert [k.split("~")[1:] for k in keys] == [["aoi_2_vegas_img1-mosaic16", f"r00{r}_c00{c}"]
                                                    for r in range(2) for c in range(2)]
    else:  # one tile from each block, on one lattice: they meet at the block seams
        assert len(keys) == 4 and len({k.split("~")[1] for k in keys}) == 4
        corners = set()
        for key in keys:
            with rasterio.open(todo / f"{key}.tif") as t:
                corners.add((round(t.transform.c, 3), round(t.transform.f, 3)))
        xs, ys = sorted({x for x, _ in corners}), sorted({y for _, y in corners})
        assert len(corners) == 4 and xs[1] - xs[0] == pytest.approx(307.2) and ys[1] - ys[0] == pytest.approx(307.2)
    scene = Scene.from_dict(catalog["scenes"][0])
    assert len(load_footprints(scene)) > len(houses)  # the pieces of every chip, those cut at an edge twice
    done = todo.parent / "done"
    done.mkdir()
    whole = gpd.GeoDataFrame(geometry=houses, crs="EPSG:4326").to_crs("EPSG:32611").geometry
    built = 0
    for key in keys:
        with rasterio.open(todo / f"{key}.tif") as ds:
            pre, profile = ds.read(1), ds.profile
            assert ds.res == (0.3, 0.3) and ds.crs.to_epsg() == 32611
            grid = TileGrid("EPSG:32611", tuple(ds.transform)[:6], ds.width, ds.height)
        # the pieces of the chips' files burn exactly the pixels of the whole buildings: aligned across chip edges
        assert np.array_equal(pre, burn([(g, 8) for g in whole], grid))
        with rasterio.open(done / f"{key}.tif", "w", **profile) as dst:
            dst.write(np.where(pre == 8, 8, 3).astype(np.uint8), 1)
        built += int((pre == 8).sum())
    assert build_in_process(tmp_path, "r2")
    rel = tmp_path / "data" / "releases" / "r2"
    assert validate_release(rel) == []
    images = json.loads((rel / "manifest.json").read_text())["images"]
    assert len(images) == 4 and {im["region"] for im in images} == {"las_vegas"}
    assert {im["gsd"] for im in images} == {0.3} and all(im["unlabelled_pixels"] == 0 for im in images)
    assert built == sum(im["class_pixels"]["8"] for im in images) > 0
    rejects = list(csv.DictReader((rel / "rejects.csv").open()))
    assert [(r["scene_id"], r["stage"]) for r in rejects] == [("aoi_2_vegas_img99", "tile")]
    assert "smaller than one 1024x1024 tile" in rejects[0]["reason"]


def _patch(root: Path, col: int, row: int, size: int = 700, shift: float = 0.0) -> None:
    """An ISPRS-Vaihingen-like labelled patch: image and 8-class label of ``size`` px at 0.3 m in UTM 32N, whose
    pixels say where they are (the label's georeference ``shift`` metres off when asked)."""
    yy, xx = np.mgrid[row * size:(row + 1) * size, col * size:(col + 1) * size]
    image = np.stack([(xx * 5 + yy) % 251, (xx + yy * 3) % 241, (xx // 7 * yy // 7) % 239]).astype(np.uint8) + 1
    label = (((xx // 50) + (yy // 50)) % 8 + 1).astype(np.uint8)
    for folder, data, dx in (("images", image, 0.0), ("labels", label[np.newaxis], shift)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        with rasterio.open(root / folder / f"top_{col}_{row}.tif", "w", driver="GTiff", width=size, height=size,
                           count=len(data), dtype="uint8", crs="EPSG:32632",
                           transform=from_origin(496000.2 + col * size * 0.3 + dx, 5420000.1 - row * size * 0.3,
                                                 0.3, 0.3)) as ds:
            ds.write(data)


def test_labelled_patches_smaller_than_a_tile_release_as_mosaics(tmp_path):
    """A local folder of 4 x 3 labelled patches of 700 px at 0.3 m (210 m, smaller than a 1024 px tile: each alone is
    a ``tile`` reject, so the release was empty) with ``options.mosaic: true`` releases 2 x 2 tiles whose labels are
    the patches' labels pixel for pixel, across patch edges."""
    for col in range(4):
        for row in range(3):
            _patch(tmp_path / "vaihingen", col, row)
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: patches
    kind: local
    location: {tmp_path / 'vaihingen' / 'images'}
    license: CC BY 4.0
    attribution: test patches
    options: {{labels: ../labels, region: stuttgart, mosaic: true}}
""")
    assert build_in_process(tmp_path, "r1")
    rel = tmp_path / "data" / "releases" / "r1"
    assert validate_release(rel) == []
    images = json.loads((rel / "manifest.json").read_text())["images"]
    assert len(images) == 4 and {im["source_scene_id"] for im in images} == {"top_0_0-mosaic12"}
    for im in images:
        with rasterio.open(rel / im["label"]) as lbl:
            left, top = lbl.transform.c, lbl.transform.f
            col, row = round((left - 496000.2) / 0.3), round((5420000.1 - top) / 0.3)
            yy, xx = np.mgrid[row:row + 1024, col:col + 1024]
            assert np.array_equal(lbl.read(1), (((xx // 50) + (yy // 50)) % 8 + 1).astype(np.uint8))
        assert im["unlabelled_pixels"] == 0


def test_a_patch_whose_label_lies_elsewhere_costs_only_itself(tmp_path):
    """A patch whose label is georeferenced two pixels off stays out of the mosaic: its own label stage rejects it
    naming its file, the mosaic of the others is labelled.  A label that moves after the catalog (the check at the
    label stage) rejects the mosaic's labels naming that file."""
    from pipeline.errors import AnnotationRejected
    from pipeline.labels.landcover import write_label_tiles
    from pipeline.raster.plan import plan_scene
    from pipeline.raster.tiling import write_scene_tiles

    for col in range(3):
        _patch(tmp_path, col, 0, size=300, shift=0.6 if col == 2 else 0.0)
    chips = [_scene(tmp_path / "images" / f"top_{c}_0.tif", landcover=str(tmp_path / "labels" / f"top_{c}_0.tif"))
             for c in range(3)]
    joined, alone = mosaic_scenes(chips)
    assert (joined.scene_id, alone.scene_id) == ("top_0_0-mosaic2", "top_2_0")
    for scene, bad in ((alone, "top_2_0"), (joined, None)):
        plan = plan_scene(scene, tile_size=256)
        tiles, _ = write_scene_tiles(scene, plan, tmp_path / scene.scene_id, tile_size=256)
        if bad is None:
            assert [t["status"] for t in write_label_tiles(scene, plan, tiles, tmp_path / scene.scene_id)] == [
                "labelled"] * 2
            continue
        with pytest.raises(AnnotationRejected) as err:
            write_label_tiles(scene, plan, tiles, tmp_path / scene.scene_id)
        assert err.value.file == str(tmp_path / "labels" / f"{bad}.tif")
        assert "differs from the image's" in err.value.reason
    _patch(tmp_path, 1, 0, size=300, shift=0.6)  # moved after the catalog listed the mosaic
    plan = plan_scene(joined, tile_size=256)
    tiles, _ = write_scene_tiles(joined, plan, tmp_path / "again", tile_size=256)
    with pytest.raises(AnnotationRejected) as err:
        write_label_tiles(joined, plan, tiles, tmp_path / "again")
    assert err.value.file == str(tmp_path / "labels" / "top_1_0.tif")
