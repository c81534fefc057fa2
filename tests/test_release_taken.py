"""A release name is built once (tasks.taken): building an existing release with other settings is refused.

Before, ``luigi --module pipeline BuildRelease --PipelineConfig-seed 7`` (or with a source added to
``sources.yaml``, new completed annotations, after a code upgrade) on a data folder holding that release ran
nothing and reported ``1 already done`` and the release, as if it had been made from what was asked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import luigi
import luigi.configuration

from tasks.taken import differences, taken_problem
from tests.helpers_build import (
    DEMO_SOURCES,
    ROOT,
    SPLIT_TRIALS,
    luigi_cmd,
    pipeline_env,
    reference_build,
    reference_sources,
    release_dir,
    run_luigi,
)

PARAMS = {
    "release": "v1", "seed": "42", "tile_size": "1024", "target_gsds": "[0.3, 0.5]", "viewer": "True",
    "sources": json.dumps([["demo", "aaa", "bbb"], ["xbd", "ccc", "ddd"]]),
    "codes": json.dumps({"prepare": "p1", "tile": "t1", "label": "l1"}), "code_release": "r1",
    "annotation_index": "", "previous": "", "previous_digest": "none",
}


def test_differences_name_each_change_in_words():
    now = {**PARAMS, "seed": "7", "tile_size": "512",
           "sources": json.dumps([["demo", "aaa", "bbb2"], ["spacenet", "eee", "fff"]]),
           "codes": json.dumps({"prepare": "p1", "tile": "t2", "label": "l2"}), "code_release": "r2",
           "annotation_index": "idx", "previous": "v0"}
    assert differences(PARAMS, now) == [
        "seed 42 (now 7)", "tile_size 1024 (now 512)", "source 'spacenet' added", "source 'xbd' left out",
        "source 'demo' changed (its sources.yaml entry, its files, the limits on input or the fetch and catalog code)",
        "the code or library versions of the label, tile, release stages", "the completed annotations",
        "the previous release none (now v0)",
    ]
    assert differences(PARAMS, {**PARAMS, "previous_digest": "x"}) == ["the manifest of the previous release none"]
    assert differences({**PARAMS, "other": "1"}, {**PARAMS, "other": "2"}) == ["other"]
    assert differences(PARAMS, {**PARAMS, "added_to_the_code": "1"}) == []  # the code versions tell that
    assert differences(PARAMS, {**PARAMS, "seed": "7"}, now="this worker:") == ["seed 42 (this worker: 7)"]
    assert differences(PARAMS, dict(PARAMS)) == []


def test_taken_problem_only_for_a_release_recorded_with_other_parameters(tmp_path):
    folder = tmp_path / "v1"
    assert taken_problem("v1", folder, PARAMS) is None  # no release
    folder.mkdir()
    # written before the parameters were recorded: what created_with says of them is compared
    legacy = {"seed": 42, "tile_size": 1024, "target_gsds": [0.3, 0.5], "split": {"trials": 1000},
              "source_digests": {"xbd": {"raw": "ccc", "catalog": "ddd"}, "demo": {"raw": "aaa", "catalog": "bbb"}},
              "code_versions": {"prepare": "p1", "tile": "t1", "label": "l1", "release": "r1"}}
    (folder / "manifest.json").write_text(json.dumps({"created_with": legacy}))
    assert taken_problem("v1", folder, {**PARAMS, "split_trials": "1000"}) is None  # same values, other forms
    assert "built with other settings: seed 42 (now 7); split_trials 1000 (now 200); the code or library versions " \
           "of the tile stage. " in taken_problem("v1", folder, {**PARAMS, "seed": "7", "split_trials": "200",
                                                                "codes": PARAMS["codes"].replace("t1", "t2")})
    (folder / "manifest.json").write_text(json.dumps({"created_with": {"build_parameters": PARAMS}}))
    assert taken_problem("v1", folder, dict(PARAMS)) is None
    problem = taken_problem("v1", folder, {**PARAMS, "seed": "7"})
    assert problem is not None and problem.startswith(f"release v1 exists ({folder}) and was built with other "
                                                      "settings: seed 42 (now 7). ")
    assert "--PipelineConfig-release <new name>" in problem
    (folder / "manifest.json").write_text(json.dumps({"created_with": {"build_parameters": {**PARAMS,
                                                                                          "viewer": "False"}}}))
    assert "other settings: viewer False (now True) (python -m pipeline browse <release folder> adds the browser " \
           "to a release without one). " in taken_problem("v1", folder, PARAMS)


def test_building_an_existing_release_with_other_settings_is_refused_in_one_line(tmp_path_factory, tmp_path):
    data, sources = reference_build(tmp_path_factory), reference_sources(tmp_path_factory)
    manifest = release_dir(data) / "manifest.json"
    before = manifest.read_bytes()
    recorded = json.loads(before)["created_with"]["build_parameters"]
    assert recorded["release"] == "test" and recorded["seed"] == "42"

    same = run_luigi(luigi_cmd(data, sources))  # the same settings: nothing to do, as before
    assert same.returncode == 0 and "0 tasks ran" in same.stdout and "1 already done" in same.stdout, same.stderr

    other = run_luigi(luigi_cmd(data, sources, "--PipelineConfig-seed", "7", "--PipelineConfig-tile-size", "512"))
    out = other.stdout + other.stderr
    assert other.returncode != 0 and "Traceback" not in out, out[-2000:]
    assert (f"ERROR: cannot build: release test exists ({release_dir(data)}) and was built with other settings: "
            "seed 42 (now 7); tile_size 1024 (now 512). ") in out, out[-2000:]
    assert "already done" not in out  # no build summary claiming the release

    added = tmp_path / "sources.yaml"
    added.write_text(sources.read_text() + "  - name: more\n    kind: demo\n    license: CC0-1.0\n"
                     "    attribution: test\n    options: {seed: 8, size: small}\n")
    grown = run_luigi(luigi_cmd(data, added))
    assert grown.returncode != 0 and "other settings: source 'more' added. " in grown.stdout + grown.stderr

    plan = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--PipelineConfig-data-dir", str(data),
                           "--PipelineConfig-sources-file", str(sources), "--PipelineConfig-release", "test",
                           "--PipelineConfig-split-trials", "200", "--PipelineConfig-seed", "7"],
                          cwd=ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=120)
    assert plan.returncode == 1 and plan.stdout.startswith("plan: release test exists"), plan.stdout + plan.stderr
    assert manifest.read_bytes() == before


def test_a_release_another_build_made_meanwhile_is_kept(tmp_path):
    """Two builds of one release name both pass the check at the root when neither has finished: the one that
    finishes second used to remove the first one's release folder and put its own in place (and any folder in
    the way, release or not, was removed). Now the rename never replaces a folder: the second build keeps what is
    there, succeeds when it was made with its settings, and fails naming the difference otherwise."""
    from pipeline.errors import ReleaseTaken
    from tasks import BuildRelease

    cfg = luigi.configuration.get_config()
    (tmp_path / "sources.yaml").write_text(DEMO_SOURCES)
    for key, value in (("data_dir", tmp_path / "data"), ("sources_file", tmp_path / "sources.yaml"),
                       ("release", "meanwhile"), ("split_trials", SPLIT_TRIALS)):
        cfg.set("PipelineConfig", key, str(value))
    target = tmp_path / "data" / "releases" / "meanwhile"
    assert luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING")
    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(target, same)
    shutil.copytree(target, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created_with"]["build_parameters"]["seed"] = "7"
    (other / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    failures: list[Exception] = []
    placed: list[Path] = []

    @BuildRelease.event_handler(luigi.Event.START)
    def _another_build_finishes_first(task):
        shutil.copytree(placed[-1], target)

    @BuildRelease.event_handler(luigi.Event.FAILURE)
    def _failed(task, exc):
        failures.append(exc)

    try:
        for folder, why in ((other, f"release meanwhile exists ({target}) and was built with other settings: seed 7 "
                                    "(now 42). "), (same, None),
                            (tmp_path / "junk", f"{target} is no release (no readable manifest.json): move it away")):
            shutil.rmtree(target)
            placed.append(folder)
            failures.clear()
            assert luigi.build([BuildRelease()], local_scheduler=True, workers=1, log_level="WARNING") is (not why)
            kept = {p.relative_to(target) for p in target.rglob("*")}
            assert kept == {p.relative_to(folder) for p in folder.rglob("*")}, folder  # untouched
            if why:
                assert len(failures) == 1 and isinstance(failures[0], ReleaseTaken), failures
                assert str(failures[0]).startswith(f"another build made {target} while this one ran; this build's "
                                                   f"release is dropped: {why}"), failures
    finally:
        BuildRelease.remove_event_handler(luigi.Event.START, _another_build_finishes_first)
        BuildRelease.remove_event_handler(luigi.Event.FAILURE, _failed)
        for key in ("data_dir", "sources_file", "release", "split_trials"):
            cfg.remove_option("PipelineConfig", key)
