"""validate_release / python -m pipeline validate on tiny real releases built in tmp_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import array_bounds

from pipeline.atomic import write_json
from pipeline.dataset.splits.trials import split_dataset
from pipeline.release.manifest import build_manifest, file_entries, sha256_file, write_split_files, write_uda_files
from pipeline.release.validate.report import main as validate_main
from pipeline.release.validate.report import validate_release

ROOT = Path(__file__).resolve().parents[1]
GSD = 0.5
#: region -> (crs, origin x, origin y, country, country code, continent, lon/lat box)
REGIONS = {
    "austin": ("EPSG:32614", 620000.0, 3350000.0, "United States", "US", "North America",
               [-97.76, 30.26, -97.75, 30.27]),
    "vienna": ("EPSG:32633", 600000.0, 5340000.0, "Austria", "AT", "Europe", [16.36, 48.2, 16.37, 48.21]),
}
DEFAULT_FILES = ("stats/summary.json", "test.txt", "train.txt", "val.txt")


def write_tif(path: Path, array: np.ndarray, crs: str, transform) -> None:
    """Write a GeoTIFF (bands first) with rasterio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = array if array.ndim == 3 else array[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform) as ds:
        ds.write(arr)


def class_counts(label: np.ndarray) -> tuple[dict[str, int], int]:
    hist = np.bincount(label.ravel(), minlength=256)
    return {str(c): int(hist[c]) for c in range(1, 9)}, int(hist[0])


def build_release(root: Path, *, size: int = 64, tiles: int = 3, files: tuple[str, ...] = DEFAULT_FILES) -> Path:
    """A complete, valid release: 2 regions x ``tiles`` tiles of ``size`` px, split files, stats, manifest."""
    root.mkdir(parents=True, exist_ok=True)
    images = []
    for r_idx, (region, (crs, x0, y0, country, cc, continent, lonlat)) in enumerate(sorted(REGIONS.items())):
        for n in range(1, tiles + 1):
            rng = np.random.default_rng(100 * r_idx + n)
            image = rng.integers(0, 256, size=(3, size, size), dtype=np.uint8)
            label = rng.integers(0, 9, size=(size, size), dtype=np.uint8)
            transform = rasterio.Affine(GSD, 0.0, x0 + (n - 1) * size * GSD, 0.0, -GSD, y0)
            rid = f"{region}_{n}"
            rel_img, rel_lab = f"{region}/images/{rid}.tif", f"{region}/labels/{rid}.tif"
            write_tif(root / rel_img, image, crs, transform)
            write_tif(root / rel_lab, label, crs, transform)
            cp, unl = class_counts(label)
            images.append({
                "id": rid, "image": rel_img, "label": rel_lab, "region": region, "country": country,
                "country_code": cc, "continent": continent, "source": "testsrc", "source_kind": "landcover",
                "source_scene_id": f"scene_{region}", "tile": f"r000_c{n - 1:03d}", "license": "CC-BY-4.0",
                "attribution": "Test data", "native_gsd": 0.15, "native_crs": "EPSG:4326", "crs": crs,
                "gsd": GSD, "transform": tuple(transform)[:6], "width": size, "height": size,
                "bounds": array_bounds(size, size, transform), "bounds_lonlat": lonlat,
                "sha256_image": sha256_file(root / rel_img), "sha256_label": sha256_file(root / rel_lab),
                "class_pixels": cp, "unlabelled_pixels": unl,
                "segments": {str(c): c for c in range(1, 9)}, "edge_segments": {str(c): 1 for c in range(1, 9)},
                "segments_total": 36, "acquired": None if n % 2 else "2020-05-01",
            })
    assignment, infos = split_dataset(images, ratios=(6, 1, 3), trials=50, seed=7)
    for img in images:
        img["split"] = assignment[img["id"]]
    write_split_files(root, images)
    write_json(root / "stats" / "summary.json", {"images": len(images)})
    manifest = build_manifest(
        release="test-0.1",
        created_with={"seed": 7, "target_gsds": [0.3, 0.5], "tile_size": size, "max_nodata_fraction": 0.01,
                      "resampling": {"image": "average", "label": "mode"}, "code_version": "test",
                      "fingerprint": "0123456789ab", "split": {"ratios": [6, 1, 3], "trials": 50, "seed": 7}},
        sources=[{"name": "testsrc", "kind": "landcover", "license": "CC-BY-4.0", "attribution": "Test data",
                  "location": "https://example.org/testsrc", "sha256": "ignored"}],
        images=images,
        splits_info=infos,
        files=file_entries(root, files),
    )
    write_json(root / "manifest.json", manifest)
    return root


def load_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def save_manifest(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))


def record(manifest: dict, image_id: str) -> tuple[int, dict]:
    for i, r in enumerate(manifest["images"]):
        if r["id"] == image_id:
            return i, r
    raise KeyError(image_id)


def rewrite_label(root: Path, image_id: str, label: np.ndarray, *, transform=None, crs=None) -> str:
    """Replace a label file and update its sha256 and pixel counts so only the intended defect remains."""
    m = load_manifest(root)
    _, rec = record(m, image_id)
    (root / rec["label"]).unlink()
    write_tif(root / rec["label"], label, crs or rec["crs"], transform or rasterio.Affine(*rec["transform"]))
    rec["sha256_label"] = sha256_file(root / rec["label"])
    if label.dtype == np.uint8:
        rec["class_pixels"], rec["unlabelled_pixels"] = class_counts(label)
    save_manifest(root, m)
    return rec["label"]


def read_label(root: Path, image_id: str) -> np.ndarray:
    _, rec = record(load_manifest(root), image_id)
    with rasterio.open(root / rec["label"]) as ds:
        return ds.read(1)


def split_names(root: Path, split: str) -> list[str]:
    return (root / f"{split}.txt").read_text().splitlines()


def first_in(root: Path, split: str) -> str:
    return split_names(root, split)[0]


def write_listed(root: Path, m: dict, rel: str, text: str) -> None:
    """Write ``rel`` and list it in the manifest ``m`` with its checksum (as a build does), then save ``m``."""
    path = root / rel
    path.write_text(text)
    m["files"] = [e for e in m["files"] if e["path"] != rel] + [
        {"path": rel, "sha256": sha256_file(path), "bytes": path.stat().st_size}]
    save_manifest(root, m)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """Release without split files in ``files`` (so split-file edits give exactly one problem)."""
    return build_release(tmp_path / "rel", files=("stats/summary.json",))


def test_valid_release_has_no_problems(tmp_path):
    root = build_release(tmp_path / "rel")
    assert validate_release(root) == []
    m = load_manifest(root)
    assert len(m["images"]) == 6
    assert [f["path"] for f in m["files"]] == list(DEFAULT_FILES)


def test_flipped_image_byte_gives_exactly_one_sha_line(release):
    m = load_manifest(release)
    _, rec = record(m, "vienna_2")
    path = release / rec["image"]
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    new = sha256_file(path)
    assert validate_release(release) == [
        f"vienna/images/vienna_2.tif: sha256 mismatch (manifest {rec['sha256_image'][:12]}…, file {new[:12]}…)"
    ]


def test_missing_label(release):
    (release / "vienna/labels/vienna_2.tif").unlink()
    assert validate_release(release) == ["vienna/labels/vienna_2.tif: missing"]


def test_image_in_two_splits(release):
    name = first_in(release, "train")
    with open(release / "test.txt", "a") as f:
        f.write(name + "\n")
    assert validate_release(release) == [f"train.txt, test.txt: {name} is in two splits"]


def test_listed_but_not_in_manifest(release):
    with open(release / "val.txt", "a") as f:
        f.write("ghost_1.tif\n")
    assert validate_release(release) == ["val.txt: ghost_1.tif is listed but is not an image of the manifest"]


def test_listed_in_the_wrong_split(release):
    names = split_names(release, "train")
    moved = names[0]
    (release / "train.txt").write_text("".join(n + "\n" for n in names[1:]))
    with open(release / "test.txt", "a") as f:
        f.write(moved + "\n")
    assert validate_release(release) == [f"test.txt: {moved} is listed but its manifest split is 'train'"]


def test_unlisted_image_blank_line_and_bad_name(release):
    names = split_names(release, "test")
    (release / "test.txt").write_text("\n".join(names[1:]) + "\n\naustin/images/austin_1.tif\n")
    problems = validate_release(release)
    blank_no = len(names)  # after len(names) - 1 names comes the blank line
    assert problems == [
        f"test.txt: line {blank_no} is blank",
        f"test.txt: line {blank_no + 1} 'austin/images/austin_1.tif' is not a bare file name",
        f"test.txt: {names[0]} is not listed (its manifest split is 'test')",
    ]


def test_split_file_covered_by_files_entry(tmp_path):
    root = build_release(tmp_path / "rel")
    with open(root / "val.txt", "a") as f:
        f.write("ghost_1.tif\n")
    problems = validate_release(root)
    assert len(problems) == 2
    assert problems[0].startswith("val.txt: sha256 mismatch (manifest ")
    assert problems[1] == "val.txt: ghost_1.tif is listed but is not an image of the manifest"


def test_wrong_schema_version(release):
    m = load_manifest(release)
    m["schema_version"] = "0.9"
    save_manifest(release, m)
    assert validate_release(release) == ["manifest.json: schema_version '0.9' is not supported (expected 1.0)"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_has_not_is_named(release, constant):
    """Python's json reads NaN and Infinity; JSON has no such numbers, and no footprint could be made of them:
    the manifest is refused as not valid JSON, naming the constant."""
    m = load_manifest(release)
    m["images"][0]["bounds"][2] = float(constant.replace("Infinity", "inf"))
    (release / "manifest.json").write_text(json.dumps(m, indent=1))  # the standard library writes the constant
    [problem] = validate_release(release)
    assert problem == f"manifest.json: not valid JSON ({constant} is not a JSON number)"
    # the build reads its manifest the same way: not parsed, so its validation reads the file and names it
    from tasks.release import _read_manifest

    assert _read_manifest(release) is None
    m["images"][0]["bounds"][2] = 2 ** 70  # a huge integer: JSON, read by the fallback
    (release / "manifest.json").write_text(json.dumps(m, indent=1))
    assert _read_manifest(release)["images"][0]["bounds"][2] == 2 ** 70


def test_missing_or_empty_licence(release):
    m = load_manifest(release)
    idx, rec = record(m, "austin_2")
    rec["license"] = ""
    save_manifest(release, m)
    problems = validate_release(release)
    assert len(problems) == 1
    assert problems[0].startswith(f"manifest.json: schema: images[{idx}].license: ''")
    del rec["license"]
    save_manifest(release, m)
    assert validate_release(release) == [f"manifest.json: schema: images[{idx}]: 'license' is a required property"]


def test_label_values_outside_range(release):
    label = read_label(release, "austin_1")
    label[0, 0], label[5, 7], label[9, 9] = 9, 200, 9
    rel = rewrite_label(release, "austin_1", label)
    assert validate_release(release) == [f"{rel}: label values outside 0..8: [9, 200]"]


def test_label_grid_shifted(release):
    _, rec = record(load_manifest(release), "vienna_3")
    t = rec["transform"]
    shifted = rasterio.Affine(t[0], t[1], t[2] + GSD, t[3], t[4], t[5])
    rel = rewrite_label(release, "vienna_3", read_label(release, "vienna_3"), transform=shifted)
    exp_img = "[" + ", ".join(repr(float(v)) for v in t) + "]"
    exp_lab = "[" + ", ".join(repr(float(v)) for v in tuple(shifted)[:6]) + "]"
    assert validate_release(release) == [f"{rel}: grid differs from its image (transform {exp_lab} vs {exp_img})"]


def test_label_crs_and_dtype(release):
    rel = rewrite_label(release, "austin_3", read_label(release, "austin_3").astype(np.float32), crs="EPSG:32615")
    assert validate_release(release) == [
        f"{rel}: dtype float32, expected uint8",
        f"{rel}: grid differs from its image (CRS EPSG:32615 vs EPSG:32614)",
    ]


def test_label_counts_must_match_manifest(release):
    m = load_manifest(release)
    _, rec = record(m, "austin_2")
    rec["class_pixels"]["3"] += 1
    save_manifest(release, m)
    n = rec["class_pixels"]["3"]
    assert validate_release(release) == [
        f"austin/labels/austin_2.tif: pixel counts differ from the manifest (class 3: manifest {n}, file {n - 1})"
    ]


def test_image_shape_differs_from_manifest(release):
    m = load_manifest(release)
    _, rec = record(m, "vienna_1")
    rec["width"] = 63
    save_manifest(release, m)
    assert validate_release(release) == [
        "vienna/images/vienna_1.tif: shape 64x64, expected 63x64 (width/height in manifest)"
    ]


def test_stray_raster_and_duplicate_id(release):
    (release / "austin/images/austin_99.tif").write_bytes((release / "austin/images/austin_1.tif").read_bytes())
    assert validate_release(release) == ["austin/images/austin_99.tif: not in the manifest"]
    (release / "austin/images/austin_99.tif").unlink()
    m = load_manifest(release)
    m["images"].append(dict(m["images"][0]))
    save_manifest(release, m)
    assert f"manifest.json: id {m['images'][0]['id']} is used by 2 images" in validate_release(release)


def test_every_file_is_in_the_manifest_and_none_is_a_link(release, tmp_path):
    """Check 5 covers the whole folder: before, only stray tiles were reported, so a release with any other file
    the manifest does not list (or a link to a file outside, which ``PublishRelease`` would have uploaded) was
    valid.  The browser (``viewer/``) is derived and never listed; split, UDA and zone files are read line by
    line by their own checks."""
    outside = tmp_path / "secret.txt"
    outside.write_text("not for publishing")
    for folder in ("viewer", ".tmp-viewer-x1y2/viewer"):  # the browser, and the folder it is written in
        (release / folder).mkdir(parents=True)
        (release / folder / "index.html").write_text("<html></html>")
    (release / "notes.txt").write_text("hi")
    (release / "stats" / "extra").mkdir()
    (release / "stats" / "extra" / "a.json").write_text("{}")
    (release / "stats" / "leak.csv").symlink_to(outside)
    (release / "austin" / "more").symlink_to(tmp_path)
    assert validate_release(release) == [
        "austin/more: a symbolic link (a release holds regular files only; a link can point outside it)",
        "stats/leak.csv: a symbolic link (a release holds regular files only; a link can point outside it)",
        "notes.txt: not in the manifest",
        "stats/extra/a.json: not in the manifest",
    ]
    for rel in ("notes.txt", "stats/extra/a.json", "stats/leak.csv", "austin/more"):
        (release / rel).unlink()
    assert validate_release(release) == []


def test_missing_or_broken_manifest(tmp_path):
    assert validate_release(tmp_path) == ["manifest.json: missing"]
    (tmp_path / "manifest.json").write_text("{not json")
    problems = validate_release(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("manifest.json: not valid JSON (")


def test_main_in_process(release, capsys):
    assert validate_main([str(release)]) == 0
    assert capsys.readouterr().out == f"valid: {release} (6 images)\n"
    assert validate_main([]) == 2
    assert validate_main([str(release / "nope")]) == 2


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(release):
    ok = _cli("validate", str(release))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"valid: {release} (6 images)\n"
    named = _cli("validate", str(release / "manifest.json"))  # the manifest named instead of its folder
    assert named.returncode == 0 and named.stdout == ok.stdout, named.stderr

    (release / "austin/labels/austin_1.tif").unlink()
    bad = _cli("validate", str(release))
    assert bad.returncode == 1
    assert bad.stdout == "austin/labels/austin_1.tif: missing\n"

    js = _cli("validate", str(release), "--json")
    assert js.returncode == 1
    report = json.loads(js.stdout)
    assert report["valid"] is False
    assert report["problems"] == ["austin/labels/austin_1.tif: missing"]
    assert report["images"] == 6 and report["release"] == "test-0.1"

    assert _cli("validate").returncode == 2
    assert _cli("frobnicate").returncode == 2


def test_footprints_overlapping_across_splits(release):
    m = load_manifest(release)
    a = next(r for r in m["images"] if r["region"] == "austin" and r["split"] == "train")
    b = next(r for r in m["images"] if r["region"] == "austin" and r["split"] != "train")
    b["bounds"] = list(a["bounds"])
    save_manifest(release, m)
    first, second = sorted((a, b), key=lambda r: int(r["id"].rsplit("_", 1)[1]))
    assert validate_release(release) == [
        f"{first['image']}, {second['image']}: footprints overlap (100.0% of the smaller) but splits differ "
        f"({first['split']} vs {second['split']})"
    ]


def _with_uda(root: Path) -> dict:
    from pipeline.dataset.splits.uda import uda_section

    m = load_manifest(root)
    m["uda"] = uda_section(m["images"], seed=7)
    write_uda_files(root, m["images"], m["uda"])
    save_manifest(root, m)
    return m


def test_uda_files_must_agree_with_the_manifest(release):
    m = _with_uda(release)
    assert validate_release(release) == []
    assert sorted(p.name for p in (release / "uda").iterdir()) == [
        "continent_europe_source.txt", "continent_europe_target.txt", "continent_north_america_source.txt",
        "continent_north_america_target.txt", "regional_source.txt", "regional_target.txt"]
    src = release / "uda" / "regional_source.txt"
    names = src.read_text().splitlines()
    src.write_text("".join(n + "\n" for n in names[1:]) + "ghost_1.tif\n")
    assert validate_release(release) == [
        f"uda/regional_source.txt: differs from the manifest's uda section (missing {names[0]}; extra ghost_1.tif)"]
    src.unlink()
    assert validate_release(release) == ["uda/regional_source.txt: missing"]
    write_uda_files(release, m["images"], m["uda"])
    (release / "uda" / "old.txt").write_text("austin_1.tif\n")
    assert validate_release(release) == ["uda/old.txt: not implied by the manifest's uda section"]


def test_uda_continent_section_must_match_the_images(release):
    m = _with_uda(release)
    m["uda"]["continent"]["Europe"]["source"], m["uda"]["continent"]["Europe"]["target"] = (
        m["uda"]["continent"]["Europe"]["target"], m["uda"]["continent"]["Europe"]["source"])
    save_manifest(release, m)
    write_uda_files(release, m["images"], m["uda"])  # the files follow the (wrong) section
    assert validate_release(release) == [
        "manifest.json: uda.continent differs from the continent-wise split of the images' regions"]


def test_changes_report_must_not_move_released_images(release):
    from pipeline.release.changes import release_changes

    m = load_manifest(release)
    previous = json.loads(json.dumps(m))
    previous["release"] = "test-0.0"
    moved = next(r for r in previous["images"] if r["split"] == "test")
    moved["split"] = "train"
    m["previous_release"] = "test-0.0"
    write_listed(release, m, "stats/changes.json", json.dumps(release_changes(previous, m)))
    assert validate_release(release) == [
        f"stats/changes.json: 1 released image moved to another split since test-0.0 ({moved['id']})"]
    write_listed(release, m, "stats/changes.json", json.dumps(release_changes(None, m)))
    assert validate_release(release) == [
        "stats/changes.json: previous_release is None, manifest says 'test-0.0'"]


def test_a_manifest_given_in_memory_is_checked_alike_and_left_unchanged(release):
    """The build parses manifest.json once and hands it to the validation (then to the viewer): the same
    problems as when the validation reads the file, and no check changes the object it was given."""
    import copy

    m = load_manifest(release)
    m["images"][0]["class_pixels"] = {"1": 1}
    m["images"].append(dict(m["images"][1]))
    save_manifest(release, m)
    given = load_manifest(release)
    before = copy.deepcopy(given)
    problems = validate_release(release)
    assert len(problems) >= 2
    assert validate_release(release, manifest=given) == problems
    assert given == before
    assert validate_release(build_release(release.parent / "ok"), manifest=None) == []


def test_safe_paths_match_the_pathlib_forms():
    """``safe_rel`` skips the path object for plain paths: the same answers as ``PurePosixPath``."""
    from pathlib import PurePosixPath

    from pipeline.release.validate.common import safe_rel

    def by_path_object(rel):
        if not isinstance(rel, str) or not rel or "\\" in rel:
            return None
        p = PurePosixPath(rel)
        return None if p.is_absolute() or any(part in ("..", ".") for part in rel.split("/")) else p.as_posix()

    for rel in ("a/b.tif", "a//b", "/a", "a/", "./a", "a/./b", "..", "a/..", "", "a\\b", None, 3, "//", "/", "x"):
        assert safe_rel(rel) == by_path_object(rel), rel
