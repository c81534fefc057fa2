"""``options.crs``: the CRS of a source's images that have a geotransform but no CRS, as a TIFF with a world file
(``.tfw``) and no ``.prj`` comes from many orthophoto deliveries; such an image was a ``no CRS`` reject
(``pipeline.raster.reading.open_raster``'s ``default_crs``)."""
from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.errors import SceneRejected, SourcesError
from pipeline.raster.plan import plan_scene
from pipeline.sources.config import parse_sources
from tests.helpers_build import BUILD_TIMEOUT, ROOT, luigi_cmd, pipeline_env
from tests.test_bad_input import GSD, _label, _rgb, _transform, _write
from tests.test_raster import make_scene


def _world_file_image(folder: Path, name: str, i: int) -> Path:
    """``<name>.tif`` with no georeference of its own and ``<name>.tfw`` beside it (UTM 33N coordinates)."""
    lab = _label(1100, seed=i)
    path = folder / f"{name}.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        _write(path, _rgb(lab), crs=None, transform=None)
    t = _transform(i)
    (folder / f"{name}.tfw").write_text(f"{t.a}\n{t.d}\n{t.b}\n{t.e}\n{t.c + t.a / 2}\n{t.f + t.e / 2}\n")
    _write(folder / "labels" / f"{name}.tif", lab[np.newaxis], crs=None, transform=None)
    return path


def test_a_world_file_image_takes_the_sources_crs(tmp_path):
    path = _world_file_image(tmp_path, "ortho", 0)
    with pytest.raises(SceneRejected, match="no CRS"):
        plan_scene(make_scene(path))
    plan = plan_scene(make_scene(path, extra={"crs": "EPSG:32633"}))
    assert plan["native"]["crs"] == "EPSG:32633" and plan["grid"]["crs"] == "EPSG:32633"
    assert plan["grid"]["gsd"] == GSD and plan["grid"]["transform"][2] == pytest.approx(600000.0)
    own = tmp_path / "own.tif"  # an image with its own CRS keeps it
    _write(own, _rgb(_label(300)), transform=_transform(0))
    assert plan_scene(make_scene(own, extra={"crs": "EPSG:3857"}))["native"]["crs"] == "EPSG:32633"


def test_options_crs_is_checked(tmp_path):
    entry = {"name": "dop", "kind": "local", "location": "/data/dop", "license": "x", "attribution": "y"}
    (src,) = parse_sources({"sources": [{**entry, "options": {"crs": "EPSG:25832"}}]}, tmp_path / "s.yaml")
    assert src.options["crs"] == "EPSG:25832"
    (plain,) = parse_sources({"sources": [entry]}, tmp_path / "s.yaml")
    assert "crs" not in plain.options
    with pytest.raises(SourcesError, match=r"key 'options.crs': 'EPSG:99999999' is not a CRS"):
        parse_sources({"sources": [{**entry, "options": {"crs": "EPSG:99999999"}}]}, tmp_path / "s.yaml")


def test_a_folder_of_world_file_images_builds_with_options_crs(tmp_path):
    folder = tmp_path / "dop"
    for i in range(2):
        _world_file_image(folder, f"tile_{i}", i)
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: dop
    kind: local
    location: {folder}
    license: CC BY 4.0
    attribution: test suite
    options: {{crs: "EPSG:32633"}}
""")
    proc = subprocess.run(luigi_cmd(tmp_path / "data", tmp_path / "sources.yaml", release="v1", split_trials=20),
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    images = json.loads((tmp_path / "data" / "releases" / "v1" / "manifest.json").read_text())["images"]
    assert len(images) == 2 and {im["native_crs"] for im in images} == {"EPSG:32633"}
    assert {im["country_code"] for im in images} == {"AT"}  # Lower Austria, from the world files' coordinates
