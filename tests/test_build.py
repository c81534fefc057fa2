"""End to end: a small demo release built with Luigi's local scheduler, validated, rebuilt, tampered."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import luigi
import luigi.configuration
import pytest
import rasterio

import tasks  # noqa: F401  (registers the tasks)
from pipeline.release.validate.report import validate_release
from tests.helpers_build import DEMO_SOURCES

ROOT = Path(__file__).resolve().parents[1]

SOURCES = DEMO_SOURCES  # one small demo source, 13 regions of one tile each


def build(data_dir: Path, sources: Path, release: str = "test") -> tuple[bool, Path]:
    cfg = luigi.configuration.get_config()
    cfg.set("PipelineConfig", "data_dir", str(data_dir))
    cfg.set("PipelineConfig", "sources_file", str(sources))
    cfg.set("PipelineConfig", "release", release)
    cfg.set("PipelineConfig", "split_trials", "200")
    from tasks import BuildRelease

    ok = luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
    return ok, data_dir / "releases" / release


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    base = tmp_path_factory.mktemp("build")
    sources = base / "sources.yaml"
    sources.write_text(SOURCES)
    ok, rel = build(base / "data", sources)
    assert ok, "the demo build failed"
    return base, sources, rel


def test_release_is_valid(release):
    _, _, rel = release
    assert validate_release(rel) == []
    manifest = json.loads((rel / "manifest.json").read_text())
    assert len(manifest["images"]) >= 12
    assert {im["continent"] for im in manifest["images"]} >= {
        "Africa", "Asia", "Europe", "North America", "South America", "Oceania"}


def test_every_tile_is_1024_utm_at_03_or_05_with_label_on_same_grid(release):
    _, _, rel = release
    manifest = json.loads((rel / "manifest.json").read_text())
    for im in manifest["images"]:
        with rasterio.open(rel / im["image"]) as img, rasterio.open(rel / im["label"]) as lab:
            assert (img.width, img.height) == (1024, 1024)
            epsg = img.crs.to_epsg()
            assert 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760
            assert round(img.res[0], 6) in (0.3, 0.5) and img.res[0] == img.res[1]
            assert img.count == 3 and img.dtypes[0] == "uint8"
            assert lab.count == 1 and lab.dtypes[0] == "uint8"
            assert lab.crs == img.crs and lab.transform == img.transform and lab.shape == img.shape
            assert int(lab.read(1).max()) <= 8


def test_coarse_scene_is_rejected_with_reason(release):
    _, _, rel = release
    rows = list(csv.DictReader((rel / "rejects.csv").open()))
    coarse = [r for r in rows if r["stage"] == "prepare" and "coarser than 0.5 m" in r["reason"]]
    assert len(coarse) == 1, rows
    assert "0.80" in coarse[0]["reason"]


def test_split_files_follow_oem_format(release):
    _, _, rel = release
    manifest = json.loads((rel / "manifest.json").read_text())
    listed = {}
    for split in ("train", "val", "test"):
        for line in (rel / f"{split}.txt").read_text().splitlines():
            assert line.endswith(".tif") and "/" not in line
            listed[line] = split
    assert listed == {Path(im["image"]).name: im["split"] for im in manifest["images"]}


STARTED: list[str] = []


@luigi.Task.event_handler(luigi.Event.START)
def _record_start(task):
    STARTED.append(task.task_id)


def test_rerun_after_success_runs_nothing(release):
    base, sources, rel = release
    before = (rel / "manifest.json").stat().st_mtime_ns
    from tasks import BuildRelease

    STARTED.clear()
    assert luigi.build([BuildRelease()], local_scheduler=True, log_level="WARNING")
    assert STARTED == []
    assert (rel / "manifest.json").stat().st_mtime_ns == before


def test_same_seed_gives_byte_identical_manifest(release, tmp_path):
    base, sources, rel = release
    ok, rel2 = build(tmp_path / "data", sources)
    assert ok
    assert (rel / "manifest.json").read_bytes() == (rel2 / "manifest.json").read_bytes()


def test_a_data_folder_given_relative_gives_the_same_release(release, tmp_path):
    # the README's command builds in `data` (relative): rejects.csv named the coarse demo scene by the work path
    # "data/raw/demo-<digest>/files/local/...", not relative to the source's folder, so the release differed from
    # one built with an absolute data folder
    base, sources, rel = release
    import os

    ok, rel2 = build(Path(os.path.relpath(tmp_path / "data")), sources)
    assert ok
    rows = (rel2 / "rejects.csv").read_text()
    assert "local/denver/denver_coarse_1.tif" in rows and "raw/" not in rows, rows
    assert (rel / "manifest.json").read_bytes() == (rel2 / "manifest.json").read_bytes()


def test_flipping_one_byte_fails_validation_naming_the_file(release, tmp_path):
    _, _, rel = release
    copy = tmp_path / "rel"
    shutil.copytree(rel, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    victim = manifest["images"][0]["image"]
    path = copy / victim
    path.unlink()  # the release hard-links work files: replace, never modify in place
    data = bytearray((rel / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(copy)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert victim in proc.stdout
    assert validate_release(rel) == []  # the original is untouched


def test_stats_hold_every_table_and_plot_and_equal_the_manifest_sums(release):
    from pipeline.dataset.stats.write import STATS_FILES

    _, _, rel = release
    manifest = json.loads((rel / "manifest.json").read_text())
    stats_dir = rel / "stats"
    for name in STATS_FILES:
        assert (stats_dir / name).is_file() and (stats_dir / name).stat().st_size > 0, name
    table2 = json.loads((stats_dir / "table2.json").read_text())
    images = manifest["images"]
    for entry in table2["classes"]:
        c = str(entry["class"])
        assert entry["pixels"] == sum(im["class_pixels"][c] for im in images), entry["name"]
        assert entry["segments"] == sum(im["segments"][c] for im in images), entry["name"]
        for split, row in entry["splits"].items():
            assert row["pixels"] == sum(im["class_pixels"][c] for im in images if im["split"] == split)
    assert table2["total"]["images"] == len(images)
    assert table2["total"]["segments"] == sum(im["segments_total"] for im in images)
    table1 = json.loads((stats_dir / "table1.json").read_text())
    assert table1["regions"] == len({im["region"] for im in images})
    assert table1["countries"] == len({im["country"] for im in images})
    readme = (stats_dir / "README.md").read_text()
    for png in (n for n in STATS_FILES if n.endswith(".png")):
        assert f"]({png})" in readme, png
