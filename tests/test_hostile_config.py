"""Issue 16 at the level of the whole command line: a hostile ``sources.yaml`` and a release that would be
empty.  Each build runs ``luigi --module pipeline BuildRelease`` in a measured subprocess (a virtual memory
cap guards the machine: an alias bomb used to grow past 3 GB).

* An alias bomb, duplicate keys and deep nesting in ``sources.yaml`` are refused at once, naming the file,
  with a non-zero exit and nothing written, in bounded time and memory.
* A build with no enabled source, or whose every scene is rejected, refuses to write an empty release:
  non-zero exit, a message saying why (``EmptyRelease``), no release folder.
* Each refusal before any task runs is one line, ``ERROR: cannot build: <file or setting>: <cause>``, not a
  traceback through Luigi's command line (:func:`tasks.summary.install`).
* A release name that is not one folder name under ``releases/`` is refused at once, naming the rule, and the
  releases already there are untouched (``--release .`` used to replace the whole ``releases/`` folder,
  ``../x`` to write beside it).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.dataset.ids import RELEASE_NAME, release_name_problem
from tests.helpers_build import ROOT, local_sources, luigi_cmd, release_dir, run_measured, worker_cmd
from tests.test_bad_input import _scene

GUARD = 8 << 30  # address space of the build process (a normal build needs well under 2 GiB)
MAX_RSS = 1 << 30
MAX_WALL = 120

ENTRY = """  - name: folder
    kind: local
    location: {location}
    license: CC BY 4.0
    attribution: someone
"""


def _bomb() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nsources:\n" + ENTRY.format(location="/data/x") + "    options: {sha256: {x: *i}}\n"


CASES = {
    "alias_bomb": (_bomb(), "anchors (&a) are not allowed"),
    "duplicate_key": ("sources:\n" + ENTRY.format(location="/data/a") + "    location: /data/b\n",
                      "duplicate key 'location' in source 'folder'"),
    "deep": ("sources: " + "[" * 30_000 + "]" * 30_000 + "\n", "nested deeper than 16 levels"),
}


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile_config")

    def run(case: str):
        path = base / f"{case}.yaml"
        path.write_text(CASES[case][0])
        data = base / f"data-{case}"
        return path, data, run_measured(luigi_cmd(data, path), log=base / f"{case}.log", timeout=MAX_WALL,
                                        max_address_space=GUARD)

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        return dict(zip(CASES, pool.map(run, CASES)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_sources_file_is_refused_at_once(config_runs, case):
    path, data, (code, out, rss, wall) = config_runs[case]
    assert code != 0, out[-2000:]
    assert f"{path.name}:" in out and CASES[case][1] in out, out[-2000:]
    assert "ERROR: cannot build: " in out and "Traceback" not in out, out[-2000:]  # one line, not Luigi's internals
    assert not data.exists(), "a refused sources file wrote into its data folder"
    assert rss < MAX_RSS and wall < MAX_WALL, (rss, wall)


def test_a_worker_of_a_central_build_refuses_a_bad_sources_file_in_one_line(tmp_path):
    """``python -m tasks.worker`` (one worker of a build on luigid) refuses as the ``luigi`` command does, before
    it asks any scheduler for work."""
    path = tmp_path / "sources.yaml"
    path.write_text(CASES["duplicate_key"][0])
    code, out, _, _ = run_measured(worker_cmd(tmp_path / "data", path), log=tmp_path / "worker.log",
                                   timeout=MAX_WALL, max_address_space=GUARD)
    assert code == 1 and out.startswith("ERROR: cannot build: sources.yaml: ") and CASES["duplicate_key"][1] in out, \
        out[-2000:]
    assert "Traceback" not in out and not (tmp_path / "data").exists(), out[-2000:]


def test_no_enabled_source_is_no_release(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n" + ENTRY.format(location=tmp_path / "nowhere") + "    enabled: false\n")
    code, out, rss, wall = run_measured(luigi_cmd(tmp_path / "data", sources), log=tmp_path / "build.log",
                                        max_address_space=GUARD)
    assert code != 0 and "would hold no image: no enabled source" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert not release_dir(tmp_path / "data").exists()


def test_every_scene_rejected_is_no_release(tmp_path):
    folder = tmp_path / "folder"
    _scene(folder, "blank", 0, label=False, image=np.full((3, 1100, 1100), 7, np.uint8))
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n" + ENTRY.format(location=folder))
    code, out, rss, wall = run_measured(luigi_cmd(tmp_path / "data", sources), log=tmp_path / "build.log",
                                        max_address_space=GUARD)
    assert code != 0, out[-3000:]
    assert "would hold no image: no tile passed from 1 source(s): 1 rejects" in out, out[-3000:]
    assert "folder/blank.tif: blank: every valid pixel is (7, 7, 7)" in out, out[-3000:]
    assert not release_dir(tmp_path / "data").exists()
    assert list((tmp_path / "data" / "catalog").glob("folder-*.json"))  # the build ran up to the release


BAD_RELEASE_NAMES = [".", "..", "../escaped", "v2/", "sub/v3", ".hidden", "v1 final", "x" * 101]


def test_release_names_are_one_plain_folder_name():
    schema = json.loads((ROOT / "pipeline" / "schemas" / "manifest.schema.json").read_text())
    assert schema["properties"]["release"]["pattern"] == f"^{RELEASE_NAME.pattern}$"  # one rule, two readers
    for name in ["v0.1.0", "v0.10.0", "2026-12", "oem_v1.0.0+build.5", "r1", "x" * 100]:
        assert release_name_problem(name) is None, name
    for name in BAD_RELEASE_NAMES + ["", "-v1", "v1\\x", "v1\n"]:
        assert release_name_problem(name), name


def test_a_bad_release_name_is_refused_and_earlier_releases_are_kept(tmp_path):
    folder = tmp_path / "folder"
    _scene(folder, "a", 0)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})

    def run(i_name):
        i, name = i_name
        data = tmp_path / f"data{i}"
        earlier = data / "releases" / "v1"
        earlier.mkdir(parents=True)
        (earlier / "manifest.json").write_text("{}")
        result = run_measured(luigi_cmd(data, sources, release=name), log=tmp_path / f"{i}.log", timeout=MAX_WALL,
                              max_address_space=GUARD)
        return data, result

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(run, enumerate(BAD_RELEASE_NAMES)))
    for name, (data, (code, out, _, _)) in zip(BAD_RELEASE_NAMES, runs):
        assert code != 0, (name, out[-2000:])
        assert f"release name {name!r} is not one folder name under releases/" in out, (name, out[-2000:])
        assert "ERROR: cannot build: " in out and "Traceback" not in out, (name, out[-2000:])
        assert sorted(p.name for p in data.iterdir()) == ["releases"], name  # nothing fetched, nothing written
        assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
            "releases", "releases/v1", "releases/v1/manifest.json"], name


BAD_SETTINGS = [
    (("--PipelineConfig-tile-size", "7"), "tile_size must be an integer from 64 to 8192, not 7"),
    (("--PipelineConfig-target-gsds", "[0.3, 0.1]"), "each of target_gsds must be a number from 0.25 to 0.5, not 0.1"),
    (("--PipelineConfig-max-nodata-fraction", "1.5"), "max_nodata_fraction must be a number from 0 to 1, not 1.5"),
    (("--PipelineConfig-region-min", "80"), "region_min (80) must not be over region_max (70)"),
]


def test_bad_settings_are_refused_before_anything_runs(tmp_path):
    """A processing or dataset setting out of range is refused when the build starts, naming it, with nothing
    written; a tile size of 7 used to tile for hours, a target GSD of 0.1 m to build a release outside the
    benchmark's 0.25-0.5 m, and the others to fail a late task after all the pixel work."""
    from pipeline.params import config_problems

    folder = tmp_path / "folder"
    _scene(folder, "a", 0)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})

    def run(i_case):
        i, (options, _) = i_case
        data = tmp_path / f"data{i}"
        return data, run_measured(luigi_cmd(data, sources, *options), log=tmp_path / f"{i}.log", timeout=MAX_WALL,
                                  max_address_space=GUARD)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(run, enumerate(BAD_SETTINGS)))
    for (options, words), (data, (code, out, _, wall)) in zip(BAD_SETTINGS, runs):
        assert code != 0 and "[PipelineConfig] " + words in out, (options, out[-2000:])
        assert "ERROR: cannot build: " in out and "Traceback" not in out, (options, out[-2000:])
        assert not data.exists() or not any(data.rglob("*.json")), options  # nothing fetched, nothing recorded
        assert wall < 60, (options, wall)
    good = dict(tile_size=1024, target_gsds=(0.3, 0.5), max_nodata_fraction=0.05, split_trials=1000, region_min=50,
                region_max=70, label_every=10, selection_epochs=12, random_fraction=0.5, max_grid_pixels=10**9)
    assert config_problems(**good) == []
    for name, bad in [("split_trials", 0), ("label_every", 0), ("selection_epochs", -1), ("random_fraction", 2),
                      ("target_gsds", ()), ("target_gsds", (0.3, float("nan"))), ("tile_size", 100.5),
                      ("tile_size", True), ("max_grid_pixels", 0)]:
        assert len(config_problems(**{**good, name: bad})) == 1, (name, bad)


def test_a_source_folder_holding_the_data_folder_is_refused(tmp_path):
    """A local source whose folder holds the data folder (``location: .`` run from the imagery folder) or the
    annotation folder is refused at once, naming both; it used to fail every build with "source changed since
    this build was scheduled; run the build again" (the build's own writes changed the folder), however often it
    was run."""
    folder = tmp_path / "imagery"
    _scene(folder, "a", 0)
    sources = local_sources(tmp_path / "sources.yaml", {"folder": folder})
    (tmp_path / "link").symlink_to(folder)
    for data in (folder / "data", tmp_path / "link" / "oem"):
        code, out, _, _ = run_measured(luigi_cmd(data, sources), log=tmp_path / f"{data.name}.log", timeout=MAX_WALL,
                                       max_address_space=GUARD)
        assert code != 0 and f"source 'folder': its folder {folder} holds the data folder" in out, out[-2000:]
        assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "labels"]  # nothing written
    # the annotation folder likewise (its todo/ pre-annotations were read as scenes too)
    code, out, _, _ = run_measured(luigi_cmd(tmp_path / "data", sources, "--PipelineConfig-annotation-dir",
                                             str(folder / "annotation")), log=tmp_path / "ann.log", timeout=MAX_WALL,
                                   max_address_space=GUARD)
    assert code != 0 and f"its folder {folder} holds the annotation folder {folder / 'annotation'}" in out
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "labels"]
