"""A local folder source is read in place, so its files are part of what determines its outputs: a file edited
there makes the source new (its ``raw`` digest carries the files' paths, sizes and times), and the next release
is built from the new file, its provenance checksum included, instead of reusing the work made from the old one.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.sources.adapters.base import safe_id
from pipeline.sources.localfs import location_stamp
from tests.helpers_build import BUILD_TIMEOUT, ROOT, local_sources, luigi_cmd, pipeline_env
from tests.test_bad_input import _label, _rgb, _scene


def test_stamp_follows_the_files_not_their_reading(tmp_path):
    folder = tmp_path / "src"
    _scene(folder, "a", 0)
    (folder / ".hidden").write_text("x")
    first = location_stamp(folder)
    assert location_stamp(folder) == first
    (folder / "a.tif").read_bytes()  # reading changes nothing
    (folder / ".hidden").write_text("changed")  # nor do hidden files, which a source never uses
    assert location_stamp(folder) == first
    st = (folder / "a.tif").stat()
    steps = [lambda: os.utime(folder / "a.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 1)),  # same size, rewritten
             lambda: (folder / "b.tif").write_bytes(b"II*\x00"),  # added
             lambda: (folder / "b.tif").rename(folder / "c.tif"),  # renamed
             lambda: (folder / "c.tif").unlink()]  # removed (back to the first step's files)
    stamps = [first]
    for step in steps:
        step()
        stamps.append(location_stamp(folder))
    assert len(set(stamps)) == 4 and stamps[4] == stamps[1]  # each step changes it; the same files, the same
    os.symlink("/proc/self/pagemap", folder / "pagemap.tif")  # a pseudo-file (new time at every look): kind only
    os.mkfifo(folder / "fifo.tif")
    with_special = location_stamp(folder)
    time.sleep(0.01)
    assert location_stamp(folder) == with_special
    single = location_stamp(folder / "a.tif")  # a location that is one file
    (folder / "a.tif").write_bytes(b"II*\x00 other")
    assert location_stamp(folder / "a.tif") != single


def _build(base: Path, sources: Path, release: str) -> str:
    proc = subprocess.run(luigi_cmd(base / "data", sources, release=release, split_trials=20), cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_edited_in_a_local_folder_is_released_as_it_is_now(tmp_path):
    folder = tmp_path / "src"
    _scene(folder, "good_a", 0)
    _scene(folder, "good_b", 1)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    _build(tmp_path, sources, "v1")
    time.sleep(0.01)  # a new modification time even on a coarse clock
    _scene(folder, "good_b", 1, image=_rgb(_label(seed=5)), label_data=_label(seed=5))  # same names, new pixels
    log = _build(tmp_path, sources, "v2")
    assert "FetchSource 1" in log and "TileScene 1" in log  # the source is fetched again, the edited scene tiled
    releases = tmp_path / "data" / "releases"
    changes = json.loads((releases / "v2" / "stats" / "changes.json").read_text())
    changed = {c["key"].split("~")[1] for c in changes["changed"]}
    assert changed == {"good_b"}, changes  # good_a's tiles come out the same bytes: unchanged
    record = json.loads((releases / "v2" / "provenance" / "folder.json").read_text())
    shas = {f["path"]: f["sha256"] for f in record["files"]}
    assert shas["good_b.tif"] == _sha(folder / "good_b.tif")  # the provenance names the file as it is now
    old = json.loads((releases / "v1" / "provenance" / "folder.json").read_text())
    assert {f["path"]: f["sha256"] for f in old["files"]}["good_b.tif"] != shas["good_b.tif"]
    with open(releases / "v2" / "rejects.csv", newline="") as f:
        assert not list(csv.DictReader(f))
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(releases / "v2")], cwd=ROOT,
                           env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_file_added_to_a_local_folder_redoes_that_scene_only(tmp_path):
    """A scene added to a folder read in place is the only one prepared, tiled, labelled and counted (its
    source's catalog and pool share are made again); the earlier images keep their ids and splits, also when
    the added file's name and an earlier one's have the same ASCII letters (``上海_1`` beside ``北京_1``: the
    earlier scene's id was ``1`` and became ``1-<digest>`` when the other came, so its image was retired and
    released again under a new id)."""
    folder = tmp_path / "src"
    for i in range(3):
        _scene(folder, f"s{i}", i)
    _scene(folder, "北京_1", 3)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    assert "PrepareScene 4" in _build(tmp_path, sources, "v1")
    _scene(folder, "上海_1", 4)
    log = _build(tmp_path, sources, "v2")
    for family in ("PrepareScene", "TileScene", "LabelScene", "CountSegments"):
        assert f"{family} 1," in log or f"{family} 1)" in log, log[-3000:]
    releases = tmp_path / "data" / "releases"
    v1, v2 = (json.loads((releases / r / "manifest.json").read_text()) for r in ("v1", "v2"))
    before = {im["key"]: (im["id"], im["split"]) for im in v1["images"]}
    after = {im["key"]: (im["id"], im["split"]) for im in v2["images"]}
    assert len(after) == 5 and all(after[k] == v for k, v in before.items())
    changes = json.loads((releases / "v2" / "stats" / "changes.json").read_text())
    assert [c["key"].split("~")[1] for c in changes["added"]] == [safe_id("上海_1")] and not changes["changed"]
    assert not changes["removed"], changes


def test_a_scene_digest_follows_its_own_files_and_their_side_cars_only(tmp_path):
    """What makes a local scene's per-scene work new: its image or labels edited, a side-car GDAL reads beside
    them (a world file, an external mask) added or edited; not another file of the folder."""
    from pipeline.scene import Scene
    from pipeline.sources.localfs import sidecars
    from tasks.scenekey import SceneKeys, scene_digest

    image = tmp_path / "a.tif"
    image.write_bytes(b"II*\x00 one")
    scene = Scene(source="folder", scene_id="a", kind="local", image=str(image), license="x", attribution="y")
    here = SceneKeys("cat", str(tmp_path), "base")
    first = scene_digest(here, scene)
    assert scene_digest(here, scene) == first and scene_digest(SceneKeys("cat", str(tmp_path), "other"), scene) != first
    assert scene_digest(SceneKeys("cat2", str(tmp_path), "base"), scene) == first  # a new catalog: the same scene
    (tmp_path / "b.tif").write_bytes(b"II*\x00 another scene")
    (tmp_path / "notes.txt").write_text("x")
    assert scene_digest(here, scene) == first  # other files of the folder: not this scene's
    assert str(tmp_path / "a.tfw") in sidecars(str(image)) and str(tmp_path / "a.TFW") in sidecars(str(image))
    seen = {first}
    for step in (lambda: (tmp_path / "a.tfw").write_text("0.3\n0\n0\n-0.3\n600000\n5340000\n"),
                 lambda: (tmp_path / "a.tfw").write_text("0.3\n0\n0\n-0.3\n600100.5\n5340000\n"),
                 lambda: (tmp_path / "a.tif.msk").write_bytes(b"II*\x00 mask"),
                 lambda: image.write_bytes(b"II*\x00 two")):
        step()
        seen.add(scene_digest(here, scene))
    assert len(seen) == 5  # each step makes the scene new
    # a scene whose files lie outside the folder: its catalog digest and scene id
    moved = Scene(source="folder", scene_id="a", kind="xbd", image="/elsewhere/a.tif", license="x", attribution="y")
    assert scene_digest(here, moved) == scene_digest(SceneKeys("cat"), scene) \
        != scene_digest(SceneKeys("cat2", str(tmp_path), "base"), moved)


def test_a_downloaded_scene_is_keyed_by_its_files_checksums_not_by_where_or_by_what_code_fetched_it(tmp_path):
    """A downloaded (or extracted, or generated) scene's work is keyed by its record, paths relative to the raw
    folder's files/, and the SHA-256 its fetch record gives each file: a new raw folder (the fetch code changed,
    a new fetch of the same bytes) keeps the scene's work; other bytes, or a file the record does not list (then
    the catalog digest), do not."""
    from pipeline.scene import Scene
    from tasks.scenekey import SceneKeys, scene_digest

    def scene(root):
        return Scene(source="web", scene_id="a", kind="xbd", image=str(root / "images" / "a.png"),
                     landcover=str(root / "labels" / "a.png"), license="x", attribution="y")

    def keys(root, catalog, image_sha="1" * 64):
        sums = {str(root / "images" / "a.png"): image_sha, str(root / "labels" / "a.png"): "2" * 64}
        return SceneKeys(catalog, str(root), "base", sums)

    old, new = tmp_path / "raw" / "web-aaaaaaaaaaaa" / "files", tmp_path / "raw" / "web-bbbbbbbbbbbb" / "files"
    first = scene_digest(keys(old, "cat1"), scene(old))
    assert scene_digest(keys(new, "cat2"), scene(new)) == first  # another raw folder and catalog, the same bytes
    assert scene_digest(keys(new, "cat2", "3" * 64), scene(new)) != first  # other bytes
    unlisted = SceneKeys("cat2", str(new), "base", {str(new / "images" / "a.png"): "1" * 64})
    assert scene_digest(unlisted, scene(new)) == scene_digest(SceneKeys("cat2"), scene(new)) != first


def test_a_corrected_licence_attribution_or_region_redoes_no_pixel_work(tmp_path):
    """A source's licence, attribution and region options label its images; no per-scene output is made from
    them. Correcting them in ``sources.yaml`` fetches and catalogs the source again (its provenance names the new
    terms) and re-releases its images with them, without preparing, tiling, labelling or counting a scene again
    (it did: a DOI added to an attribution, or a region set, redid every scene of the source)."""
    folder = tmp_path / "src"
    for i in range(2):
        _scene(folder, f"s{i}", i)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    assert "PrepareScene 2" in _build(tmp_path, sources, "v1")
    text = sources.read_text().replace("CC BY 4.0", "CC BY-SA 4.0").replace("test suite", "test suite, doi:10/x")
    sources.write_text(text + "    options: {region: graz}\n")
    log = _build(tmp_path, sources, "v2")
    ran = log[log.index("Build summary"):].split("\n")[0]
    assert "FetchSource 1" in ran and "CatalogSource 1" in ran, ran
    for family in ("PrepareScene", "TileScene", "LabelScene", "CountSegments"):
        assert family not in ran, ran
    releases = tmp_path / "data" / "releases"
    v2 = json.loads((releases / "v2" / "manifest.json").read_text())
    assert {(im["license"], im["attribution"], im["region"]) for im in v2["images"]} == {
        ("CC BY-SA 4.0", "test suite, doi:10/x", "graz")}
    record = json.loads((releases / "v2" / "provenance" / "folder.json").read_text())
    assert {(f["license"], f["attribution"]) for f in record["files"]} == {("CC BY-SA 4.0", "test suite, doi:10/x")}
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(releases / "v2")], cwd=ROOT,
                           env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_raised_limit_takes_back_what_it_left_out(tmp_path):
    """Files a limit on hostile input left out are looked at again when the limit is raised: the limits key the
    fetch and catalog (not the per-scene work). They used to be reused: scenes rejected as over
    ``local_file_max_bytes`` stayed rejected, with the old limit in the reason, whatever the limit was then."""
    folder = tmp_path / "src"
    for i in range(3):
        _scene(folder, f"s{i}", i)
    sizes = sorted((folder / f"s{i}.tif").stat().st_size for i in range(3))
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    proc = subprocess.run(luigi_cmd(tmp_path / "data", sources, "--PipelineConfig-local-file-max-bytes",
                                    str(sizes[0]), release="v1", split_trials=20), cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    releases = tmp_path / "data" / "releases"
    with open(releases / "v1" / "rejects.csv", newline="") as f:
        assert ["local_file_max_bytes" in r["reason"] for r in csv.DictReader(f)] == [True, True]
    log = _build(tmp_path, sources, "v2")  # the default limit
    ran = log[log.index("Build summary"):].split("\n")[0]
    assert "PrepareScene 2," in ran, ran  # the two left out; the third scene's work is kept
    assert len(json.loads((releases / "v2" / "manifest.json").read_text())["images"]) == 3
    with open(releases / "v2" / "rejects.csv", newline="") as f:
        assert not list(csv.DictReader(f))


def test_a_moved_source_folder_keeps_its_scenes_work(tmp_path):
    """A folder read in place that is moved (or mounted elsewhere) with its ``location`` changed to match keeps its
    scenes' work: their keys are the files' paths relative to the folder, sizes and times. It used to redo every
    scene (a dataset moved to a bigger disk: the whole source prepared, tiled, labelled and counted again)."""
    folder = tmp_path / "src"
    for i in range(3):
        _scene(folder, f"s{i}", i)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    assert "PrepareScene 3" in _build(tmp_path, sources, "v1")
    folder.rename(tmp_path / "moved")
    local_sources(sources, {"folder": tmp_path / "moved"})
    log = _build(tmp_path, sources, "v2")
    ran = log[log.index("Build summary"):].split("\n")[0]
    assert "FetchSource 1" in ran, ran  # the entry changed: fetched and catalogued again (checksums in provenance)
    for family in ("PrepareScene", "TileScene", "LabelScene", "CountSegments"):
        assert family not in ran, ran
    releases = tmp_path / "data" / "releases"
    changes = json.loads((releases / "v2" / "stats" / "changes.json").read_text())
    assert changes["summary"]["unchanged"] == 3 and not changes["added"] and not changes["removed"], changes
    record = json.loads((releases / "v2" / "provenance" / "folder.json").read_text())
    assert all(f["url"].startswith((tmp_path / "moved").as_uri()) for f in record["files"])
    check = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(releases / "v2")], cwd=ROOT,
                           env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
