"""Release statistics (pipeline/dataset/stats.py): exact tables for a small hand-made release, invariants on random
records, the written files and their byte-for-byte determinism."""
from __future__ import annotations

import copy
import csv
import io
import json
import random
from pathlib import Path

import pytest

from pipeline.dataset.stats.plots import PNG_FILES
from pipeline.dataset.stats.tables import HIST_EDGES, compute_stats
from pipeline.dataset.stats.write import STATS_FILES, write_stats


def rec(iid, region, country, continent, source, split, gsd, size_m, lonlat, pixels, segments, unlabelled=0):
    return {
        "id": iid, "region": region, "country": country, "continent": continent, "source": source,
        "split": split, "gsd": gsd, "bounds": [500000.0, 4000000.0, 500000.0 + size_m, 4000000.0 + size_m],
        "bounds_lonlat": lonlat,
        "class_pixels": {str(c): pixels.get(c, 0) for c in range(1, 9)},
        "unlabelled_pixels": unlabelled,
        "segments": {str(c): segments.get(c, 0) for c in range(1, 9)},
        "segments_total": sum(segments.values()),
    }


IMAGES = [
    rec("alpha_1", "alpha", "Austria", "Europe", "inria", "train", 0.3, 300, [16.0, 48.0, 16.004, 48.003],
        {2: 100, 3: 200, 4: 100, 8: 600}, {2: 3, 3: 5, 4: 2, 8: 40}, unlabelled=24),
    rec("alpha_2", "alpha", "Austria", "Europe", "oam", "val", 0.5, 500, [16.004, 48.0, 16.01, 48.005],
        {5: 500, 6: 500}, {5: 10, 6: 1}),
    rec("beta_1", "beta", "Côte d'Ivoire", "Africa", "oam", "test", 0.25, 256, [-4.0, 5.3, -3.998, 5.302],
        {1: 250, 7: 750}, {1: 100, 7: 3000}),
    rec("gamma_1", "gamma", "Peru", "South America", "xbd", "train", 0.3, 300, [-77.0, -12.0, -76.997, -11.997],
        {8: 1000}, {8: 99}),
    rec("gamma_2", "gamma", "Peru", "South America", "xbd", "train", 0.3, 300,
        [-76.997, -12.0, -76.994, -11.997], {3: 500, 4: 500}, {3: 60, 4: 40}, unlabelled=76),
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("stats")
    return out, write_stats(copy.deepcopy(IMAGES), out)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_table1_exact():
    t1 = compute_stats(IMAGES)["table1"]
    assert t1 == {
        "classes": 8, "images": 5, "images_per_split": {"train": 3, "val": 1, "test": 1},
        "countries": 3, "regions": 3, "continents": 3,
        "area_km2": 0.585536, "segments": 3360, "gsd_min_m": 0.25, "gsd_max_m": 0.5,
        "labelled_pixels": 5000, "unlabelled_pixels": 100,
    }


def test_table2_exact():
    t2 = compute_stats(IMAGES)["table2"]
    by_class = {e["class"]: e for e in t2["classes"]}
    assert [e["class"] for e in t2["classes"]] == list(range(1, 9))
    assert by_class[8]["name"] == "building" and by_class[8]["color"] == "de1f07"
    assert {c: e["pixels"] for c, e in by_class.items()} == {1: 250, 2: 100, 3: 700, 4: 600, 5: 500, 6: 500, 7: 750,
                                                             8: 1600}
    assert {c: e["share_pct"] for c, e in by_class.items()} == {1: 5.0, 2: 2.0, 3: 14.0, 4: 12.0, 5: 10.0, 6: 10.0,
                                                                7: 15.0, 8: 32.0}
    assert {c: e["segments"] for c, e in by_class.items()} == {1: 100, 2: 3, 3: 65, 4: 42, 5: 10, 6: 1, 7: 3000,
                                                               8: 139}
    train = {c: e["splits"]["train"] for c, e in by_class.items()}
    assert {c: r["pixels"] for c, r in train.items() if r["pixels"]} == {2: 100, 3: 700, 4: 600, 8: 1600}
    assert {c: r["share_pct"] for c, r in train.items() if r["pixels"]} == {2: 3.3333, 3: 23.3333, 4: 20.0,
                                                                            8: 53.3333}
    assert by_class[7]["splits"]["test"] == {"pixels": 750, "share_pct": 75.0, "segments": 3000}
    assert by_class[5]["splits"]["val"] == {"pixels": 500, "share_pct": 50.0, "segments": 10}
    assert by_class[5]["splits"]["test"] == {"pixels": 0, "share_pct": 0.0, "segments": 0}
    assert t2["total"]["pixels"] == 5000 and t2["total"]["segments"] == 3360
    assert t2["total"]["unlabelled_pixels"] == 100 and t2["total"]["images"] == 5
    assert {s: t2["total"]["splits"][s]["images"] for s in ("train", "val", "test")} == {"train": 3, "val": 1,
                                                                                         "test": 1}
    assert t2["total"]["splits"]["train"]["unlabelled_pixels"] == 100


def test_images_per_continent_histogram_regions_exact():
    stats = compute_stats(IMAGES)
    ipc = stats["images_per_continent"]
    assert ipc["continents"] == ["Africa", "Asia", "Europe", "North America", "South America", "Oceania"]
    assert ipc["sources"] == ["inria", "oam", "xbd"]
    assert ipc["counts"]["Europe"] == {"inria": 1, "oam": 1, "xbd": 0}
    assert ipc["counts"]["Africa"] == {"inria": 0, "oam": 1, "xbd": 0}
    assert ipc["counts"]["South America"] == {"inria": 0, "oam": 0, "xbd": 2}
    assert ipc["totals"] == {"Africa": 1, "Asia": 0, "Europe": 2, "North America": 0, "South America": 2,
                             "Oceania": 0}

    hist = stats["segments_histogram"]
    assert len(hist["bins"]) == len(HIST_EDGES)
    counts = [b["count"] for b in hist["bins"]]
    # 50, 11, 99 -> [0, 100); 100 -> [100, 200); 3100 -> overflow (>= 3000)
    assert counts[0] == 3 and counts[1] == 1 and counts[-1] == 1 and sum(counts) == 5
    assert hist["bins"][0]["fraction"] == 0.6 and hist["bins"][-1] == {"lo": 3000, "hi": None, "count": 1,
                                                                       "fraction": 0.2}
    assert hist["mean"] == 672.0 and hist["median"] == 99.0 and hist["min"] == 11 and hist["max"] == 3100

    regions = {r["region"]: r for r in stats["regions"]}
    assert list(regions) == ["alpha", "beta", "gamma"]
    a = regions["alpha"]
    assert (a["country"], a["continent"], a["sources"], a["images"]) == ("Austria", "Europe", "inria; oam", 2)
    assert a["lon"] == pytest.approx(16.005) and a["lat"] == pytest.approx(48.0025)
    assert (a["pct_rangeland"], a["pct_developed_space"], a["pct_road"], a["pct_tree"], a["pct_water"],
            a["pct_building"], a["pct_urban"]) == (5.0, 10.0, 5.0, 25.0, 25.0, 30.0, 45.0)
    assert regions["beta"]["pct_agriculture_land"] == 75.0 and regions["beta"]["pct_urban"] == 0.0
    g = regions["gamma"]
    assert g["pct_urban"] == 100.0 and g["lon"] == pytest.approx(-76.997) and g["lat"] == pytest.approx(-11.9985)


def test_invariants_on_random_records():
    rng = random.Random(7)
    images = []
    for i in range(80):
        pixels = {c: rng.choice([0, rng.randint(0, 1024 * 1024)]) for c in range(1, 9)}
        segments = {c: rng.randint(0, 400) if pixels[c] else 0 for c in range(1, 9)}
        lon, lat = rng.uniform(-170, 170), rng.uniform(-60, 60)
        images.append(rec(
            f"r{i % 7}_{i}", f"r{i % 7}", f"country{i % 5}", rng.choice(["Africa", "Asia", "Europe", "Oceania"]),
            rng.choice(["a", "b", "c"]), rng.choice(["train", "val", "test"]), rng.choice([0.25, 0.3, 0.5]),
            307.2, [lon, lat, lon + 0.003, lat + 0.003], pixels, segments, unlabelled=rng.randint(0, 10000),
        ))
    stats = compute_stats(images)
    t1, t2 = stats["table1"], stats["table2"]
    for i, entry in enumerate(t2["classes"]):
        c = str(i + 1)
        assert entry["pixels"] == sum(im["class_pixels"][c] for im in images)
        assert entry["segments"] == sum(im["segments"][c] for im in images)
        assert entry["pixels"] == sum(entry["splits"][s]["pixels"] for s in ("train", "val", "test"))
        for s in ("train", "val", "test"):
            assert entry["splits"][s]["pixels"] == sum(im["class_pixels"][c] for im in images if im["split"] == s)
    assert t2["total"]["pixels"] == t1["labelled_pixels"] == sum(e["pixels"] for e in t2["classes"])
    assert sum(t1["images_per_split"].values()) == t1["images"] == len(images)
    assert t1["segments"] == sum(im["segments_total"] for im in images) == t2["total"]["segments"]
    assert sum(stats["images_per_continent"]["totals"].values()) == len(images)
    assert sum(b["count"] for b in stats["segments_histogram"]["bins"]) == len(images)
    assert sum(b["fraction"] for b in stats["segments_histogram"]["bins"]) == pytest.approx(1.0)
    assert sum(r["images"] for r in stats["regions"]) == len(images)
    assert sum(e["share_pct"] for e in t2["classes"]) == pytest.approx(100.0, abs=1e-3)


def test_files_written(written):
    out, paths = written
    assert paths == sorted(paths) == list(STATS_FILES)
    assert sorted(p.name for p in out.iterdir()) == paths  # nothing else (no temporaries) left behind
    for name in paths:
        assert (out / name).stat().st_size > 0, name
    for png in PNG_FILES:
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in data and b"matplotlib" not in data.lower()

    t1 = read_csv(out / "table1.csv")
    assert len(t1) == 1
    assert {k: t1[0][k] for k in ("images", "images_train", "images_val", "images_test", "area_km2", "segments",
                                  "gsd_min_m", "gsd_max_m")} == {
        "images": "5", "images_train": "3", "images_val": "1", "images_test": "1", "area_km2": "0.585536",
        "segments": "3360", "gsd_min_m": "0.25", "gsd_max_m": "0.5"}
    assert json.loads((out / "table1.json").read_text())["images"] == 5

    t2 = read_csv(out / "table2.csv")
    assert [r["class"] for r in t2] == [str(c) for c in range(1, 9)] + ["total"]
    assert t2[7]["pixels"] == "1600" and t2[7]["train_share_pct"] == "53.3333" and t2[7]["segments"] == "139"
    assert t2[8]["pixels"] == "5000" and t2[8]["test_segments"] == "3100"
    assert sum(int(r["pixels"]) for r in t2[:8]) == int(t2[8]["pixels"])
    assert json.loads((out / "table2.json").read_text())["classes"][0]["pixels"] == 250

    ipc = read_csv(out / "images_per_continent.csv")
    assert list(ipc[0]) == ["continent", "inria", "oam", "xbd", "total"]
    assert sum(int(r["total"]) for r in ipc) == 5

    hist = read_csv(out / "segments_histogram.csv")
    assert len(hist) == len(HIST_EDGES) and hist[-1]["bin_hi"] == "" and hist[-1]["images"] == "1"

    regions = read_csv(out / "regions.csv")
    assert [r["region"] for r in regions] == ["alpha", "beta", "gamma"]
    assert regions[1]["country"] == "Côte d'Ivoire"
    assert regions[2]["pct_urban"] == "100.0"


def test_readme_mentions_every_png_and_table(written):
    out, _ = written
    readme = (out / "README.md").read_text(encoding="utf-8")
    for png in PNG_FILES:
        assert f"]({png})" in readme
    assert "| 8 | 5 | 3 / 1 / 1 | 3 | 3 | 3 | 0.586 | 3360 | 0.25–0.5 m |" in readme
    assert "| 8 building | 1600 | 32.00 | 139 | 53.33 | 0.00 | 0.00 |" in readme
    assert "| **total** | 5000 | 100.00 | 3360 |" in readme


def test_deterministic_bytes_in_any_order(written, tmp_path):
    out, paths = written
    shuffled = copy.deepcopy(IMAGES)
    random.Random(3).shuffle(shuffled)
    assert [im["id"] for im in shuffled] != [im["id"] for im in IMAGES]
    again = write_stats(shuffled, tmp_path)
    assert again == paths
    for name in paths:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_empty_release(tmp_path):
    paths = write_stats([], tmp_path)
    assert paths == list(STATS_FILES)
    t1 = json.loads((tmp_path / "table1.json").read_text())
    assert t1["images"] == 0 and t1["gsd_min_m"] is None and t1["area_km2"] == 0.0
    assert all(e["pixels"] == 0 and e["share_pct"] == 0.0 for e in compute_stats([])["table2"]["classes"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(split="holdout"), "split"),
        (lambda r: r.update(segments_total=r["segments_total"] + 1), "segments_total"),
        (lambda r: r["class_pixels"].update({"9": 1}), "outside the classes"),
        (lambda r: r["segments"].update({"3": -1}), "negative"),
        (lambda r: r.pop("continent"), "missing"),
        (lambda r: r.update(bounds=[10.0, 0.0, 10.0, 5.0]), "bounds"),
        (lambda r: r.update(id="alpha_2"), "duplicate"),
    ],
)
def test_malformed_records_are_rejected(change, message):
    images = copy.deepcopy(IMAGES)
    change(images[0])
    with pytest.raises(ValueError, match=message):
        compute_stats(images)


@pytest.mark.parametrize("names", [["a"], [f"region_with_a_long_name_{i:03d}" for i in range(80)]])
def test_region_figure_fits_its_labels_and_legend_in_the_page(names):
    """The per-region figure's margins (measured, no layout engine): every tick label, the title, the axis label
    and the legend beside the bars lie inside the page, with about tight_layout's pad left on each side."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pipeline.dataset.stats.plots import _plot_region_classes

    stats = {"regions": [{"region": n, **{f"pct_{k}": 12.5 for k in (
        "bareland", "rangeland", "developed_space", "road", "tree", "water", "agriculture_land", "building")}}
        for n in names]}
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        fig = Figure(figsize=(9, 2.5 + 0.22 * len(names)))
        _plot_region_classes(fig, stats)
        renderer = FigureCanvasAgg(fig).get_renderer()
        tight, page = fig.get_tightbbox(renderer), fig.bbox_inches
        pad = 1.08 * 10 / 72  # inches
        for gap in (tight.x0 - page.x0, page.x1 - tight.x1, tight.y0 - page.y0, page.y1 - tight.y1):
            assert 0.5 * pad < gap < 2 * pad
