"""Labels in another class scheme (``options.classes``: source value -> class id): mapped before they are
resampled, every value met must be mapped, and the mapping keys the scenes' work (``pipeline.labels.landcover``).
Without it a LoveDA-style label (1 background, 2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture)
would pass as OpenEarthMap ids (its buildings released as rangeland)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio

from pipeline.errors import AnnotationRejected, SourcesError
from pipeline.labels.landcover import write_label_tiles
from pipeline.raster.plan import plan_scene
from pipeline.raster.tiling import write_scene_tiles
from pipeline.sources.config import parse_sources
from pipeline.sources.object_store import source_digest
from tests.helpers_build import BUILD_TIMEOUT, ROOT, luigi_cmd, pipeline_env
from tests.test_bad_input import _rgb, _transform, _write
from tests.test_raster import make_scene

#: LoveDA's ids -> OpenEarthMap's (background: unlabelled; 0 and 255 are no-data there)
LOVEDA = {0: 0, 1: 0, 2: 8, 3: 4, 4: 6, 5: 1, 6: 5, 7: 7, 255: 0}


def _loveda(n: int, seed: int) -> np.ndarray:
    r, c = np.mgrid[0:n, 0:n]
    return (1 + ((r // 97 + 2 * (c // 89) + seed) % 7)).astype(np.uint8)  # 1..7


def _mapped(label: np.ndarray, classes: dict[int, int]) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for k, v in classes.items():
        lut[k] = v
    return lut[label]


def test_labels_are_mapped_before_they_are_resampled(tmp_path):
    src = _loveda(1100, 0)
    src[:5, :5] = 255
    image, label = tmp_path / "s.tif", tmp_path / "s_label.tif"
    _write(image, _rgb(_mapped(src, LOVEDA)), transform=_transform(0))
    _write(label, src[np.newaxis], transform=_transform(0))
    scene = make_scene(image, landcover=str(label), extra={"classes": sorted([k, v] for k, v in LOVEDA.items())})
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out")
    (rec,) = write_label_tiles(scene, plan, tiles, tmp_path / "out")
    col, row = tiles[0]["window"][:2]
    expected = _mapped(src, LOVEDA)[row:row + 1024, col:col + 1024]  # on the lattice: each pixel its own class
    with rasterio.open(tmp_path / "out" / rec["label"]) as ds:
        np.testing.assert_array_equal(ds.read(1), expected)
    assert rec["class_pixels"]["8"] == int((expected == 8).sum()) > 0 and rec["class_pixels"]["2"] == 0
    # a value the mapping does not name rejects the label raster, naming the value
    unmapped = {k: v for k, v in LOVEDA.items() if k != 6}
    scene = make_scene(image, landcover=str(label), extra={"classes": sorted([k, v] for k, v in unmapped.items())})
    with pytest.raises(AnnotationRejected, match=r"label values not in the source's options.classes: \[6\]"):
        write_label_tiles(scene, plan, tiles, tmp_path / "out")
    assert not list((tmp_path / "out" / "labels").glob("*.tif"))  # no label file is left


def test_mode_votes_among_the_classes_not_the_source_values(tmp_path):
    # 0.06 m to 0.3 m: each 5x5 block holds 9 pixels of value 4 and 8 each of 5 and 6, which are both tree: the
    # block's mode is tree, though 4 is the most frequent source value in it (by a margin no footprint rounding
    # of GDAL's mode can turn)
    from rasterio.transform import from_origin

    block = np.array([4] * 9 + [5] * 8 + [6] * 8, np.uint8)[np.random.default_rng(3).permutation(25)].reshape(5, 5)
    src = np.tile(block, (280, 280))  # 1400 px
    t = from_origin(500001.0, 7999999.8, 0.06, 0.06)  # on the 0.3 m lattice
    image, label = tmp_path / "s.tif", tmp_path / "s_label.tif"
    _write(image, np.stack([src * 20, src * 10, src * 5]), crs="EPSG:32733", transform=t)
    _write(label, src[np.newaxis], crs="EPSG:32733", transform=t)
    for classes, expected in (([[4, 2], [5, 5], [6, 5]], "5"), (None, "4")):
        scene = make_scene(image, landcover=str(label), extra={"classes": classes} if classes else {})
        plan = plan_scene(scene)
        assert plan["resampling"]["label"] == "mode" and plan["grid"]["gsd"] == 0.3
        tiles, _ = write_scene_tiles(scene, plan, tmp_path / "out", tile_size=256)
        (rec, *_) = write_label_tiles(scene, plan, tiles, tmp_path / "out")
        assert rec["class_pixels"][expected] == 256 * 256, (classes, rec["class_pixels"])


def _entry(**options) -> dict:
    return {"name": "loveda", "kind": "local", "location": "/data/loveda", "license": "CC BY-NC-SA 4.0",
            "attribution": "x", **({"options": options} if options else {})}


def test_options_classes_are_checked_and_key_the_scenes_not_the_files(tmp_path):
    where = tmp_path / "sources.yaml"
    (plain,) = parse_sources({"sources": [_entry()]}, where)
    (mapped,) = parse_sources({"sources": [_entry(classes=LOVEDA)]}, where)
    assert "classes" not in plain.options and mapped.options["classes"] == {str(k): v for k, v in LOVEDA.items()}
    (both,) = parse_sources({"sources": [_entry(classes={2: 8, "#0000FF": 8})]}, where)  # index and colour keys
    assert both.options["classes"] == {"2": 8, "#0000ff": 8} and source_digest(both)
    for bad in ({}, {1: 9}, {1: -1}, {"1": 2}, {1: "2"}, {1: True}, {1.5: 2}, [1, 2]):
        with pytest.raises(SourcesError, match="options.classes"):
            parse_sources({"sources": [_entry(classes=bad)]}, where)
    assert source_digest(mapped, labels=False, pixels=False) == source_digest(plain, labels=False, pixels=False)
    assert source_digest(mapped, labels=False) != source_digest(plain, labels=False)


def test_a_folder_of_loveda_labels_releases_openearthmap_classes(tmp_path):
    folder = tmp_path / "loveda"
    for i in range(2):
        src = _loveda(1100, i)
        _write(folder / f"tile_{i}.tif", _rgb(_mapped(src, LOVEDA)), transform=_transform(i))
        _write(folder / "labels" / f"tile_{i}.tif", src[np.newaxis], crs=None, transform=None)

    def build(release: str, classes: dict | None) -> dict:
        (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: loveda
    kind: local
    location: {folder}
    license: CC BY-NC-SA 4.0
    attribution: LoveDA (Wang et al. 2021)
""" + ("    options: {classes: {" + ", ".join(f"{k}: {v}" for k, v in classes.items()) + "}}\n" if classes else ""))
        proc = subprocess.run(luigi_cmd(tmp_path / "data", tmp_path / "sources.yaml", release=release, split_trials=20),
                              cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads((tmp_path / "data" / "releases" / release / "manifest.json").read_text())

    raw = build("v1", None)  # as OpenEarthMap ids: LoveDA's buildings (2) are rangeland
    assert sum(im["class_pixels"]["8"] for im in raw["images"]) == 0
    mapped = build("v2", LOVEDA)
    for im in mapped["images"]:
        with rasterio.open(tmp_path / "data" / "releases" / "v2" / im["label"]) as ds:
            values = set(np.unique(ds.read(1)).tolist())
        assert values <= {0, 1, 4, 5, 6, 7, 8} and 2 not in values and im["class_pixels"]["8"] > 0


#: ISPRS Potsdam/Vaihingen colours -> the 8 classes (impervious: developed space, building, low vegetation:
#: rangeland, tree, car: developed space, clutter: unlabelled)
ISPRS = {"#FFFFFF": 3, "#0000FF": 8, "#00FFFF": 2, "#00FF00": 5, "#FFFF00": 3, "#FF0000": 0}


def _colour_scene(tmp_path, name: str, ids: np.ndarray, colours: dict[int, tuple[int, int, int]], classes=None,
                  alpha: np.ndarray | None = None):
    lut = np.zeros((256, 3), np.uint8)
    for k, rgb in colours.items():
        lut[k] = rgb
    image, label = tmp_path / f"{name}.tif", tmp_path / f"{name}_label.tif"
    _write(image, _rgb(np.clip(ids, 0, 8)), transform=_transform(0))
    data = np.moveaxis(lut[ids], -1, 0)
    _write(label, data if alpha is None else np.concatenate([data, alpha[np.newaxis]]), transform=_transform(0))
    extra = {"classes": [[k, v] for k, v in classes.items()]} if classes else {}
    return make_scene(image, landcover=str(label), extra=extra)


def _label_of(tmp_path, scene) -> tuple[np.ndarray, tuple[int, int]]:
    plan = plan_scene(scene)
    tiles, _ = write_scene_tiles(scene, plan, tmp_path / scene.scene_id)
    (rec,) = write_label_tiles(scene, plan, tiles, tmp_path / scene.scene_id)
    with rasterio.open(tmp_path / scene.scene_id / rec["label"]) as ds:
        return ds.read(1), tuple(tiles[0]["window"][:2])


def test_colour_labels_in_the_palette_or_mapped_by_colour(tmp_path):
    from pipeline.constants import CLASS_COLORS

    ids = _loveda(1100, 1)  # 1..7 as class ids
    label, (col, row) = _label_of(tmp_path, _colour_scene(tmp_path, "oem", ids, {**CLASS_COLORS, 0: (0, 0, 0)}))
    np.testing.assert_array_equal(label, ids[row:row + 1024, col:col + 1024])  # the OpenEarthMap palette
    isprs_ids = ids % 6  # 0..5: the index of an ISPRS colour
    palette = {i: tuple(int(k[j:j + 2], 16) for j in (1, 3, 5)) for i, k in enumerate(ISPRS)}
    alpha = np.full(ids.shape, 255, np.uint8)
    alpha[:, :60] = 0  # transparent: unlabelled
    scene = _colour_scene(tmp_path, "isprs", isprs_ids, palette, classes=ISPRS, alpha=alpha)
    label, (col, row) = _label_of(tmp_path, scene)
    expected = np.array(list(ISPRS.values()), np.uint8)[isprs_ids]
    expected[:, :60] = 0
    np.testing.assert_array_equal(label, expected[row:row + 1024, col:col + 1024])
    # a colour neither the palette nor the mapping names rejects the label, naming it
    with pytest.raises(AnnotationRejected, match=r"label colours not in the OpenEarthMap palette: \['#0000FF'"):
        _label_of(tmp_path, _colour_scene(tmp_path, "other", isprs_ids, palette))
    with pytest.raises(AnnotationRejected, match=r"not in the source's options.classes: \['#00FF00'\]"):
        _label_of(tmp_path, _colour_scene(tmp_path, "gap", isprs_ids, palette,
                                          classes={k: v for k, v in ISPRS.items() if k != "#00FF00"}))


def test_options_classes_take_colours_quoted(tmp_path):
    import yaml

    data = yaml.safe_load("""
sources:
  - {name: isprs, kind: local, location: /data/potsdam, license: x, attribution: y,
     options: {classes: {"#ffffff": 3, "#0000ff": 8}}}
""")
    (src,) = parse_sources(data, tmp_path / "sources.yaml")
    assert src.options["classes"] == {"#ffffff": 3, "#0000ff": 8}
    from pipeline.sources.adapters.base import Adapter
    from tests.test_raster import make_scene as scene_of

    finished = Adapter._finish(scene_of(tmp_path / "x.tif"), parse_sources(
        {"sources": [_entry(classes={10: 1, 2: 8, "#FFFFFF": 3})]}, tmp_path / "sources.yaml")[0])
    assert finished.extra["classes"] == [[2, 8], [10, 1], ["#ffffff", 3]]
    for bad in ({"#fff": 3}, {"0000ff": 8}, {"#0000gg": 8}):
        with pytest.raises(SourcesError, match="options.classes"):
            parse_sources({"sources": [_entry(classes=bad)]}, tmp_path / "sources.yaml")
