"""Incremental releases: v1 from one demo source, v2 after adding a second source (previous_release auto).

Released images keep their id and split, only the new source's per-scene tasks run, the changes report
lists exactly the added images, a no-op rebuild runs nothing, and both releases validate.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import time
from pathlib import Path

import luigi
import luigi.configuration
import pytest

import tasks  # noqa: F401  (registers the tasks)
from oem_demo.generate import generate_demo
from pipeline.dataset.history import find_previous_release, previous_maps, release_names
from pipeline.dataset.pool import name_images
from pipeline.dataset.splits.trials import split_dataset
from pipeline.release.manifest import uda_lines
from pipeline.release.validate.report import validate_release, validate_report
from tests.helpers_build import DEMO_SOURCES, SPLIT_TRIALS

SCENE_TASKS = {"PrepareScene", "TileScene", "LabelScene", "CountSegments"}

STARTED: list[tuple[str, str | None]] = []
CHECKED: list[tuple[str, str | None]] = []  # tasks whose complete() the scheduling asked


@luigi.Task.event_handler(luigi.Event.START)
def _record_start(task):
    STARTED.append((task.task_family, getattr(task, "source_name", None)))


@luigi.Task.event_handler(luigi.Event.DEPENDENCY_PRESENT)
@luigi.Task.event_handler(luigi.Event.DEPENDENCY_MISSING)
def _record_checked(task):
    CHECKED.append((task.task_family, getattr(task, "source_name", None)))


def _build(base: Path, release: str) -> tuple[bool, float]:
    cfg = luigi.configuration.get_config()
    cfg.set("PipelineConfig", "data_dir", str(base / "data"))
    cfg.set("PipelineConfig", "sources_file", str(base / "sources.yaml"))
    cfg.set("PipelineConfig", "release", release)
    cfg.set("PipelineConfig", "split_trials", str(SPLIT_TRIALS))
    if cfg.has_option("PipelineConfig", "previous_release"):
        cfg.remove_option("PipelineConfig", "previous_release")  # auto
    from tasks import BuildRelease

    STARTED.clear()
    CHECKED.clear()
    t0 = time.monotonic()
    ok = luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
    return ok, time.monotonic() - t0


def _manifest(rel: Path) -> dict:
    return json.loads((rel / "manifest.json").read_text())


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    base = tmp_path_factory.mktemp("incremental")
    (base / "sources.yaml").write_text(DEMO_SOURCES)
    ok, _ = _build(base, "v1")
    assert ok, "v1 failed"
    # a second, smaller demo source: the Inria layout of a demo generated with another seed (2 scenes over
    # the first source's Austin and Vienna tiles); its name sorts before "demo", so numbering from scratch
    # would renumber released images
    generate_demo(base / "upstream", seed=11, size="small")
    (base / "sources.yaml").write_text(DEMO_SOURCES + f"""
  - name: aerial
    kind: inria
    location: {base / 'upstream' / 'inria'}
    license: CC BY 4.0
    attribution: second demo source
""")
    ok, _ = _build(base, "v2")
    assert ok, "v2 failed"
    started_v2, checked_v2 = list(STARTED), list(CHECKED)
    rels = base / "data" / "releases"
    return {"base": base, "v1": rels / "v1", "v2": rels / "v2", "started_v2": started_v2, "checked_v2": checked_v2}


def test_released_images_keep_id_and_split(releases):
    m1, m2 = _manifest(releases["v1"]), _manifest(releases["v2"])
    assert "previous_release" not in m1 and m2["previous_release"] == "v1"
    v1 = {im["key"]: im for im in m1["images"]}
    v2 = {im["key"]: im for im in m2["images"]}
    assert set(v1) <= set(v2)
    for key, im in v1.items():
        assert (v2[key]["id"], v2[key]["split"]) == (im["id"], im["split"]), key
        assert v2[key]["sha256_image"] == im["sha256_image"]
    new = [im for k, im in v2.items() if k not in v1]
    assert new and {im["source"] for im in new} == {"aerial"}
    for im in m2["images"]:
        assert im["group"]
    # new images take the next free numbers of their region
    for im in new:
        region_ids = [int(o["id"].rsplit("_", 1)[1]) for o in m1["images"] if o["region"] == im["region"]]
        assert int(im["id"].rsplit("_", 1)[1]) > max(region_ids, default=0)
    # a new image overlapping a released one shares its leakage group, hence its split
    by_id = {im["id"]: im for im in m2["images"]}
    assert any(im["group"] != im["id"] for im in new)
    for im in new:
        assert by_id[im["group"]]["split"] == im["split"]
    # the test is not trivial: naming and splitting v2 from scratch would move or rename released images
    fresh_ids = {im["key"]: im["id"] for im in name_images([dict(im, id=None) for im in m2["images"]])}
    fresh_split, _ = split_dataset(m2["images"], trials=SPLIT_TRIALS, seed=42)
    assert any(fresh_ids[k] != im["id"] or fresh_split[v2[k]["id"]] != im["split"] for k, im in v1.items())


def test_each_release_leaves_the_history_record_its_successor_reads(releases):
    from pipeline.dataset.history import manifest_digest, previous_maps

    history = releases["base"] / "data" / "work" / "history"
    for name in ("v1", "v2"):
        manifest = _manifest(releases[name])
        record = json.loads((history / f"{manifest_digest(releases[name])}.json").read_text())
        splits, ids = previous_maps(manifest)
        places = {im["key"]: [im["crs"], *im["bounds"]] for im in manifest["images"]}  # for same_place_as
        assert record == {"release": name, "images": {k: [ids[k], splits[k]] for k in splits}, "retired": {},
                          "places": places}


def test_only_the_new_sources_scene_tasks_ran(releases):
    scene_runs = [(fam, src) for fam, src in releases["started_v2"] if fam in SCENE_TASKS]
    assert scene_runs, releases["started_v2"]
    assert {src for _, src in scene_runs} == {"aerial"}
    assert {fam for fam, _ in scene_runs} == SCENE_TASKS
    assert {src for fam, src in releases["started_v2"] if fam in ("FetchSource", "CatalogSource")} == {"aerial"}
    # the unchanged source's pool share is complete (found so once), so the scheduler never even asks its
    # scenes' tasks (a complete task fires DEPENDENCY_PRESENT when the scheduling finds it so)
    checked = collections.Counter(releases["checked_v2"])
    assert checked[("SourcePool", "demo")] == 1, checked
    assert not [t for t in checked if t[0] in SCENE_TASKS], checked


def test_changes_report_lists_exactly_the_added_images(releases):
    m1, m2 = _manifest(releases["v1"]), _manifest(releases["v2"])
    ch = json.loads((releases["v2"] / "stats" / "changes.json").read_text())
    added = {im["key"] for im in m2["images"]} - {im["key"] for im in m1["images"]}
    assert {a["key"] for a in ch["added"]} == added
    assert ch["removed"] == ch["changed"] == ch["renamed"] == ch["split_moves"] == []
    assert ch["previous_release"] == "v1" and ch["release"] == "v2"
    assert ch["summary"]["unchanged"] == len(m1["images"])
    md = (releases["v2"] / "stats" / "changes.md").read_text()
    assert md.startswith("## Changes in v2 since v1")
    first = json.loads((releases["v1"] / "stats" / "changes.json").read_text())
    assert first["previous_release"] is None and len(first["added"]) == len(m1["images"])


def test_uda_section_and_files(releases):
    rel = releases["v2"]
    m = _manifest(rel)
    assert set(m["uda"]["regional"]) == {im["region"] for im in m["images"]}
    listed = {f["path"] for f in m["files"]}
    expected = uda_lines(m["images"], m["uda"])
    assert "uda/regional_source.txt" in expected and "uda/regional_target.txt" in expected
    assert any(p.startswith("uda/continent_north_america_") for p in expected)
    for path, names in expected.items():
        assert path in listed
        assert (rel / path).read_text().splitlines() == names
    assert {"stats/changes.json", "stats/changes.md"} <= listed
    regional = expected["uda/regional_source.txt"] + expected["uda/regional_target.txt"]
    assert sorted(regional) == sorted(Path(im["image"]).name for im in m["images"])


def test_both_releases_validate(releases):
    assert validate_release(releases["v1"]) == []
    assert validate_release(releases["v2"]) == []


def test_changing_one_source_reruns_that_source_only(releases):
    """The second source moves (same files, copied with their times, another location): it is fetched and
    catalogued again, its scenes' work is kept (their keys are their files' paths relative to the folder, sizes
    and times); the first source's raw data, catalog and per-scene work are reused."""
    base = releases["base"]
    original = (base / "sources.yaml").read_text()
    moved = base / "upstream" / "inria-moved"
    shutil.copytree(base / "upstream" / "inria", moved)
    (base / "sources.yaml").write_text(original.replace(str(base / "upstream" / "inria"), str(moved)))
    try:
        ok, _ = _build(base, "v3")
        started = list(STARTED)
    finally:
        (base / "sources.yaml").write_text(original)
    assert ok
    per_source = {(fam, src) for fam, src in started if src is not None}
    assert {src for _, src in per_source} == {"aerial"}, per_source
    assert {fam for fam, _ in per_source} == {"FetchSource", "CatalogSource", "SourcePool"}
    raws = sorted(p.name.rsplit("-", 1)[0] for p in (base / "data" / "raw").iterdir())
    assert raws == ["aerial", "aerial", "demo"]  # the old and the new location of "aerial"; "demo" once
    m2, m3 = _manifest(releases["v2"]), _manifest(base / "data" / "releases" / "v3")
    assert m3["previous_release"] == "v2"
    assert {im["key"]: (im["id"], im["split"], im["sha256_image"], im["sha256_label"]) for im in m3["images"]} == {
        im["key"]: (im["id"], im["split"], im["sha256_image"], im["sha256_label"]) for im in m2["images"]}
    assert validate_release(base / "data" / "releases" / "v3") == []


def test_changing_a_stage_reruns_it_and_what_follows_only(releases, monkeypatch):
    """A new version of the label stage's code relabels every scene and redoes the dataset, while no source is
    fetched or catalogued again and no scene is prepared or tiled again.  (The version is changed by patching
    the versions the root computes; tests/test_task_identity.py checks that editing the code changes it.)"""
    from tasks import versions

    real = versions.code_versions()
    monkeypatch.setattr(versions, "code_versions", lambda: {**real, "label": "0" * 12})
    ok, _ = _build(releases["base"], "v2-label")
    assert ok
    ran = collections.Counter(fam for fam, _ in STARTED)
    assert set(ran) == {"LabelScene", "CountSegments", "SourcePool", "AssembleTiles", "SelectTiles",
                        "ExportAnnotationTodo",
                        "SplitDataset", "ComputeStats", "StageRelease", "BuildRelease"}, ran
    from tasks import BuildRelease

    scenes = [t for share in BuildRelease().requires()["pool"].requires()["sources"]
              for t in share.requires()["scenes"]]
    assert ran["LabelScene"] == ran["CountSegments"] == len(scenes) > 10
    m = _manifest(releases["base"] / "data" / "releases" / "v2-label")
    assert m["created_with"]["code_versions"]["label"] == "0" * 12
    assert m["created_with"]["code_version"] != "0.1.0"  # the package version is not the code version
    assert m["created_with"]["libraries"] == versions.library_versions()  # what the versions fold in
    assert {"gdal", "proj", "geos", "opencv", "torch"} <= set(m["created_with"]["libraries"])


def test_noop_rebuild_runs_nothing(releases):
    rel = releases["v2"]
    before = (rel / "manifest.json").stat().st_mtime_ns
    ok, seconds = _build(releases["base"], "v2")
    assert ok and STARTED == []
    assert seconds < 10, seconds
    assert (rel / "manifest.json").stat().st_mtime_ns == before


def test_split_output_name_follows_the_previous_manifest(releases):
    from pipeline.errors import ConfigError
    from tasks import BuildRelease

    def split_path(**kwargs) -> Path:
        return Path(BuildRelease(**kwargs).requires()["split"].output().path)

    _build(releases["base"], "v2")  # sets the v2 configuration (a no-op)
    path = split_path()
    assert path.is_file() and BuildRelease().previous == "v1"
    manifest = releases["v1"] / "manifest.json"
    original = manifest.read_bytes()
    cfg = luigi.configuration.get_config()
    try:
        manifest.write_bytes(original + b"\n")
        # v2 was built from v1's manifest as it was: building it now is refused (tasks.taken), another name is not
        with pytest.raises(ConfigError, match="other settings: the manifest of the previous release v1"):
            BuildRelease()
        cfg.set("PipelineConfig", "previous_release", "v1")
        changed = split_path(release="v2-next")
        assert changed != path and not changed.exists()
        cfg.set("PipelineConfig", "previous_release", "none")
        assert BuildRelease(release="v2-next").previous == ""
        assert BuildRelease(release="v2-next").previous_digest == "none"
        assert split_path(release="v2-next") not in (path, changed)
    finally:
        cfg.remove_option("PipelineConfig", "previous_release")
        manifest.write_bytes(original)
    assert split_path() == path


# --- the build's incremental check (pipeline.release.validate.incremental) -----------------------------

def _v2_trust(releases, root: Path | None = None):
    """The trust the v2 build computes, for the release folder ``root`` (default: v2 itself)."""
    from pipeline.release.tilecache import linked_sha
    from pipeline.release.validate.incremental import release_trust
    from tasks import BuildRelease
    from tasks.config import work_dir

    _build(releases["base"], "v2")  # sets the v2 configuration (a no-op)
    images = json.loads(Path(BuildRelease().requires()["split"].output().path).read_text())["images"]
    folder = root or releases["v2"]
    verified = {}  # the files still the tile cache's COG of their work tile, as the build's placement reports them
    for im in images:
        for kind in ("image", "label"):
            rel = f"{im['region']}/{kind}s/{im['id']}.tif"
            sha = linked_sha(im[f"_{kind}_src"], folder / rel, kind=kind, cache=work_dir() / "release-tiles")
            if sha is not None:
                verified[rel] = sha
    return release_trust(folder, releases["v1"], _manifest(releases["v1"]), verified)


def test_build_check_trusts_exactly_the_unchanged_released_images(releases):
    trust = _v2_trust(releases)
    m1, m2 = _manifest(releases["v1"]), _manifest(releases["v2"])
    unchanged = {r["id"] for r in m2["images"] if r in m1["images"]}
    added = {r["id"] for r in m2["images"]} - {r["id"] for r in m1["images"]}
    assert added and len(unchanged) == len(m1["images"]) > 10
    assert trust.records == unchanged
    assert trust.stac_items == {f"stac/items/{i}.json" for i in unchanged}
    from pipeline.release.validate.stac import link_key

    v1_links = json.loads((releases["v1"] / "stac" / "collection.json").read_text())["links"]
    assert trust.collection_links == {link_key(link) for link in v1_links} and len(v1_links) > len(unchanged)
    from pipeline.release.validate.incremental import file_key

    shared = {file_key(e) for e in m1["files"]} & {file_key(e) for e in m2["files"]}
    assert trust.file_entries == {file_key(e) for e in m1["files"]} and len(shared) >= len(unchanged)  # items
    full, incremental = validate_report(releases["v2"]), validate_report(releases["v2"], trust=trust)
    assert full["valid"] and (full["problems"], full["warnings"]) == (incremental["problems"], incremental["warnings"])


def test_build_check_never_trusts_a_changed_file_or_record(releases, tmp_path):
    """In a copy of v2 made of hard links (as the build's release folder is), one trusted label is replaced by
    other bytes and one trusted record changes in the manifest: neither is trusted any more, and the
    incremental check reports exactly what the full check reports."""
    copy = tmp_path / "v2"
    shutil.copytree(releases["v2"], copy, copy_function=os.link)
    before = _v2_trust(releases, copy)
    m = _manifest(copy)
    a, b, c = (r for r in m["images"] if r["id"] in sorted(before.records)[:3])
    item = copy / "stac" / "items" / f"{c['id']}.json"  # rewritten, the same JSON: trusted, its bytes hashed
    text = item.read_text()
    item.unlink()
    item.write_text(text.replace('"type": "Feature"', '"type":  "Feature"'))
    label = copy / a["label"]
    data = label.read_bytes()
    label.unlink()  # a new file under the old name (the shared inode stays as it is)
    label.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    b["class_pixels"]["1"] += 1
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    after = _v2_trust(releases, copy)
    assert after.records == before.records - {a["id"], b["id"]}
    assert f"stac/items/{b['id']}.json" not in after.stac_items
    assert f"stac/items/{c['id']}.json" in after.stac_items and f"stac/items/{c['id']}.json" not in after.same_bytes
    assert after.same_bytes == after.stac_items - {f"stac/items/{c['id']}.json"}  # the others: links of v1's
    problems = validate_release(copy, trust=after)
    assert problems == validate_release(copy)
    assert any(p.startswith(f"stac/items/{c['id']}.json: sha256 mismatch") for p in problems), problems
    assert any(p.startswith(f"{a['label']}: sha256 mismatch") for p in problems), problems
    assert any(p.startswith(f"{b['label']}: pixel counts differ") for p in problems), problems
    assert validate_release(releases["v2"]) == []  # the shared files are untouched


def test_incremental_check_changes_no_output(releases, monkeypatch, tmp_path):
    """v2 built again with every check made in full and every STAC item rebuilt is byte-identical to the
    incremental v2 (the viewer, which is derived and not in the manifest, aside)."""
    from pipeline.release import stac
    from tasks.release import BuildRelease

    incremental = releases["v2"]
    aside = tmp_path / "v2-incremental"
    shutil.move(incremental, aside)
    monkeypatch.setattr(BuildRelease, "_trust", lambda self, *args: None)
    monkeypatch.setattr(stac, "_reusable", lambda *args: {})
    try:
        ok, _ = _build(releases["base"], "v2")
        assert ok and STARTED == [("StageRelease", None), ("BuildRelease", None)]  # the stage was taken by v2
        files, rebuilt = ([p.relative_to(d) for p in sorted(d.rglob("*")) if p.is_file()
                           and p.relative_to(d).parts[0] != "viewer"] for d in (aside, incremental))
        assert files == rebuilt and len(files) > 50
        assert [f for f in files if (aside / f).read_bytes() != (incremental / f).read_bytes()] == []
    finally:
        shutil.rmtree(incremental, ignore_errors=True)
        shutil.move(aside, incremental)


# --- pure helpers ------------------------------------------------------------------------------------

def _release(root: Path, name: str, images=()) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "manifest.json").write_text(json.dumps({"release": name, "images": list(images)}))


def test_find_previous_release(tmp_path):
    root = tmp_path / "releases"
    assert find_previous_release(root, "v1") is None
    _release(root, "v0.9.0")
    _release(root, "v0.10.0")
    _release(root, "v0.2.0")
    (root / "v0.11.0").mkdir()  # no manifest: not a release
    (root / ".tmp-v0.12.0-x").mkdir()
    assert release_names(root) == ["v0.2.0", "v0.9.0", "v0.10.0"]
    assert find_previous_release(root, "v0.11.0") == root / "v0.10.0"
    assert find_previous_release(root, "v0.10.0") == root / "v0.9.0"
    # the newest release OLDER than the one being built: rebuilding an old one never continues a newer one
    assert find_previous_release(root, "v0.9.5") == root / "v0.9.0"
    assert find_previous_release(root, "v0.2.0") is None
    assert find_previous_release(root, "v0.1.0") is None
    assert find_previous_release(root, "v0.11.0", "none") is None
    assert find_previous_release(root, "v0.11.0", "v0.2.0") == root / "v0.2.0"
    assert find_previous_release(root, "v0.11.0", str(root / "v0.9.0")) == root / "v0.9.0"
    with pytest.raises(FileNotFoundError, match="v0.3.0"):
        find_previous_release(root, "v0.11.0", "v0.3.0")
    with pytest.raises(ValueError):
        find_previous_release(root, "v0.10.0", "v0.10.0")


def _tile(region, source, scene, tile):
    return {"region": region, "source": source, "source_scene_id": scene, "tile": tile,
            "key": f"{source}~{scene}~{tile}"}


def test_name_images_keeps_released_ids():
    tiles = [_tile("austin", "a", "s1", "r000_c000"), _tile("austin", "a", "s1", "r000_c001"),
             _tile("lima", "a", "s2", "r000_c000")]
    first = {im["key"]: im["id"] for im in name_images(tiles)}
    assert first == {"a~s1~r000_c000": "austin_1", "a~s1~r000_c001": "austin_2", "a~s2~r000_c000": "lima_1"}
    # a tile sorting first arrives, one released tile is gone: released ids stay, new ones go after the max
    later = [_tile("austin", "0new", "s0", "r000_c000"), tiles[1], tiles[2], _tile("lima", "0new", "s9", "r000_c000")]
    prev = dict(first)
    prev["gone~x~r000_c000"] = "austin_3"
    got = {im["key"]: im["id"] for im in name_images(later, previous=prev)}
    assert got == {"0new~s0~r000_c000": "austin_4", "a~s1~r000_c001": "austin_2", "a~s2~r000_c000": "lima_1",
                   "0new~s9~r000_c000": "lima_2"}
    # an image whose region changed cannot keep an id of another region
    moved = [dict(tiles[2], region="cusco")]
    assert [im["id"] for im in name_images(moved, previous=first)] == ["cusco_1"]
    assert previous_maps({"images": [{"key": "k", "id": "austin_1", "split": "val"}]}) == (
        {"k": "val"}, {"k": "austin_1"})


def _closure(task) -> set[str]:
    """The families of every task ``task`` requires, transitively."""
    out: set[str] = set()
    todo = list(luigi.task.flatten(task.requires()))
    while todo:
        t = todo.pop()
        if t.task_family not in out:
            out.add(t.task_family)
            todo.extend(luigi.task.flatten(t.requires()))
    return out


def test_release_stage_runs_beside_the_statistics_and_is_taken_whole(releases, monkeypatch):
    """StageRelease (tiles, STAC items, index, thumbnails) and ComputeStats need only the split, so two workers
    run them at once; BuildRelease takes the stage by renaming (nothing left in the stage folder).  A build
    that fails after taking it (here: validation) leaves no complete stage behind, so the next build stages
    again and publishes a valid release."""
    from pipeline.release.validate import report
    from tasks import BuildRelease
    from tasks.config import work_dir

    _build(releases["base"], "v2")  # the v2 configuration (a no-op)
    needs = BuildRelease().requires()
    assert "ComputeStats" not in _closure(needs["stage"]) and "StageRelease" not in _closure(needs["stats"])
    assert list((work_dir() / "release-stage").iterdir()) == []  # v1's and v2's stages were taken whole
    m = _manifest(releases["v2"])
    tile = releases["v2"] / m["images"][0]["image"]
    assert tile.stat().st_nlink >= 3  # the tile cache's COG, v1's and v2's release: one inode, linked once each

    monkeypatch.setattr(report, "validate_release", lambda *a, **k: ["injected problem"])
    ok, _ = _build(releases["base"], "v3-stage")
    assert not ok and not (releases["v2"].parent / "v3-stage").exists()
    assert not list((work_dir() / "release-stage").glob("*.json"))  # the taken stage is incomplete
    monkeypatch.undo()
    ok, _ = _build(releases["base"], "v3-stage")
    assert ok and ("StageRelease", None) in STARTED
    assert validate_release(releases["v2"].parent / "v3-stage") == []
    assert list((work_dir() / "release-stage").iterdir()) == []
    shutil.rmtree(releases["v2"].parent / "v3-stage")


def test_the_browser_is_written_beside_the_check_and_a_failure_names_its_cause(releases, monkeypatch):
    """``BuildRelease`` writes the release browser in a forked process while it checks the release: a browser
    that cannot be written fails the build with its own error, a release that is not valid fails with its
    problems (``ReleaseInvalid``) whatever became of the browser, and neither leaves a release folder."""
    import pipeline.release.validate.report as report
    import pipeline.release.viewer as viewer
    from pipeline.errors import ReleaseInvalid, ThumbnailError

    pids: list[int] = []

    def broken_browser(*args, **kwargs):
        pids.append(os.getpid())  # the forked process's own list: reported through the error instead
        raise ThumbnailError("tile.tif", f"cannot be read (browser process {os.getpid()})")

    failures: list[BaseException] = []
    callbacks = luigi.Task._event_callbacks.setdefault(luigi.Task, {}).setdefault(luigi.Event.FAILURE, set())
    record = lambda task, exc: failures.append(exc)  # noqa: E731
    callbacks.add(record)
    try:
        monkeypatch.setattr(viewer, "write_viewer", broken_browser)
        ok, _ = _build(releases["base"], "v3-browser")
        assert not ok and not (releases["base"] / "data" / "releases" / "v3-browser").exists()
        assert isinstance(failures[-1], ThumbnailError) and not pids
        assert int(str(failures[-1]).rsplit(" ", 1)[1].rstrip(")")) != os.getpid()  # written by another process
        assert "in the forked process" in failures[-1].__notes__[-1]

        monkeypatch.setattr(report, "validate_release", lambda *a, **k: ["manifest.json: a planted problem"])
        ok, _ = _build(releases["base"], "v3-browser")
        assert not ok and not (releases["base"] / "data" / "releases" / "v3-browser").exists()
        assert isinstance(failures[-1], ReleaseInvalid) and "a planted problem" in str(failures[-1])
    finally:
        callbacks.discard(record)


def test_rebuild_floor_measures_the_carried_over_release(releases):
    """``bench/rebuild_floor.py`` (the floor under issue 15.6's ratio) on real releases: every file of the
    continued release is linked once into a scratch folder that is removed after, each part is measured, the
    floor ratio spreads its CPU seconds over the cores, and a missing release is reported, not measured."""
    from bench.rebuild_floor import floor_line, floor_ratio, run_floor

    v1, v2 = releases["v1"], releases["v2"]
    before = sorted(p.name for p in v2.parent.iterdir())
    nlink = {p: p.stat().st_nlink for p in v1.rglob("*") if p.is_file()}
    floor = run_floor([v1, v2, v1])  # in its own process, as the benchmarks run it
    assert floor["files_linked"] == len(nlink)
    assert set(floor["parts"]) == {"links", "figures", "bytes"}
    assert set(floor["whole"]) == {"manifest", "index", "collection"}
    assert all(v >= 0 for v in [*floor["parts"].values(), *floor["whole"].values()])
    assert floor["cpu"] == pytest.approx(sum(floor["parts"].values()), abs=1e-6) and floor["files_linked"] > 0
    assert floor["whole_cpu"] == pytest.approx(floor["cpu"] + sum(floor["whole"].values()), abs=1e-6)
    assert floor["images"] == {"new": len(_manifest(v2)["images"]), "alone": len(_manifest(v1)["images"])}
    assert sorted(p.name for p in v2.parent.iterdir()) == before  # its scratch folder is gone
    assert {p: p.stat().st_nlink for p in nlink} == nlink  # and with it every link it made
    assert floor_ratio(8.0, 1.6) == pytest.approx(1.1) and floor_ratio(8.0, 1.6, cores=1) == pytest.approx(1.2)
    assert f"{floor['files_linked']} files linked" in floor_line(floor, 8.0)
    assert run_floor([v1, v2, v1.parent / "missing"]) == {}
    assert "floor not measured" in floor_line({"error": "boom"}, 8.0)
