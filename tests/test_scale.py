"""Tests of the synthetic OpenEarthMap-shaped source generator (:mod:`oem_demo.scale`), kept lean.

The ``small`` variant is planned (no pixels) and checked for OpenEarthMap's shape; its smallest scene of
every file form (plus a national-grid 0.25 m sheet) is written twice, byte-compared and checked; the
one-scene ``extra`` variant goes through ``generate`` and its rerun.  The pipeline is the oracle wherever it
can be: its GSD rule, tile lattice, grid plan (``plan_scene``) and region rule (``locate``) are called on the
generated files and compared with what the generator promised.  (``bench/bench_scale.py --scale small``
builds the whole small variant through Luigi and checks the release against the same expectations.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.warp import reproject

from oem_demo import scale
from oem_demo.scale.geo import axis_offsets, target_gsd
from oem_demo.scale.plan import SceneSpec
from oem_demo.scale.regions import check_location, extra_region, regions
from oem_demo.scale.report import released
from oem_demo.scale.variants import plan
from oem_demo.scale.write import image_path, label_path, write_scene
from pipeline.dataset.regions import slugify
from pipeline.errors import SceneRejected
from pipeline.raster.gsd import choose_target_gsd
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import tile_lattice
from pipeline.scene import Scene

#: Mask decimation of the quick count: tile nodata shares are measured on a grid 4x coarser than the
#: pipeline's (error ~0.4 % of a tile, inside the generator's 1.2 % guard band).
QUICK = 4


@pytest.fixture(scope="module")
def small_plan() -> list[SceneSpec]:
    return plan("small", seed=0)


@pytest.fixture(scope="module")
def picks(small_plan, tmp_path_factory):
    """The smallest scene of every file form and a national 0.25 m sheet, written once."""
    chosen: dict = {}
    for s in sorted(small_plan, key=lambda s: s.width * s.height):
        chosen.setdefault((s.fmt, s.mask), s)
    quarter = [s for s in small_plan if s.profile == "national" and s.gsd == 0.25 and s.native_gsd < 0.25]
    chosen["quarter"] = min(quarter, key=lambda s: s.width * s.height)
    root = tmp_path_factory.mktemp("scale-picks")
    for s in chosen.values():
        write_scene(root, s)
    return root, list(chosen.values())


def test_small_is_openearthmap_shaped(small_plan):
    specs = small_plan
    by_region: dict[str, int] = {}
    for s in specs:
        by_region[s.region] = by_region.get(s.region, 0) + s.tiles
    assert len(by_region) == 12 and len({s.continent for s in specs}) == 6
    assert 250 <= sum(by_region.values()) <= 350
    assert 180 <= sum(released(n) for n in by_region.values()) <= 240
    assert sum(n > 70 for n in by_region.values()) >= 2      # hard-image selection runs
    table = {r.name: r for r in regions()}
    assert [m for s in specs if (m := check_location(table[s.region], s.lon, s.lat))] == []
    kinds = {s.crs for s in specs}
    assert {"EPSG:3857", "EPSG:4326"} <= kinds
    assert any(c.startswith("EPSG:326") for c in kinds) and any(c.startswith("EPSG:327") for c in kinds)
    assert {"EPSG:2056", "EPSG:27700", "EPSG:3035"} <= kinds
    assert {f"{s.fmt}+{s.mask}" for s in specs} == {"jpeg+none", "jpeg+mask", "deflate+none", "deflate+alpha",
                                                     "deflate+nodata"}
    assert any(s.native_gsd < 0.245 and s.tiles for s in specs)        # resampled
    assert any(s.reject and s.native_gsd > 0.51 for s in specs)        # rejected with a reason
    assert min(min(s.width, s.height) for s in specs) >= 2048


def test_region_folders_use_the_pipelines_transliterated_slug():
    names = {r.city: r.name for r in (*regions(), extra_region())}
    assert names["Wrocław"] == "wroclaw" and names["Diyarbakır"] == "diyarbakir" and names["Reykjavík"] == "reykjavik"
    assert all(name == slugify(city) and name.isascii() for city, name in names.items())
    assert all(s.rel_path.startswith(f"{s.region}/{s.region}_") for s in plan("extra", seed=0))


def test_files_are_deterministic_valid_and_tile_counts_match_the_pipeline(picks, tmp_path):
    root, specs = picks
    for s in {s.fmt: s for s in sorted(specs, key=lambda s: -s.width * s.height)}.values():  # smallest per codec
        write_scene(tmp_path, s)
        for path in (image_path, label_path):
            assert path(tmp_path, s).read_bytes() == path(root, s).read_bytes(), path(root, s)
    for s in specs:
        _check_files(root, s)
        assert _quick_count(root, s) == s.tiles, s.rel_path


def test_generate_then_rerun_skips_everything(tmp_path):
    summary = scale.generate(tmp_path, scale="extra", seed=0, workers=1)
    assert summary["regions"] == 1 and summary["locate_mismatches"] == []
    assert summary["run"]["generated"] == summary["scenes"] >= 1 and not summary["run"]["plan_reused"]
    specs = [SceneSpec.from_json(s) for s in json.loads((tmp_path / scale.MANIFEST).read_text())["plan"]]
    assert [s.to_json() for s in plan("extra", seed=0)] == [s.to_json() for s in specs]
    for s in specs:
        _check_files(tmp_path, s)
    again = scale.generate(tmp_path, scale="extra", seed=0, workers=1)
    assert again["run"]["generated"] == 0 and again["run"]["plan_reused"]
    assert again["run"]["wall_s"] < 10


def test_policies_match_the_pipeline():
    for n in list(range(900, 1100)) + list(range(1900, 2100)) + [5000, 10000, 19999]:
        assert axis_offsets(n) == sorted({t[2] for t in tile_lattice(n, 1024)}), n
    gsds = np.round(np.arange(0.05, 0.6, 0.0025), 4).tolist() + [0.125, 0.2, 0.2449, 0.245, 0.2499, 0.3048,
                                                                  0.4572, 0.51, 0.512]
    for g in gsds:
        try:
            expected = choose_target_gsd(g)
        except SceneRejected:
            expected = None
        assert target_gsd(g) == expected, g


def _check_files(root: Path, s: SceneSpec) -> None:
    with rasterio.open(image_path(root, s)) as img, rasterio.open(label_path(root, s)) as lab:
        assert img.crs.to_string() == s.crs and lab.crs == img.crs
        assert (img.width, img.height) == (lab.width, lab.height) == (s.width, s.height)
        assert img.transform == lab.transform == rasterio.Affine(*s.transform)
        assert img.dtypes == ("uint8",) * img.count and lab.dtypes == ("uint8",) and lab.nodata is None
        assert lab.profile["compress"] == "deflate" and img.block_shapes[0] == (512, 512)
        if s.fmt == "jpeg":
            assert img.profile["compress"] == "jpeg" and img.profile["photometric"] == "ycbcr"
        else:
            assert img.profile["compress"] == "deflate"
        assert img.count == (4 if s.mask == "alpha" else 3)
        if s.mask == "alpha":
            assert img.colorinterp[3] == ColorInterp.alpha
        assert img.nodata == (0 if s.mask == "nodata" else None)
        step = max(1, max(s.width, s.height) // 512)
        shape = (s.height // step, s.width // step)
        valid = img.dataset_mask(out_shape=shape) > 0
        labels = lab.read(1, out_shape=shape, resampling=Resampling.nearest)
        assert labels.max() <= 8 and (labels[valid] > 0).all()
        if s.mask != "none":  # label 0 exactly where the image is nodata (edges of a nearest decimation aside)
            assert ((labels == 0) == ~valid).mean() > 0.995
        else:
            assert valid.all()


def _quick_count(root: Path, s: SceneSpec) -> int:
    """Tiles the pipeline keeps: its own plan and lattice, nodata shares from the warped dataset mask."""
    scene = Scene(source="scale", scene_id=s.name, kind="local", image=str(image_path(root, s)), license="",
                  attribution="", landcover=str(label_path(root, s)), region_hint=s.region)
    try:
        p = plan_scene(scene)
    except SceneRejected as exc:
        assert s.reject and s.reject in str(exc.args), exc.args
        return 0
    g = p["grid"]
    assert g["crs"] == s.utm and g["gsd"] == s.target_gsd and (g["width"], g["height"]) == tuple(s.grid)
    assert abs(p["native"]["gsd"] - s.native_gsd) < 1e-3
    a, _, c, _, e, f = g["transform"]
    dst = np.zeros((g["height"] // QUICK + 2, g["width"] // QUICK + 2), np.uint8)
    with rasterio.open(image_path(root, s)) as img:
        step = QUICK * s.target_gsd / s.native_gsd / 2
        shape = (max(1, int(s.height / step)), max(1, int(s.width / step)))
        mask = img.dataset_mask(out_shape=shape)
        src_t = img.transform @ rasterio.Affine.scale(s.width / shape[1], s.height / shape[0])
        reproject(mask, dst, src_transform=src_t, src_crs=img.crs, dst_transform=rasterio.Affine(
            a * QUICK, 0, c, 0, e * QUICK, f), dst_crs=g["crs"], resampling=Resampling.nearest, dst_nodata=0)
    kept, t = 0, 1024 // QUICK
    for _, _, col, row, _, _ in tile_lattice(g["width"], g["height"]):
        win = np.zeros((t, t), np.uint8)
        r0, c0 = row // QUICK, col // QUICK
        src = dst[max(r0, 0):r0 + t, max(c0, 0):c0 + t]
        win[max(-r0, 0):max(-r0, 0) + src.shape[0], max(-c0, 0):max(-c0, 0) + src.shape[1]] = src
        kept += (win == 0).mean() <= 0.05
    return kept


def test_a_folder_of_another_generator_version_is_left_alone(tmp_path):
    """Bringing a folder up to date removes and rewrites scenes: a folder written by another version of the
    generator (or for another scale) is refused unless forced, and nothing in it is touched."""
    manifest = {"version": "scale-1", "scale": "full", "scenes": {"a/a_ortho_01.tif": {"files": {"a/x.tif": 1}}}}
    (tmp_path / scale.MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.tif").write_bytes(b"x")
    with pytest.raises(ValueError, match="generator version 'scale-1'"):
        scale.generate(tmp_path, scale="full")
    with pytest.raises(ValueError, match="'full' source"):
        scale.generate(tmp_path, scale="extra")
    assert json.loads((tmp_path / scale.MANIFEST).read_text()) == manifest and (tmp_path / "a" / "x.tif").is_file()
