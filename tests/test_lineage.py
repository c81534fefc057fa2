"""Release lineages: an image keeps its id and split across every release that continues another, even when a
release leaves it out, and an id never names another image anywhere in the lineage.

Reproduction (before lineages): v1 ships the sources demo and extra (whose images are numbered after demo's
in their regions), v2 demo only, v3 demo and other (a source with tiles in extra's regions), v4 demo and extra
again.  v3 continued v2 only, so other's images got the ids that named extra's images in v1 (``austin_2``
named two images), and in v4 extra's images came back as new images: numbered after v3's ids and split
afresh.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from oem_demo.generate import generate_demo
from pipeline.dataset.history import release_history, release_maps, remember_release, retired_images
from pipeline.release.changes import changes_markdown, release_changes
from pipeline.release.validate.consistency import check_consistency
from pipeline.release.validate.report import validate_report
from tests.helpers_build import DEMO_SOURCES
from tests.test_incremental_release import _build, _manifest


def _source(name: str, folder: Path) -> str:
    return f"""
  - name: {name}
    kind: inria
    location: {folder}
    license: CC BY 4.0
    attribution: demo source {name}
"""


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    base = tmp_path_factory.mktemp("lineage")
    generate_demo(base / "upstream-extra", seed=11, size="small")
    generate_demo(base / "upstream-other", seed=13, size="small")
    extra = _source("extra", base / "upstream-extra" / "inria")
    other = _source("other", base / "upstream-other" / "inria")
    for release, added in (("v1", extra), ("v2", ""), ("v3", other), ("v4", extra)):
        (base / "sources.yaml").write_text(DEMO_SOURCES + added)
        ok, _ = _build(base, release)
        assert ok, f"{release} failed"
    rels = base / "data" / "releases"
    return {v: rels / v for v in ("v1", "v2", "v3", "v4")}


def _images(folder: Path, source: str | None = None) -> dict[str, dict]:
    return {r["key"]: r for r in _manifest(folder)["images"] if source in (None, r["source"])}


def test_a_release_remembers_the_images_it_leaves_out(lineage):
    extra = _images(lineage["v1"], "extra")
    assert extra and not _images(lineage["v2"], "extra")
    retired = _manifest(lineage["v2"])["retired"]
    assert retired == [{"key": k, "id": extra[k]["id"], "split": extra[k]["split"], "last_release": "v1",
                        "crs": extra[k]["crs"], "bounds": extra[k]["bounds"]}  # its place: same_place_as
                       for k in sorted(extra)]


def test_an_image_that_comes_back_gets_its_id_and_split_back(lineage):
    before, back = _images(lineage["v1"], "extra"), _images(lineage["v4"], "extra")
    assert set(back) == set(before)
    assert {k: (r["id"], r["split"]) for k, r in back.items()} == {k: (r["id"], r["split"]) for k, r in before.items()}
    changes = json.loads((lineage["v4"] / "stats" / "changes.json").read_text())
    assert changes["summary"]["split_moves"] == changes["summary"]["renamed"] == 0
    assert {a["key"]: a.get("returned_from") for a in changes["added"]} == {k: "v1" for k in before}
    assert "back from v1" in (lineage["v4"] / "stats" / "changes.md").read_text()
    other = _images(lineage["v3"], "other")  # retired by v4, remembered as last shipped by v3
    assert {r["key"]: r["last_release"] for r in _manifest(lineage["v4"])["retired"]} == {k: "v3" for k in other}


def test_an_id_never_names_another_image_in_the_lineage(lineage):
    other, extra = _images(lineage["v3"], "other"), _images(lineage["v1"], "extra")
    assert {r["region"] for r in other.values()} & {r["region"] for r in extra.values()}  # numbered in extra's
    named: dict[str, set[str]] = {}
    for folder in lineage.values():
        for key, r in _images(folder).items():
            named.setdefault(r["id"], set()).add(key)
    assert {i: keys for i, keys in named.items() if len(keys) > 1} == {}
    assert {r["key"]: r["last_release"] for r in _manifest(lineage["v3"])["retired"]} == {k: "v1" for k in extra}


def test_every_release_of_the_lineage_validates(lineage):
    for folder in lineage.values():
        assert validate_report(folder)["problems"] == [], folder


def test_retired_images_keep_the_lineage():
    splits, ids = {"a": "train", "b": "test"}, {"a": "r_1", "b": "r_2"}
    retired = {"c": ["r_3", "val", "v1"], "b": ["r_9", "val", "v0"]}  # the previous release's own (b came back)
    assert retired_images("v2", splits, ids, retired, keys={"a", "d"}) == [
        {"key": "b", "id": "r_2", "split": "test", "last_release": "v2"},
        {"key": "c", "id": "r_3", "split": "val", "last_release": "v1"},
    ]
    assert retired_images("v2", splits, ids, retired, keys={"a", "b", "c"}) == []


def test_the_history_record_carries_the_retired_images(tmp_path):
    manifest = {"release": "v2", "images": [{"id": "r_1", "split": "train", "key": "a"}],
                "retired": [{"key": "c", "id": "r_3", "split": "val", "last_release": "v1"}]}
    folder = tmp_path / "v2"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    from pipeline.dataset.history import manifest_digest

    digest = manifest_digest(folder)
    assert release_maps(manifest)["retired"] == {"c": ["r_3", "val", "v1"]}
    remember_release(tmp_path / "history", digest, manifest)
    (folder / "manifest.json").write_text("{}")  # the record answers
    assert release_history(folder, digest, tmp_path / "history") == (
        "v2", {"a": "train"}, {"a": "r_1"}, {"c": ["r_3", "val", "v1"]})


def test_changes_compare_an_image_that_comes_back_with_what_it_was():
    previous = {"release": "v2", "images": [],
                "retired": [{"key": "a", "id": "r_1", "split": "train", "last_release": "v1"}]}
    current = {"release": "v3", "images": [{"key": "a", "id": "r_4", "region": "r", "split": "test"}]}
    changes = release_changes(previous, current)
    assert changes["added"] == [{"key": "a", "id": "r_4", "region": "r", "split": "test", "returned_from": "v1"}]
    assert changes["renamed"] == [{"key": "a", "previous_id": "r_1", "id": "r_4"}]
    assert changes["split_moves"] == [{"key": "a", "id": "r_4", "previous": "train", "current": "test"}]
    assert changes["summary"]["unchanged"] == 0
    assert "WARNING: images that moved between splits" in changes_markdown(changes)


def test_validate_names_an_id_that_would_name_two_images():
    records = [{"id": "r_1", "key": "a", "region": "r", "split": "train"}]
    manifest = {"images": records, "retired": [
        {"key": "b", "id": "r_1", "split": "val", "last_release": "v1"},
        {"key": "c", "id": "r_2", "split": "val", "last_release": "v1"},
        {"key": "d", "id": "r_2", "split": "test", "last_release": "v1"},
        {"key": "a", "id": "r_5", "split": "train", "last_release": "v1"},
    ]}
    out: list[str] = []
    check_consistency(manifest, records, out)
    assert [line for line in out if "retired" in line] == [
        "manifest.json: retired[0] (b) has id r_1, which names a released image",
        "manifest.json: retired[1] (c) has id r_2, which 1 other retired image also had",
        "manifest.json: retired[2] (d) has id r_2, which 1 other retired image also had",
        "manifest.json: retired[3] (a) is also a released image",
    ]
