"""A polygon whose repair takes hours costs only its file (pipeline.sources.footprints.repair_polygons).

GEOS's ``make_valid`` takes time that grows with the square of a polygon's self-crossings or faster: a star
polygon of 201 vertices (~20,000 crossings) takes 41 s on this machine, one of 1,601 vertices (64 KB of
GeoJSON) hours.  Before, a local source whose footprint file held such a star kept ``ExportAnnotationTodo``
(and so the build) busy for hours; now the repair of one file's invalid polygons runs in a forked child given
30 s, and a file that needs more is a ``rejects.csv`` row naming it.
"""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import rasterio
from shapely.geometry import Polygon

from pipeline.errors import AnnotationRejected
from pipeline.sources.footprints import REPAIR_MAX_S, polygonal, repair_polygons
from tests.helpers_build import local_sources, luigi_cmd, release_dir, run_luigi
from tests.test_bad_input import _scene


def _star(n: int, cx: float = 0.0, cy: float = 0.0, r: float = 1.0) -> list[list[float]]:
    """A closed star polygon ring {n / (n-1)/2}: each edge crosses most of the others."""
    angles = 2 * np.pi * ((n - 1) // 2) * np.arange(n + 1) / n
    return [[cx + r * float(np.cos(a)), cy + r * float(np.sin(a))] for a in angles]


def test_ordinary_invalid_polygons_are_repaired_as_before():
    bow_tie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    square = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    out = repair_polygons([bow_tie, square, None], "a.geojson")
    assert out[0].equals(polygonal(bow_tie)) and out[1].equals(square) and out[2] is None


def test_a_repair_past_its_time_rejects_the_file_naming_it():
    t0 = time.perf_counter()
    with pytest.raises(AnnotationRejected, match="took longer than 1 s") as info:
        repair_polygons([Polygon(_star(1601))], "footprints/star.geojson", seconds=1.0)
    assert time.perf_counter() - t0 < 10 and info.value.file == "footprints/star.geojson"


def test_a_hostile_footprint_file_costs_only_itself(tmp_path):
    src = tmp_path / "src"
    _scene(src, "labelled", 0)
    _scene(src, "buildings", 1, label=False)  # no 8-class labels: its tile is pending, footprints exported
    with rasterio.open(src / "buildings.tif") as ds:
        b = ds.bounds
    cx, cy = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    house = [[cx - 120, cy - 120], [cx - 100, cy - 120], [cx - 100, cy - 100], [cx - 120, cy - 100],
             [cx - 120, cy - 120]]
    features = [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
                for ring in (_star(1601, cx, cy, 100.0), house)]
    (src / "footprints").mkdir()
    (src / "footprints" / "buildings.geojson").write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": features}))
    data = tmp_path / "data"
    t0 = time.perf_counter()
    proc = run_luigi(luigi_cmd(data, local_sources(tmp_path / "sources.yaml", {"mine": src}), split_trials=20))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.perf_counter() - t0 < REPAIR_MAX_S + 120
    with open(release_dir(data) / "rejects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["file"], r["stage"]) for r in rows] == [("footprints/buildings.geojson", "footprints")], rows
    assert f"took longer than {REPAIR_MAX_S:g} s" in rows[0]["reason"]
    manifest = json.loads((release_dir(data) / "manifest.json").read_text())
    assert [im["source_scene_id"] for im in manifest["images"]] == ["labelled"]
