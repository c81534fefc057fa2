"""Task identity: outputs keyed by what made them, parameters computed once at the root, cheap ``complete()``.

No build here: the graph is made from a sources file, a fake catalog and fake release folders in a temporary
data folder (the end-to-end properties, reruns after a source / code / annotation change, are in
tests/test_incremental_release.py).
"""
from __future__ import annotations

import builtins
import hashlib
import json
import os
from pathlib import Path

import luigi
import luigi.configuration
import pytest
from luigi.cmdline_parser import CmdlineParser

import tasks  # noqa: F401  (registers the tasks)
from tasks import versions
from tests.helpers_build import DEMO_SOURCES

SOURCES = DEMO_SOURCES + """  - name: folder
    kind: local
    location: /somewhere/geotiffs
    license: CC BY 4.0
    attribution: a local folder
"""
SCENES = [f"local-site{i:02d}" for i in range(12)]


def _scenes(root) -> list:
    """The per-scene tasks (``CountSegments``) the root requires, through every source's pool share."""
    return [t for share in root.requires()["pool"].requires()["sources"] for t in share.requires()["scenes"]]


@pytest.fixture
def config(tmp_path):
    """PipelineConfig pointing at a temporary data folder and sources file (restored afterwards)."""
    (tmp_path / "sources.yaml").write_text(SOURCES)
    conf = luigi.configuration.get_config()
    keys = ("data_dir", "sources_file", "release", "seed", "previous_release")
    saved = {k: conf.get("PipelineConfig", k) if conf.has_option("PipelineConfig", k) else None for k in keys}
    conf.set("PipelineConfig", "data_dir", str(tmp_path / "data"))
    conf.set("PipelineConfig", "sources_file", str(tmp_path / "sources.yaml"))
    for k in ("release", "seed", "previous_release"):
        if conf.has_option("PipelineConfig", k):
            conf.remove_option("PipelineConfig", k)
    # task instances are cached by parameters, which do not include data_dir: no task of another test's folder
    luigi.task_register.Register.clear_instance_cache()
    yield conf
    luigi.task_register.Register.clear_instance_cache()
    for k, v in saved.items():
        if v is None:
            conf.remove_option("PipelineConfig", k) if conf.has_option("PipelineConfig", k) else None
        else:
            conf.set("PipelineConfig", k, v)


def _root(**kwargs):
    from tasks import BuildRelease

    return BuildRelease(**kwargs)


def _fake_catalog(root, source: str = "folder") -> None:
    """A written catalog of ``source`` with :data:`SCENES` (what CatalogSource leaves behind)."""
    task = next(t for t in root.requires()["pool"].catalog_tasks() if t.source_name == source)
    scenes = [{"source": source, "scene_id": s, "kind": "local", "image": f"/somewhere/{s}.tif", "license": "x",
               "attribution": "y"} for s in SCENES]
    Path(task.output().path).parent.mkdir(parents=True, exist_ok=True)
    Path(task.output().path).write_text(json.dumps({"source": source, "kind": "local", "root": "/somewhere",
                                                    "scenes": scenes, "rejects": []}))


def _graph(task) -> list:
    """Every task reachable through requires() (static requirements), depth first, each once."""
    seen: dict[str, object] = {}
    todo = [task]
    while todo:
        t = todo.pop()
        if t.task_id in seen:
            continue
        seen[t.task_id] = t
        todo.extend(luigi.task.flatten(t.requires()))
    return list(seen.values())


# --- the root's parameters ------------------------------------------------------------------------------

def test_release_and_seed_give_different_task_ids(config):
    a = _root()
    config.set("PipelineConfig", "release", "v0.2.0")
    config.set("PipelineConfig", "seed", "7")
    b = _root()
    assert (a.release, a.seed, b.release, b.seed) == ("v0.1.0", 42, "v0.2.0", 7)
    assert a.task_id != b.task_id
    ra, rb = a.requires(), b.requires()
    # the seed changes selection, split and statistics; the pool (and all per-scene work) is shared
    assert ra["pool"].task_id == rb["pool"].task_id
    for name in ("selection", "split", "stats", "todo"):
        assert ra[name].task_id != rb[name].task_id, name
        assert ra[name].output().path != rb[name].output().path, name
    assert ra["fetch"]["demo"].task_id == rb["fetch"]["demo"].task_id
    config.set("PipelineConfig", "release", "v0.1.0")
    config.set("PipelineConfig", "seed", "42")
    assert _root().task_id == a.task_id  # the same configuration is the same task


def test_the_data_folder_is_part_of_task_ids_and_not_of_output_names(config, tmp_path):
    """Two builds with the same settings in two data folders on one luigid are different tasks; their outputs
    have the same names, each in its own folder."""
    def graph(folder: Path) -> list[tuple[str, str, int, str, Path]]:
        config.set("PipelineConfig", "data_dir", str(folder))
        luigi.task_register.Register.clear_instance_cache()
        return [(t.task_family, t.task_id, hash(t), t.digest(), Path(t.output().path).relative_to(folder))
                for t in _graph(_root())]

    first, second = graph(tmp_path / "data"), graph(tmp_path / "other")
    assert len(first) == len(second) > 5
    for (fam_a, id_a, hash_a, dig_a, rel_a), (fam_b, id_b, hash_b, dig_b, rel_b) in zip(first, second):
        assert fam_a == fam_b and id_a != id_b and hash_a != hash_b
        assert (dig_a, rel_a) == (dig_b, rel_b)
    assert graph(tmp_path / "data") == first


def test_pipelineconfig_on_the_command_line_reaches_the_root(config):
    argv = ["BuildRelease", "--PipelineConfig-release", "v0.2.0", "--PipelineConfig-seed", "7",
            "--PipelineConfig-tile-size", "512"]
    with CmdlineParser.global_instance(argv) as parser:
        root = parser.get_task_obj()
    assert (root.release, root.seed, root.tile_size) == ("v0.2.0", 7, 512)
    with CmdlineParser.global_instance(["BuildRelease", "--release", "v9", "--PipelineConfig-release", "v0.2.0"]) as p:
        assert p.get_task_obj().release == "v9"  # the root's own parameter wins over the configuration


def test_max_grid_pixels_is_significant_and_the_download_limits_name_the_fetch_only(config):
    """``max_grid_pixels`` decides which scenes a build holds: it names the plan and everything after it;
    the limits on hostile input decide which files a fetch skips and a catalog rejects: they name the fetch
    and catalog (so a raised limit takes back what it left out) and what follows them, never the per-scene work
    of a scene; ``viewer`` names the root only."""
    _fake_catalog(_root())
    luigi.task_register.Register.clear_instance_cache()

    def ids():
        root = _root()
        _fake_catalog(root)  # the catalog these limits name (the same scenes)
        scene = _scenes(root)[0]
        prepare = scene.requires().requires().requires()
        return {"root": root.task_id, "pool": root.requires()["pool"].task_id, "prepare": prepare.task_id,
                "fetch": root.requires()["fetch"]["folder"].task_id, "plan": prepare.output().path}

    base = ids()
    for key, value, changed in (("max_grid_pixels", "1000000", {"root", "pool", "prepare", "plan"}),
                                ("download_max_bytes", "1000", set()),  # a local folder downloads nothing
                                ("local_file_max_bytes", "1000", {"root", "pool", "fetch"}),
                                ("archive_max_ratio", "10", {"root", "pool", "fetch"}),
                                ("download_deadline_s", "60", set()),  # a breach fails the fetch: resumed
                                ("viewer", "false", {"root"})):
        config.set("PipelineConfig", key, value)
        try:
            now = ids()
        finally:
            config.remove_option("PipelineConfig", key)
        assert {k for k in base if now[k] != base[k]} == changed, key
    assert ids() == base


def test_scene_annotations_match_whole_tile_keys():
    """A scene's annotation digest takes exactly the files named by a key of one of its tiles (new ``~`` or
    legacy ``-`` form): scene ``a`` never takes the files of scene ``a-b``."""
    from tasks.plan import AnnotationIndex

    own = [("src~a~r000_c000.geojson", "1"), ("src-a-r000_c001.tif", "2")]
    other = [("src~a-b~r000_c000.geojson", "3"), ("src-a-b-r000_c000.tif", "4"), ("src~a~notes.txt", "5")]
    index = AnnotationIndex(own + other)
    assert index.scene("src", "a") == AnnotationIndex(own).scene("src", "a") != ""
    changed = AnnotationIndex(own + [(n, h + "x") for n, h in other])
    assert changed.scene("src", "a") == index.scene("src", "a")
    assert changed.scene("src", "a-b") != index.scene("src", "a-b") != ""
    assert index.scene("src", "c") == ""


def test_a_sources_annotation_digest_covers_its_files_only():
    """A source's pool share is named by the annotations of that source: another source's files change nothing
    (a superset under the legacy ``-`` form is allowed: it only redoes the share)."""
    from tasks.plan import AnnotationIndex

    mine = [("src~a~r000_c000.geojson", "1"), ("src-b-r000_c001.tif", "2")]
    others = [("other~a~r000_c000.geojson", "3"), ("sr~x~r0.tif", "4")]
    index = AnnotationIndex(mine + others)
    assert index.source("src") == AnnotationIndex(mine).source("src") != ""
    assert AnnotationIndex(mine + [(n, h + "x") for n, h in others]).source("src") == index.source("src")
    assert AnnotationIndex([(mine[0][0], "9"), mine[1], *others]).source("src") != index.source("src")
    assert index.source("none") == ""


def test_outputs_carry_the_digest_of_their_source_entry(config, tmp_path):
    root = _root()
    sources = {name: (raw, catalog) for name, raw, catalog in root.sources}
    fetch = root.requires()["fetch"]
    assert fetch["demo"].output().path.endswith(f"raw/demo-{sources['demo'][0]}/fetch.json")
    cats = {t.source_name: t for t in root.requires()["pool"].catalog_tasks()}
    assert cats["folder"].output().path.endswith(f"catalog/folder-{sources['folder'][1]}.json")
    # changing one source's options (the demo seed), location or licence changes that source's digests only
    for old, new, who in (("seed: 7", "seed: 8", "demo"), ("/somewhere/geotiffs", "/elsewhere", "folder"),
                          ("license: CC BY 4.0", "license: CC BY-SA 4.0", "folder")):
        (tmp_path / "sources.yaml").write_text(SOURCES.replace(old, new))
        changed = {name: (raw, catalog) for name, raw, catalog in _root().sources}
        other = "folder" if who == "demo" else "demo"
        assert changed[other] == sources[other], (old, new)
        assert changed[who][0] != sources[who][0] and changed[who][1] != sources[who][1], (old, new)
    # "enabled" is not part of a source's identity, and a disabled source is not built
    (tmp_path / "sources.yaml").write_text(SOURCES + "    enabled: false\n")
    assert [s[0] for s in _root().sources] == ["demo"]


def test_per_scene_tasks_are_static_once_the_catalog_exists(config):
    root = _root()
    pool = root.requires()["pool"]
    assert all(p.requires()["scenes"] == [] for p in pool.requires()["sources"])  # no catalog yet: dynamic
    tasks.config._catalog.cache_clear()
    _fake_catalog(root)
    luigi.task_register.Register.clear_instance_cache()
    root = _root()
    scenes = _scenes(root)
    assert sorted(t.scene_id for t in scenes) == SCENES
    chain = _graph(scenes[0])
    assert {t.task_family for t in chain} == {"CountSegments", "LabelScene", "TileScene", "PrepareScene",
                                               "CatalogSource", "FetchSource"}
    folder = Path(scenes[0].output().path).parent
    assert folder.parent.name == "folder" and folder.name == scenes[0].scene_id  # named by the scene alone
    assert "catalog" not in scenes[0].to_str_params(only_significant=True) and scenes[0].scene_inputs


# --- annotations ----------------------------------------------------------------------------------------

def test_annotation_digests_are_computed_once_at_the_root_and_passed_per_scene(config, tmp_path, monkeypatch):
    from pipeline.labels.labelling import tile_key

    root = _root()
    _fake_catalog(root)
    done = tmp_path / "data" / "annotation" / "done"
    done.mkdir(parents=True)
    key = tile_key("folder", SCENES[3], "r000_c000")
    (done / f"{key}.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (done / "notes.txt").write_text("not an annotation")
    luigi.task_register.Register.clear_instance_cache()

    listings, hashed = [], []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": listings.append(str(p)) or real_scandir(p))
    root = _root()
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert listings.count(str(done)) == 1, listings  # one listing of done/ for the whole build
    by_scene = {t.scene_id: t for t in _scenes(root)}
    assert by_scene[SCENES[3]].annotations and all(not by_scene[s].annotations for s in SCENES if s != SCENES[3])
    ids = {s: t.task_id for s, t in by_scene.items()}

    # a second root reuses the persisted hash cache: the annotation file is not read again
    luigi.task_register.Register.clear_instance_cache()
    real_open = builtins.open

    def spy_open(file, *a, **k):
        if str(file).startswith(str(done)):
            hashed.append(str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy_open)
    again = _root()
    monkeypatch.setattr(builtins, "open", real_open)
    assert again.task_id == root.task_id and hashed == []

    # editing the annotation changes that scene's label and count tasks, and nothing upstream or elsewhere
    (done / f"{key}.geojson").write_text('{"type": "FeatureCollection", "features": [], "x": 1}')
    luigi.task_register.Register.clear_instance_cache()
    edited = {t.scene_id: t for t in _scenes(_root())}
    assert {s for s in SCENES if edited[s].task_id != ids[s]} == {SCENES[3]}
    shares = [{t.source_name: t.task_id for t in r.requires()["pool"].requires()["sources"]} for r in (root, _root())]
    assert {n for n in shares[0] if shares[0][n] != shares[1][n]} == {"folder"}  # its source's pool share only
    assert edited[SCENES[3]].requires().requires().task_id == by_scene[SCENES[3]].requires().requires().task_id


def test_complete_is_cheap_for_every_task(config, tmp_path, monkeypatch):
    """complete() of every task of the graph (root, dataset tasks, per-scene tasks) only stats paths: it never
    lists a folder and never opens a file (so it hashes no data)."""
    root = _root()
    _fake_catalog(root)
    (tmp_path / "data" / "annotation" / "done").mkdir(parents=True)
    luigi.task_register.Register.clear_instance_cache()
    graph = _graph(_root())
    assert len(graph) >= 4 * len(SCENES) + 8

    def forbidden(*a, **k):
        raise AssertionError(f"complete() did I/O beyond stat: {a[:1]}")

    for mod, name in ((os, "scandir"), (os, "listdir"), (builtins, "open"), (Path, "iterdir"),
                      (Path, "read_text"), (Path, "read_bytes"), (os, "walk")):
        monkeypatch.setattr(mod, name, forbidden)
    try:
        done = [t for t in graph if t.complete()]
    finally:
        monkeypatch.undo()
    assert [t.task_family for t in done] == ["CatalogSource"]  # the fake catalog


# --- previous release (issue 15.4) ----------------------------------------------------------------------

def test_previous_release_is_the_newest_older_one(config, tmp_path):
    rels = tmp_path / "data" / "releases"
    for name in ("v0.1.0", "v0.2.0", "v0.10.0"):
        (rels / name).mkdir(parents=True)
        (rels / name / "manifest.json").write_text(json.dumps({"release": name, "images": []}))
    assert _root(release="v0.1.0").previous == ""  # rebuilding v0.1.0 never continues from v0.2.0
    assert _root(release="v0.2.0").previous == "v0.1.0"
    assert _root(release="v0.9.0").previous == "v0.2.0"
    assert _root(release="v0.11.0").previous == "v0.10.0"
    root = _root(release="v0.3.0")
    assert root.previous_digest == hashlib.sha256((rels / "v0.2.0" / "manifest.json").read_bytes()).hexdigest()[:12]
    config.set("PipelineConfig", "previous_release", "v0.10.0")
    assert _root(release="v0.3.0").previous == "v0.10.0"  # an explicit choice is kept


# --- code versions --------------------------------------------------------------------------------------

def test_code_version_ignores_docstrings_comments_and_layout():
    a = versions.normalised('"""Doc."""\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    b = versions.normalised("def f(x):\n\n    # another comment\n    return (x +\n            1)\n")
    c = versions.normalised("def f(x):\n    return x + 2\n")
    assert a == b != c


def test_stage_modules_follow_imports():
    mods = {s: set(versions.stage_modules(s)) for s in versions.STAGES}
    assert {"pipeline.labels.segments", "pipeline.constants"} == mods["count"]
    assert {"pipeline.raster.plan", "pipeline.raster.gsd", "pipeline.scene", "pipeline.errors"} <= mods["prepare"]
    assert not any(m.startswith("pipeline.labels") for m in mods["prepare"] | mods["tile"])
    assert {"pipeline.labels.labelling", "pipeline.raster.reading"} <= mods["label"]
    assert {"pipeline.sources.fetch", "oem_demo.generate", "oem_demo.render"} <= mods["fetch"]
    assert {"pipeline.dataset.selection.model", "pipeline.dataset.splits.trials"} <= mods["dataset"]
    assert {"pipeline.release.writer", "pipeline.raster.cog"} <= mods["release"]
    assert not any("pipeline" in ms for ms in mods.values())  # the package version is not a code version
    assert not any(m.startswith("tasks") for ms in mods.values() for m in ms)


def _versions_with(monkeypatch, edit) -> dict[str, str]:
    """The stage versions when module sources are edited by ``edit(name, text) -> text`` (caches restored)."""
    real = versions._source.__wrapped__
    caches = (versions._source, versions._module_dump, versions._module_names, versions.stage_modules,
              versions.code_version)
    for c in caches:
        c.cache_clear()
    monkeypatch.setattr(versions, "_source", lambda name: edit(name, real(name)))
    try:
        return versions.code_versions()
    finally:
        monkeypatch.undo()
        for c in caches:
            c.cache_clear()


def test_a_changed_stage_changes_its_version_and_no_other(monkeypatch):
    before = versions.code_versions()

    def count_task(name, text):
        return text.replace("count_segments(np.asarray(arr))", "count_segments(np.asarray(arr, dtype=np.uint8))") \
            if name == "tasks.scene" else text

    after = _versions_with(monkeypatch, count_task)
    assert {s for s in before if before[s] != after[s]} == {"count"}  # CountSegments.run only

    def gsd(name, text):
        return text + "\n\nEXTRA = 1\n" if name == "pipeline.raster.gsd" else text

    after = _versions_with(monkeypatch, gsd)
    users = {s for s in versions.STAGES if "pipeline.raster.gsd" in versions.stage_modules(s)}
    assert {s for s in before if before[s] != after[s]} == users
    assert "prepare" in users and "count" not in users
    assert versions.code_versions() == before


def test_a_library_upgrade_changes_the_versions_of_the_stages_it_serves(monkeypatch):
    """Upgrading GDAL, OpenCV or torch reruns the stages whose output they make (a release never mixes tiles
    resampled by two GDAL versions), and fetching none: a download does not depend on its library."""
    before = versions.code_versions()
    real = versions.library_versions()
    assert set(real) == {n for libs in versions.LIBRARIES.values() for n in libs}
    assert "absent" not in real.values() and real["gdal"] and real["geos"] and real["proj"]
    for lib, stages in [("gdal", {"catalog", "prepare", "tile", "label", "release"}),
                        ("opencv", {"label", "count", "dataset", "release"}), ("torch", {"dataset"}),
                        ("jsonschema", {"release"})]:
        monkeypatch.setattr(versions, "library_versions", lambda lib=lib: {**real, lib: real[lib] + ".post1"})
        after = versions.code_versions()
        assert {s for s in before if before[s] != after[s]} == stages, lib
        assert after["fetch"] == before["fetch"] == versions.code_version("fetch")
    monkeypatch.undo()
    assert versions.code_versions() == before


def test_a_changed_schema_changes_the_release_version_and_no_other(monkeypatch, tmp_path):
    """The release is checked against pipeline/schemas: editing a schema must change the release stage's version
    (so a build re-checks every image instead of trusting those the previous release validated)."""
    import shutil

    schemas = tmp_path / "schemas"
    shutil.copytree(versions.ROOT / "pipeline" / "schemas", schemas)
    monkeypatch.setattr(versions, "DATA", {"release": (str(schemas),)})

    def fresh() -> dict[str, str]:
        versions.code_version.cache_clear()
        return versions.code_versions()

    try:
        before = fresh()
        path = schemas / "manifest.schema.json"
        path.write_text(path.read_text().replace('"type"', '"type" ', 1))
        after = fresh()
    finally:
        monkeypatch.undo()
        versions.code_version.cache_clear()
    assert {s for s in before if before[s] != after[s]} == {"release"}


def test_code_versions_are_remembered_until_what_made_them_changes(monkeypatch, tmp_path):
    """The versions (~2 s of parsing) are read back from the cache file while every module, package listing and
    data file they came from is unchanged; an edited module or a new module in a listed package recomputes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = versions.code_versions()
    assert versions.cache_file().is_relative_to(tmp_path) and versions.cache_file().is_file()

    def parse_nothing(stage):
        raise AssertionError("parsed although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(versions, "code_version", parse_nothing)
        assert versions.code_versions() == first  # from the cache file
        real_expand = versions._expand
        m.setattr(versions, "_expand", lambda name: real_expand(name) + (["pipeline.release.new"]
                                                                          if name == "pipeline.release" else []))
        with pytest.raises(AssertionError, match="parsed although"):
            versions.code_versions()  # a module appeared in the release package: computed again

    def edit(name, text):
        return text + "\n\nEXTRA = 1\n" if name == "pipeline.release.writer" else text

    edited = _versions_with(monkeypatch, edit)
    assert {s for s in first if first[s] != edited[s]} == {"release"}
    assert versions.code_versions() == first  # the real sources again: computed again, not the edited ones


def test_cached_versions_are_stale_once_a_missing_imported_module_appears(monkeypatch, tmp_path):
    """A module imported (lazily) before its file exists is no part of a version; once the file appears, a version
    follows it, so the versions remembered without it must be computed again (a checkout that gained the file)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real_path = versions.module_path
    appeared: set[str] = set()
    monkeypatch.setattr(versions, "module_path", lambda name: (
        real_path("pipeline.atomic") if name in appeared else real_path(name)))
    name = "pipeline.release.geoparquet.write_index"  # an imported attribute: no module of its own
    versions.code_versions()
    assert name in json.loads(versions.cache_file().read_text())["inputs"]["absent"]

    def parse_nothing(stage):
        raise AssertionError("parsed although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(versions, "code_version", parse_nothing)
        versions.code_versions()  # from the cache file
        appeared.add(name)
        with pytest.raises(AssertionError, match="parsed although"):
            versions.code_versions()
