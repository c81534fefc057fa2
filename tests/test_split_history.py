"""Splits that stay valid across releases (issue 15, item 3) and regions that are one leakage group:
class-aware placement of new images, and validate telling what the frozen history makes unfixable (a named
warning, exit 0) from what a build introduced (an error)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from pipeline.dataset.history import previous_maps
from pipeline.dataset.splits.leakage import leakage_groups
from pipeline.dataset.splits.trials import split_dataset, split_region
from pipeline.release.validate.audit import check_split_audit
from pipeline.release.validate.report import validate_report
from tests.test_validate import ROOT, build_release, load_manifest, rewrite_label, write_listed

CRS = "EPSG:32614"


def _image(n: int, *, water: bool = False, x0: float = 620000.0) -> dict:
    cp = {str(c): (100 if c in (2, 3, 5, 8) else 0) for c in range(1, 9)}
    if water:
        cp["6"] = 50
    x = x0 + n * 600.0
    return {"id": f"r_{n}", "image": f"r/images/r_{n}.tif", "region": "r", "source": "s",
            "source_scene_id": f"scene{n}", "tile": "r000_c000",
            "class_pixels": cp, "crs": CRS, "bounds": [x, 3350000.0, x + 512.0, 3350512.0]}


def _manifest(images: list[dict], previous: str | None = None) -> dict:
    m: dict = {"images": images, "created_with": {"split": {"ratios": [6, 1, 3], "trials": 50}}}
    if previous:
        m["previous_release"] = previous
    return m


def _audit(images: list[dict], held: set[str]) -> tuple[list[str], list[str]]:
    out: list[str] = []
    warnings: list[str] = []
    check_split_audit(_manifest(images, "v1" if held else None), images, out, warnings, held=held)
    return out, warnings


def test_reproduction_new_water_image_goes_to_train_and_validates():
    v1 = [_image(n) for n in range(1, 7)]
    assignment, _ = split_dataset(v1, trials=200, seed=42)
    assert sorted(assignment.values()).count("train") == 4 and "val" not in assignment.values()  # (4, 0, 2)
    for im in v1:
        im["split"] = assignment[im["id"]]
    previous, _ = previous_maps({"images": v1})
    v2 = [dict(im) for im in v1] + [_image(7, water=True)]
    assignment2, infos = split_dataset(v2, trials=200, seed=42, previous=previous)
    assert assignment2["r_7"] == "train"  # the quota alone (largest shortfall) would send it to val
    assert all(assignment2[im["id"]] == im["split"] for im in v1)  # released images never move
    assert infos[0]["missing_in_train"] == []
    for im in v2:
        im["split"] = assignment2[im["id"]]
    held = {im["id"] for im in v1}
    assert _audit(v2, held) == ([], [])
    # what the build did before (the new image in val) is an error this build introduced, not history
    v2_old = [dict(im, split="val") if im["id"] == "r_7" else im for im in v2]
    out, warnings = _audit(v2_old, held)
    assert out == ["manifest.json: region r: class 6 (water) has pixels in the region but none in train"]
    assert warnings == []


def test_class_only_in_images_frozen_in_val_or_test_is_a_named_warning():
    images = [_image(n) for n in range(1, 7)]
    for im, split in zip(images, ("train", "train", "train", "train", "test", "test")):
        im["split"] = split
    images[4]["class_pixels"]["6"] = 40  # water only in a test image released by v1
    held = {im["id"] for im in images}
    out, warnings = _audit(images, held)
    assert out == []
    assert warnings == ["manifest.json: region r: class 6 (water) has pixels in the region but none in train "
                        "[class-frozen-out-of-train: every image with it (r_5) is held in val/test by the previous "
                        "release]"]
    # the same split built from scratch (nothing held) is an error
    out, warnings = _audit(images, set())
    assert len(out) == 1 and warnings == []


def test_single_leakage_group_goes_to_train_with_a_named_warning():
    a, b = _image(1), _image(2)
    b["bounds"] = list(a["bounds"])  # two overlapping images: one group
    b["class_pixels"]["6"] = 30
    groups = leakage_groups([a, b])
    assert groups == {"r_1": "r_1", "r_2": "r_1"}
    assignment, info = split_region([a, b], seed=1, region="r", groups=groups)
    assert assignment == {"r_1": "train", "r_2": "train"}
    assert info["warnings"][0].startswith("single-leakage-group: all 2 images of region r overlap")
    five = [_image(n) for n in range(1, 6)]
    for im in five[1:]:
        im["bounds"] = list(five[0]["bounds"])
    assignment, info = split_region(five, seed=1, region="r", groups=leakage_groups(five))
    assert set(assignment.values()) == {"train"} and info["warnings"]
    for im in five:
        im["split"] = "train"
    out, warnings = _audit(five, set())
    assert out == [] and len(warnings) == 1 and "[single-leakage-group: all 5 images overlap" in warnings[0]
    # the split counts of a region of five separate images are still an error
    apart = [dict(_image(n), split="train") for n in range(1, 6)]
    out, warnings = _audit(apart, set())
    assert out and warnings == []


def test_validate_cli_prints_warnings_and_exits_0(tmp_path):
    root = build_release(tmp_path / "rel")
    m = load_manifest(root)
    austin = [r for r in m["images"] if r["region"] == "austin"]
    test_img = next(r for r in austin if r["split"] == "test")
    for r in austin:  # water (6) only in the test image
        label = np.full((64, 64), 5 if r is not test_img else 6, np.uint8)
        rewrite_label(root, r["id"], label)
    m = load_manifest(root)
    m["previous_release"] = "v0"
    changes = {"release": m["release"], "previous_release": "v0", "added": [], "split_moves": []}
    write_listed(root, m, "stats/changes.json", json.dumps(changes))
    report = validate_report(root)
    assert report["valid"] and report["problems"] == []
    assert len(report["warnings"]) == 1 and "class-frozen-out-of-train" in report["warnings"][0]
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("warning: manifest.json: region austin: class 6 (water)")
    assert lines[-1] == f"valid: {root} (6 images, 1 warning)"
    # the same split, but the test image is new in this release: an error, exit 1
    changes["added"] = [{"id": test_img["id"], "key": "x"}]
    write_listed(root, m, "stats/changes.json", json.dumps(changes))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "manifest.json: region austin: class 6 (water) has pixels in the region but none in train" in proc.stdout


def _history_manifest(tmp_path, images):
    from pipeline.atomic import write_json
    from pipeline.dataset.history import manifest_digest

    folder = tmp_path / "v1"
    write_json(folder / "manifest.json", {"release": "v1", "images": images})
    return folder, manifest_digest(folder)


def test_history_record_gives_the_manifest_maps_and_is_read_instead_of_it(tmp_path):
    from pipeline.dataset.history import release_history, remember_release

    images = [{"id": "a_1", "split": "train", "source": "s", "source_scene_id": "x-1", "tile": "t0"},
              {"id": "a_2", "split": "test", "key": "legacy-key"}]
    folder, digest = _history_manifest(tmp_path, images)
    splits, ids = previous_maps({"images": images})
    history = tmp_path / "history"
    assert release_history(folder, digest, history) == ("v1", splits, ids, {})  # from the manifest, record left
    assert (history / f"{digest}.json").is_file()
    (folder / "manifest.json").write_text("{}")  # the record answers now, not the (here spoilt) manifest
    assert release_history(folder, digest, history) == ("v1", splits, ids, {})
    for unusable in ('{"images": {"k": ["only-one"]}, "retired": {}}',  # made again from the manifest
                     '{"release": "v1", "images": {}}'):  # written before lineages: no retired images
        (history / f"{digest}.json").write_text(unusable)
        folder, digest2 = _history_manifest(tmp_path, images)
        assert digest2 == digest and release_history(folder, digest, history) == ("v1", splits, ids, {})
    other = remember_release(tmp_path / "h2", digest, {"release": "v1", "images": images})
    assert json.loads(other.read_text()) == json.loads((history / f"{digest}.json").read_text())


def test_history_without_a_record_checks_the_manifest_digest(tmp_path):
    import pytest

    from pipeline.dataset.history import release_history
    from pipeline.errors import BuildError

    folder, digest = _history_manifest(tmp_path, [{"id": "a_1", "split": "val", "key": "k1"}])
    (folder / "manifest.json").write_text('{"release": "v1", "images": []}')  # changed after planning
    with pytest.raises(BuildError, match="changed while this build ran"):
        release_history(folder, digest, tmp_path / "history")
