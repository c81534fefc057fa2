"""Released area = the union of the image footprints (tiles of different scenes can overlap), in the
statistics and in the manifest's summary."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.dataset.stats.area import released_area, union_area_km2
from pipeline.dataset.stats.tables import compute_stats
from pipeline.release.summary import release_summary, summary_problems

TILE = 1024 * 0.3  # m
X0, Y0 = 600000.0, 3350000.0


def _rec(iid: str, dx: float, dy: float = 0.0, crs: str = "EPSG:32614", x0: float = X0, region: str = "austin",
         country: str = "United States", continent: str = "North America") -> dict:
    from pyproj import Transformer

    b = [x0 + dx, Y0 + dy, x0 + dx + TILE, Y0 + dy + TILE]
    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon0, lat0 = t.transform(b[0], b[1])
    lon1, lat1 = t.transform(b[2], b[3])
    return {"id": iid, "region": region, "country": country, "continent": continent, "source": "s",
            "split": "train", "gsd": 0.3, "crs": crs, "bounds": b, "bounds_lonlat": [lon0, lat0, lon1, lat1],
            "class_pixels": {str(c): 10 for c in range(1, 9)}, "unlabelled_pixels": 0,
            "segments": {str(c): 1 for c in range(1, 9)}, "segments_total": 8}


def test_two_overlapping_tiles_count_their_common_ground_once():
    a, b = _rec("austin_1", 0.0), _rec("austin_2", TILE / 2)  # b overlaps half of a
    tile_km2 = TILE * TILE / 1e6
    assert union_area_km2([a, b]) == pytest.approx(1.5 * tile_km2, abs=1e-6)
    c = _rec("lima_1", 0.0, crs="EPSG:32718", x0=280000.0, region="lima", country="Peru", continent="South America")
    area = released_area([a, b, c])
    assert area["area_km2"] == pytest.approx(2.5 * tile_km2, abs=1e-6)
    assert area["regions"] == {"austin": pytest.approx(1.5 * tile_km2, abs=1e-6),
                               "lima": pytest.approx(tile_km2, abs=1e-6)}
    assert area["continents"]["North America"] == area["regions"]["austin"]
    stats = compute_stats([a, b, c])
    assert stats["table1"]["area_km2"] == area["area_km2"]  # not the 3-tile sum
    assert {r["region"]: r["area_km2"] for r in stats["regions"]} == area["regions"]
    assert stats["area"] == area
    # edge-sharing tiles do not overlap: their union is their sum
    d = _rec("austin_3", TILE)
    assert union_area_km2([a, d]) == pytest.approx(2 * tile_km2, abs=1e-6)


def test_tiles_overlapping_across_utm_zones_are_unioned():
    from pyproj import Transformer

    a = _rec("austin_1", 0.0, crs="EPSG:32614", x0=166100.0)  # western edge of zone 14
    # the same ground in zone 13: the tile moved by a quarter tile east, in zone-13 coordinates
    x13, y13 = Transformer.from_crs("EPSG:32614", "EPSG:32613", always_xy=True).transform(
        a["bounds"][0] + TILE / 4, a["bounds"][1])
    b = _rec("austin_2", 0.0, crs="EPSG:32613", x0=x13)
    b["bounds"] = [x13, y13, x13 + TILE, y13 + TILE]
    got = union_area_km2([a, b])
    tile_km2 = TILE * TILE / 1e6
    assert 1.1 * tile_km2 < got < 1.5 * tile_km2  # overlapping by roughly three quarters, rotated ~2 degrees


def test_the_split_stages_recorded_groups_give_the_same_areas():
    """The release and the statistics take the leakage groups the split stage recorded (``group``) instead of
    testing every footprint pair again: the areas are exactly those computed from scratch; without a recorded
    group on every record they are computed."""
    from pipeline.dataset.splits.leakage import leakage_groups
    from pipeline.dataset.stats.area import recorded_groups

    recs = [_rec("austin_1", 0.0), _rec("austin_2", TILE / 2), _rec("austin_3", 3 * TILE),
            _rec("lima_1", 0.0, crs="EPSG:32718", x0=280000.0, region="lima", country="Peru",
                 continent="South America")]
    groups = leakage_groups(recs)
    assert groups["austin_2"] == "austin_1" and groups["austin_3"] == "austin_3"
    with_groups = [dict(r, group=groups[r["id"]]) for r in recs]
    assert recorded_groups(with_groups) == groups and recorded_groups(recs) is None
    assert released_area(recs, recorded_groups(with_groups)) == released_area(recs)
    assert compute_stats(with_groups)["area"] == compute_stats(recs)["area"]
    assert release_summary(with_groups, groups=groups) == release_summary(recs)


def test_manifest_summary_counts_released_images_and_union_area():
    a, b = _rec("austin_1", 0.0), _rec("austin_2", TILE / 2)
    summary = release_summary([a, b], pending=[{"footprints_repaired": 2, "footprints_dropped": 1,
                                                 "pending_reason": "x.geojson: same geometries as ... (unedited)"}],
                              annotation_repairs=3)
    assert summary["images"] == 2 and summary["splits"] == {"train": 2, "val": 0, "test": 0}
    assert summary["regions"] == {"austin": {"images": 2, "area_km2": pytest.approx(1.5 * TILE * TILE / 1e6,
                                                                                  abs=1e-6)}}
    assert summary["labels"] == {"annotation_repaired_polygons": 3, "footprint_repaired_polygons": 2,
                                 "footprint_dropped_polygons": 1, "pending": 1, "pending_unfinished": 1}
    assert summary_problems({"summary": summary}, [a, b]) == []
    wrong = dict(summary, area_km2=round(2 * TILE * TILE / 1e6, 6))
    assert summary_problems({"summary": wrong}, [a, b]) == [
        f"manifest.json: summary.area_km2 is {wrong['area_km2']!r}, the images give {summary['area_km2']!r}"]


def test_overlap_fractions_in_one_crs_are_exact_and_pairs_across_zones_are_still_found():
    """Overlapping pairs (leakage groups, the split audit): two tiles in one CRS are measured on their rectangles
    (exact: 3/4 and 1/4 here; tiles that only share an edge are no pair), a pair across UTM zones on the
    longitude/latitude footprints, as before."""
    from pyproj import Transformer
    from shapely.geometry import box

    from pipeline.dataset.splits.leakage import footprint, overlapping_pairs

    a, b, c, top = _rec("austin_1", 0.0), _rec("austin_2", TILE / 4), _rec("austin_3", TILE), _rec("austin_4", 0, TILE)
    assert overlapping_pairs([top, c, b, a]) == [("austin_1", "austin_2", 0.75), ("austin_2", "austin_3", 0.25)]
    # the rectangle measure agrees with the polygon one in the native CRS
    ra, rb = box(*a["bounds"]), box(*b["bounds"])
    assert ra.intersection(rb).area / min(ra.area, rb.area) == pytest.approx(0.75)

    west = _rec("zone_1", 0.0, crs="EPSG:32614", x0=166100.0)
    x13, y13 = Transformer.from_crs("EPSG:32614", "EPSG:32613", always_xy=True).transform(
        west["bounds"][0] + TILE / 4, west["bounds"][1])
    east = _rec("zone_2", 0.0, crs="EPSG:32613", x0=x13)
    east["bounds"] = [x13, y13, x13 + TILE, y13 + TILE]
    [(i, j, frac)] = overlapping_pairs([west, east])
    fw, fe = footprint(west), footprint(east)
    assert (i, j) == ("zone_1", "zone_2")
    assert frac == round(fw.intersection(fe).area / min(fw.area, fe.area), 6)
    assert 0.6 < frac < 0.9


def test_released_area_per_place_is_each_place_measured_by_itself():
    """``released_area`` measures every place in one pass; its figures are exactly those of measuring each
    place's images by themselves (a leakage group split between two regions counts its part in each)."""
    from pipeline.dataset.stats.area import area_by

    recs = [_rec("austin_1", 0.0), _rec("dallas_2", TILE / 2, region="dallas"), _rec("austin_3", 3 * TILE),
            _rec("austin_4", 3.25 * TILE), _rec("austin_10", 9 * TILE, dy=TILE / 3),
            _rec("lima_1", 0.0, crs="EPSG:32718", x0=280000.0, region="lima", country="Peru",
                 continent="South America")]
    area = released_area(list(reversed(recs)))
    assert area["area_km2"] == union_area_km2(recs)
    for section, field in (("regions", "region"), ("countries", "country"), ("continents", "continent")):
        assert area[section] == area_by(recs, lambda r, f=field: str(r[f])), section
    assert list(area["regions"]) == ["austin", "dallas", "lima"]
    assert area["regions"]["dallas"] == pytest.approx(TILE * TILE / 1e6, abs=1e-6)


def test_overlapping_pairs_equal_a_pair_by_pair_measure_on_a_mixed_release():
    """The R-tree proposes every pair whose footprints' envelopes meet (no polygon predicate); the result is
    exactly the pairs a pair-by-pair measure keeps: rectangles in one CRS, footprints across CRSs, nothing for
    records without usable bounds (missing, not numbers, not finite, of no area), corner-only contacts dropped."""
    import itertools
    import random

    from pyproj import Transformer
    from shapely.geometry import box

    from pipeline.dataset.splits.leakage import _native_boxes, footprint, overlapping_pairs

    rng = random.Random(7)
    recs = [_rec(f"a_{i}", rng.uniform(0, 3 * TILE), rng.uniform(0, 3 * TILE)) for i in range(30)]
    x13, y13 = Transformer.from_crs("EPSG:32614", "EPSG:32613", always_xy=True).transform(X0, Y0)
    for i in range(12):  # the same ground in the next zone west: pairs across zones
        dx, dy = rng.uniform(0, 2 * TILE), rng.uniform(0, 2 * TILE)
        recs.append(dict(_rec(f"b_{i}", 0.0, crs="EPSG:32613"),
                         bounds=[x13 + dx, y13 + dy, x13 + dx + TILE, y13 + dy + TILE]))
    recs += [_rec("c_1", 5 * TILE), _rec("c_2", 6 * TILE, TILE)]  # corners touching only
    broken = [dict(_rec(f"z_{k}", 0.0), bounds=b) for k, b in enumerate(
        [None, ["x", 0, 1, 2], [0, 0, float("nan"), 1], [0, 0, float("inf"), 1], [5, 5, 5, 9], [1, 2, 3]])]
    for r in broken:
        r.pop("bounds_lonlat")
    boxes, codes = _native_boxes(recs + broken)
    assert (codes[len(recs):] == -1).all() and (codes[:len(recs)] >= 0).all()
    assert np.isnan(boxes[len(recs):]).all() and (boxes[:len(recs)] == [r["bounds"] for r in recs]).all()

    def measure(p, q):
        if p["crs"] == q["crs"]:
            a, b = box(*p["bounds"]), box(*q["bounds"])
        else:
            a, b = footprint(p), footprint(q)
        return a.intersection(b).area / min(a.area, b.area)

    expected = sorted((p["id"], q["id"]) for p, q in itertools.combinations(recs, 2) if measure(p, q) > 1e-6)
    got = overlapping_pairs(recs + broken)
    assert sorted((i, j) if i < j else (j, i) for i, j, _ in got) == sorted(
        (i, j) if i < j else (j, i) for i, j in expected)
    assert any(i.startswith("a_") and j.startswith("b_") for i, j, _ in got)
    assert not any("c_" in i + j or "z_" in i + j for i, j, _ in got)
