"""Which bands are red, green and blue: the source's ``options.bands``, else the file's colour interpretation, else
the band count (``pipeline.raster.plan``).  A blue-green-red file must not be released with red and blue swapped,
and a multispectral file is usable once its colour bands are named."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from rasterio.enums import ColorInterp as CI
from rasterio.transform import from_origin

from pipeline.errors import SceneRejected, SourcesError
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import write_scene_tiles
from pipeline.release.buildplan import fetch_reason
from pipeline.sources.config import parse_sources
from pipeline.sources.object_store import source_digest
from tests.helpers_build import BUILD_TIMEOUT, ROOT, luigi_cmd, pipeline_env
from tests.test_bad_input import _label, _rgb, _transform, _write
from tests.test_raster import make_scene

#: A blue-green-red-NIR file as such products come: no band says what colour it is
UNNAMED = [CI.gray, CI.undefined, CI.undefined, CI.undefined]
UTM = from_origin(500001.0, 7999999.8, 0.3, 0.3)  # on the 0.3 m lattice: tiles are the source's pixels


def _tif(path: Path, data: np.ndarray, colorinterp=None) -> Path:
    _write(path, data, crs="EPSG:32733", transform=UTM, colorinterp=colorinterp)
    return path


def _bands(path: Path, **extra):
    rad = plan_scene(make_scene(path, extra=extra))["radiometry"]
    return rad["bands"], rad["alpha_band"]


def test_colour_interpretation_names_the_bands(tmp_path):
    img = np.random.default_rng(0).integers(1, 255, (8, 64, 64), dtype=np.uint8)
    assert _bands(_tif(tmp_path / "bgr.tif", img[:3], [CI.blue, CI.green, CI.red])) == ([3, 2, 1], None)
    assert _bands(_tif(tmp_path / "rgba.tif", img[:4], [CI.red, CI.green, CI.blue, CI.alpha])) == ([1, 2, 3], 4)
    # WorldView-style eight bands, named: red is band 5, green 3, blue 2
    ms = [CI.coastal, CI.blue, CI.green, CI.yellow, CI.red, CI.rededge, CI.nir, CI.nir]
    assert _bands(_tif(tmp_path / "ms_named.tif", img, ms)) == ([5, 3, 2], None)
    # nothing named: the count decides, as before (4 bands: the first three)
    assert _bands(_tif(tmp_path / "bgrn.tif", img[:4], UNNAMED)) == ([1, 2, 3], None)


def test_options_bands_choose_and_unnamed_multispectral_is_rejected_naming_them(tmp_path):
    img = np.random.default_rng(1).integers(1, 255, (8, 64, 64), dtype=np.uint8)
    bgrn = _tif(tmp_path / "bgrn.tif", img[:4], UNNAMED)
    assert _bands(bgrn, bands=[3, 2, 1]) == ([3, 2, 1], None)
    rgba = _tif(tmp_path / "rgba.tif", img[:4], [CI.red, CI.green, CI.blue, CI.alpha])
    assert _bands(rgba, bands=[3, 2, 1]) == ([3, 2, 1], 4)  # the alpha band stays the mask
    ms = _tif(tmp_path / "ms.tif", img)
    with pytest.raises(SceneRejected) as err:
        plan_scene(make_scene(ms))
    assert err.value.reason.startswith("expects 1, 3 or 4 bands, got 8") and "options.bands" in err.value.reason
    assert _bands(ms, bands=[5, 3, 2]) == ([5, 3, 2], None)
    with pytest.raises(SceneRejected, match=r"options.bands \[9, 3, 2\] names band 9, the file has 8"):
        plan_scene(make_scene(ms, extra={"bands": [9, 3, 2]}))


def test_tiles_carry_red_green_blue_in_that_order(tmp_path):
    lab = _label(1100)
    rgb = _rgb(lab)
    bgr = _tif(tmp_path / "bgr.tif", rgb[::-1].copy(), [CI.blue, CI.green, CI.red])
    bgrn = _tif(tmp_path / "bgrn.tif", np.concatenate([rgb[::-1], rgb[:1] // 2]), UNNAMED)
    for scene in (make_scene(bgr), make_scene(bgrn, extra={"bands": [3, 2, 1]})):
        plan = plan_scene(scene)
        tiles, _ = write_scene_tiles(scene, plan, tmp_path / scene.scene_id)
        col, row = tiles[0]["window"][:2]
        with rasterio.open(tmp_path / scene.scene_id / tiles[0]["image"]) as ds:
            np.testing.assert_array_equal(ds.read(), rgb[:, row:row + 1024, col:col + 1024])


def _entry(**options) -> dict:
    return {"name": "wv", "kind": "local", "location": "/data/wv", "license": "CC BY 4.0", "attribution": "x",
            **({"options": options} if options else {})}


def test_options_bands_are_checked_and_key_the_scenes_not_the_files(tmp_path):
    where = tmp_path / "sources.yaml"
    (plain,) = parse_sources({"sources": [_entry()]}, where)
    (chosen,) = parse_sources({"sources": [_entry(bands=[3, 2, 1])]}, where)
    assert "bands" not in plain.options and chosen.options["bands"] == [3, 2, 1]
    (unset,) = parse_sources({"sources": [_entry(bands=None)]}, where)
    assert source_digest(unset) == source_digest(plain)  # unset is left out: earlier sources keep their digests
    for bad in ([3, 2], [0, 1, 2], ["3", 2, 1], [True, 2, 1], [3, 2, 1, 4], "3,2,1"):
        with pytest.raises(SourcesError, match="options.bands"):
            parse_sources({"sources": [_entry(bands=bad)]}, where)
    # the files are the same (a downloaded source's raw folder is reused), the scenes' pixels are not
    assert source_digest(chosen, labels=False, pixels=False) == source_digest(plain, labels=False, pixels=False)
    assert source_digest(chosen, labels=False) != source_digest(plain, labels=False)
    assert source_digest(chosen) != source_digest(plain)
    made = {"entry": source_digest(plain), "content": source_digest(plain, labels=False, pixels=False),
            "scenes": source_digest(plain, labels=False), "fetch_code": "c1"}
    why = fetch_reason({"made_by": made}, source_digest(chosen), {}, "c1", source_digest(chosen, labels=False,
                                                                                         pixels=False),
                       None, source_digest(chosen, labels=False))
    assert why.startswith("options.bands, classes or crs changed")
    older = {k: v for k, v in made.items() if k != "scenes"}  # a record made before: its content was the scenes'
    assert fetch_reason({"made_by": older}, source_digest(chosen), {}, "c1", made["content"], None,
                        source_digest(chosen, labels=False)).startswith("options.bands, classes or crs changed")


def _sources(path: Path, folder: Path, bands: list[int] | None) -> Path:
    path.write_text(f"""
sources:
  - name: wv
    kind: local
    location: {folder}
    license: CC BY 4.0
    attribution: test suite
""" + (f"    options: {{bands: {bands}}}\n" if bands else ""))
    return path


def _release_image(base: Path, release: str) -> tuple[np.ndarray, list[float]]:
    rel = base / "data" / "releases" / release
    (image,) = json.loads((rel / "manifest.json").read_text())["images"]
    with rasterio.open(rel / image["image"]) as ds:
        return ds.read(), list(ds.transform)[:6]


def test_a_blue_green_red_nir_folder_is_released_in_rgb_and_changing_bands_redoes_its_scene(tmp_path):
    lab = _label(1100)
    rgb = _rgb(lab)
    folder = tmp_path / "wv"
    _write(folder / "scene.tif", np.concatenate([rgb[::-1], rgb[:1] // 2]), transform=_transform(0),
           colorinterp=UNNAMED)
    _write(folder / "labels" / "scene.tif", lab[np.newaxis], crs=None, transform=None)

    def build(release: str, bands) -> str:
        proc = subprocess.run(luigi_cmd(tmp_path / "data", _sources(tmp_path / "sources.yaml", folder, bands),
                                        release=release, split_trials=20),
                              cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    build("v1", [3, 2, 1])
    data, transform = _release_image(tmp_path, "v1")
    col, row = round((transform[2] - 600000.0) / 0.3), round((5340000.0 - transform[5]) / 0.3)
    np.testing.assert_array_equal(data, rgb[:, row:row + 1024, col:col + 1024])
    log = build("v2", None)  # the count rule again: the first three bands, blue first
    assert "PrepareScene 1" in log and "TileScene 1" in log, log[-3000:]
    data2, _ = _release_image(tmp_path, "v2")
    np.testing.assert_array_equal(data2, rgb[::-1, row:row + 1024, col:col + 1024])


def test_changing_the_bands_of_a_downloaded_source_downloads_nothing_and_redoes_its_scenes(tmp_path):
    from oem_demo.generate import generate_demo
    from tests.loopback import LoopbackServer
    from tests.test_build_sources import _tar_gz

    generate_demo(tmp_path / "upstream", seed=11, size="small")
    archive, path = _tar_gz(tmp_path / "upstream" / "xbd"), "/xbd/train_images_labels_targets.tar.gz"
    with LoopbackServer() as http:
        http.files[path] = archive

        def build(release: str, bands) -> str:
            sources = tmp_path / "sources.yaml"
            sources.write_text(f"""
sources:
  - name: xbd
    kind: xbd
    location: {http.url(path)}
    license: CC BY-NC-SA 4.0
    attribution: xBD (Gupta et al. 2019)
""" + (f"    options: {{bands: {bands}}}\n" if bands else ""))
            proc = subprocess.run(luigi_cmd(tmp_path / "data", sources, "--PipelineConfig-allow-private-networks",
                                            "true", release=release, split_trials=20),
                                  cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            return proc.stdout + proc.stderr

        build("v1", None)
        log = build("v2", [3, 2, 1])
        assert len(http.requests_for(path)) == 1  # the new raw folder starts as links of the first one's files
    releases = tmp_path / "data" / "releases"
    v1, v2 = ({im["key"]: im for im in json.loads((releases / r / "manifest.json").read_text())["images"]}
              for r in ("v1", "v2"))
    assert v1.keys() == v2.keys() and len(v1) >= 2
    ran = dict(re.findall(r"(\w+) (\d+)", re.search(r"tasks ran \(([^)]*)\)", log).group(1)))
    catalog = json.loads(next((tmp_path / "data" / "catalog").glob("xbd-*.json")).read_text())
    assert ran["PrepareScene"] == str(len(catalog["scenes"])) and ran["TileScene"] == ran["PrepareScene"], log[-3000:]
    for key, im in v1.items():  # each band resampled alone: the same pixels, red and blue swapped
        with rasterio.open(releases / "v1" / im["image"]) as a, rasterio.open(releases / "v2" / v2[key]["image"]) as b:
            np.testing.assert_array_equal(b.read(), a.read()[::-1])


def _static_collection(folder: Path, image: Path, bands: list[dict] | None) -> Path:
    """A static STAC collection of one item whose ``analytic`` asset is ``image`` (with ``eo:bands``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(image) as ds:
        west, south, east, north = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    asset = {"href": str(image), "type": "image/tiff; application=geotiff", "roles": ["data"],
             **({"eo:bands": bands} if bands is not None else {})}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "wv-1", "collection": "wv",
            "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                             [west, north], [west, south]]]},
            "bbox": [west, south, east, north], "properties": {"datetime": "2024-05-01T10:00:00Z"},
            "assets": {"analytic": asset}, "links": []}
    (folder / "item.json").write_text(json.dumps(item))
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": "wv", "description": "test",
                  "license": "CC-BY-4.0", "extent": {"spatial": {"bbox": [[west, south, east, north]]},
                                                     "temporal": {"interval": [[None, None]]}},
                  "links": [{"rel": "item", "href": "./item.json"}]}
    (folder / "collection.json").write_text(json.dumps(collection))
    return folder / "collection.json"


def test_a_stac_asset_whose_band_list_names_the_colours(tmp_path):
    from pipeline.sources.adapters.stac import StacAdapter
    from pipeline.sources.fetch import fetch_source
    from tests.loopback import LOOPBACK_LIMITS

    lab = _label(1100)
    rgb = _rgb(lab)
    image = _tif(tmp_path / "bgrn.tif", np.concatenate([rgb[::-1], rgb[:1] // 2]), UNNAMED)
    named = [{"name": n, "common_name": c} for n, c in (("B", "blue"), ("G", "green"), ("R", "red"), ("N", "nir"))]
    for folder, bands, options, expected in (("named", named, {}, [3, 2, 1]), ("unnamed", None, {}, None),
                                             ("overridden", named, {"bands": [1, 2, 3]}, [1, 2, 3])):
        (src,) = parse_sources({"sources": [{"name": folder, "kind": "stac", "location": str(
            _static_collection(tmp_path / folder, image, bands)), "license": "x", "attribution": "y",
            "options": {"assets": ["analytic"], **options}}]}, tmp_path / "sources.yaml")
        fetch_source(src, tmp_path / f"raw-{folder}", limits=LOOPBACK_LIMITS)
        (scene,) = StacAdapter().scenes(tmp_path / f"raw-{folder}", src)
        assert scene.extra.get("bands") == expected, folder
        if folder == "named":  # its tile is in RGB
            tiles, _ = write_scene_tiles(scene, plan_scene(scene), tmp_path / "tiles")
            col, row = tiles[0]["window"][:2]
            with rasterio.open(tmp_path / "tiles" / tiles[0]["image"]) as ds:
                np.testing.assert_array_equal(ds.read(), rgb[:, row:row + 1024, col:col + 1024])
