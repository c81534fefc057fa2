"""Manifest building, schema, split files and checksums."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from pipeline.dataset.ids import natural_key
from pipeline.errors import ManifestError
from pipeline.release.manifest import (
    SCHEMA_VERSION,
    build_manifest,
    file_entries,
    load_schema,
    schema_problems,
    sha256_file,
    write_split_files,
)

from .test_validate import build_release, load_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = build_release(tmp_path_factory.mktemp("m") / "rel")
    return root, load_manifest(root)


def test_schema_is_valid_2020_12_and_versioned():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION} and SCHEMA_VERSION == "1.0"
    assert "1024" not in json.dumps(schema)


def test_schema_accepts_built_manifest(built):
    _, m = built
    jsonschema.Draft202012Validator(load_schema()).validate(m)
    assert schema_problems(m) == []
    assert m["images"][0]["width"] == 64  # tile size is not fixed by the schema


def test_built_manifest_content(built):
    root, m = built
    assert m["schema_version"] == "1.0" and m["release"] == "test-0.1"
    assert [c["id"] for c in m["classes"]] == list(range(1, 9))
    assert m["classes"][0] == {"id": 1, "name": "bareland", "color": "800000"}
    assert m["classes"][7]["color"] == "de1f07"
    assert m["sources"] == [{"name": "testsrc", "kind": "landcover", "license": "CC-BY-4.0",
                             "attribution": "Test data", "location": "https://example.org/testsrc"}]
    ids = [r["id"] for r in m["images"]]
    assert ids == sorted(ids, key=natural_key)
    assert sum(m["splits"][s] for s in ("train", "val", "test")) == len(ids) == 6
    assert [r["region"] for r in m["splits"]["regions"]] == ["austin", "vienna"]
    assert all(isinstance(r["transform"], list) and len(r["transform"]) == 6 for r in m["images"])
    assert m["images"][0]["sha256_image"] == sha256_file(root / m["images"][0]["image"])


def _del(key):
    def f(m):
        del m["images"][1][key]
    return f


def _set(path, value):
    def f(m):
        obj = m
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = value
    return f


BAD = {
    "missing licence": (_del("license"), "images[1]: 'license' is a required property"),
    "empty licence": (_set(["images", 1, "license"], ""), "images[1].license: "),
    "crs not UTM": (_set(["images", 0, "crs"], "EPSG:4326"), "images[0].crs: 'EPSG:4326' does not match"),
    # (EPSG:32661 / 32761, UPS North / South, are valid: scenes beyond 84°N / 80°S)
    "crs zone 63": (_set(["images", 0, "crs"], "EPSG:32663"), "images[0].crs: 'EPSG:32663' does not match"),
    "schema version": (_set(["schema_version"], "0.9"), "schema_version: '1.0' was expected"),
    "gsd too coarse": (_set(["images", 2, "gsd"], 0.6), "images[2].gsd: 0.6 is greater than the maximum of 0.5"),
    "width not int": (_set(["images", 2, "width"], "64"), "images[2].width: '64' is not of type 'integer'"),
    "bad split": (_set(["images", 0, "split"], "dev"), "images[0].split: 'dev' is not one of"),
    "bad continent": (_set(["images", 0, "continent"], "Antarctica"), "images[0].continent: "),
    "short transform": (_set(["images", 0, "transform"], [0.5, 0, 1, 0, -0.5]), "images[0].transform: "),
    "class 8 missing": (lambda m: m["images"][0]["class_pixels"].pop("8"),
                        "images[0].class_pixels: '8' is a required property"),
    "negative pixels": (_set(["images", 0, "class_pixels", "3"], -1), 'images[0].class_pixels["3"]: -1 is less than'),
    "bad sha": (_set(["images", 0, "sha256_label"], "XYZ"), "images[0].sha256_label: 'XYZ' does not match"),
    "extra field": (_set(["images", 0, "name"], "x"), "images[0]: Additional properties are not allowed"),
    "extra top-level": (_set(["notes"], "x"), "Additional properties are not allowed ('notes' was unexpected)"),
    "file escapes": (_set(["files", 0, "path"], "../etc/passwd"), "files[0].path: '../etc/passwd' does not match"),
    "acquired number": (_set(["images", 0, "acquired"], 2020), "images[0].acquired: 2020 is not of type"),
    "split trials missing": (lambda m: m["created_with"]["split"].pop("trials"),
                             "created_with.split: 'trials' is a required property"),
    "lat out of range": (_set(["images", 0, "bounds_lonlat", 1], 91), "images[0].bounds_lonlat[1]: 91 is greater"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_rejects_bad_manifests(built, case):
    mutate, expected = BAD[case]
    m = copy.deepcopy(built[1])
    mutate(m)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load_schema()).validate(m)
    problems = schema_problems(m)
    assert any(p.startswith(expected) for p in problems), problems


def _records(m: dict) -> list[dict]:
    return copy.deepcopy(m["images"])


def _build(m: dict, images: list[dict]) -> dict:
    return build_manifest(release=m["release"], created_with=m["created_with"], sources=m["sources"],
                          images=images, splits_info=m["splits"]["regions"])


def test_build_manifest_refuses_invalid_records(built):
    m = built[1]
    images = _records(m)
    del images[3]["license"]
    with pytest.raises(ManifestError) as err:
        _build(m, images)
    assert err.value.problems == ["images[3]: 'license' is a required property"]


def test_build_manifest_normalises_and_sorts(built):
    m = built[1]
    images = _records(m)[::-1]
    images[0]["transform"] = tuple(np.float64(v) for v in images[0]["transform"])
    images[0]["width"] = np.int64(images[0]["width"])
    images[0]["class_pixels"] = {k: np.int32(v) for k, v in images[0]["class_pixels"].items()}
    images[0]["pool_only_field"] = "dropped"
    out = _build(m, images)
    assert out["images"] == m["images"]
    assert "files" not in out
    assert json.loads(json.dumps(out)) == out


def test_natural_order():
    names = ["b_1", "austin_10", "austin_2", "austin_1", "santa_rosa_3"]
    assert sorted(names, key=natural_key) == ["austin_1", "austin_2", "austin_10", "b_1", "santa_rosa_3"]


def test_write_split_files_format(tmp_path):
    images = [
        {"image": "austin/images/austin_10.tif", "split": "train"},
        {"image": "austin/images/austin_2.tif", "split": "train"},
        {"image": "santa_rosa/images/santa_rosa_1.tif", "split": "test"},
    ]
    write_split_files(tmp_path, images)
    assert (tmp_path / "train.txt").read_bytes() == b"austin_2.tif\naustin_10.tif\n"
    assert (tmp_path / "test.txt").read_bytes() == b"santa_rosa_1.tif\n"
    assert (tmp_path / "val.txt").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "train.txt", "val.txt"]  # no temporaries
    with pytest.raises(ValueError):
        write_split_files(tmp_path, [{"image": "a/images/a_1.tif", "split": "dev"}])


def test_split_files_of_built_release(built):
    root, m = built
    for split in ("train", "val", "test"):
        text = (root / f"{split}.txt").read_text()
        lines = text.splitlines()
        assert text == "".join(line + "\n" for line in lines)
        assert all(line.endswith(".tif") and "/" not in line and line.strip() == line and line for line in lines)
        assert sorted(lines) == sorted(Path(r["image"]).name for r in m["images"] if r["split"] == split)


def test_sha256_file_streams_large_files(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, size=3 * (1 << 20) + 17, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(data)
    assert sha256_file(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()


def test_file_entries(tmp_path):
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "a.json").write_text("{}\n")
    (tmp_path / "train.txt").write_text("x_1.tif\n")
    entries = file_entries(tmp_path, ["train.txt", Path("stats/a.json")])
    assert entries == [
        {"path": "stats/a.json", "sha256": hashlib.sha256(b"{}\n").hexdigest(), "bytes": 3},
        {"path": "train.txt", "sha256": hashlib.sha256(b"x_1.tif\n").hexdigest(), "bytes": 8},
    ]
    assert file_entries(tmp_path, ["./train.txt"])[0]["path"] == "train.txt"  # normalised
    for bad in ("../x", "stats/../train.txt", str(tmp_path / "train.txt")):
        with pytest.raises(ValueError):
            file_entries(tmp_path, [bad])
    with pytest.raises(ValueError):
        file_entries(tmp_path, ["train.txt", "train.txt"])
    with pytest.raises(FileNotFoundError):
        file_entries(tmp_path, ["val.txt"])
    for not_a_file in ("stats", "train.txt/x"):  # a folder; a path through a file
        with pytest.raises(FileNotFoundError):
            file_entries(tmp_path, [not_a_file])
    # plain strings (taken as they are) and path objects / unusual spellings (normalised) name the same entries
    assert file_entries(tmp_path, ["stats/a.json", "train.txt"]) == entries
    assert file_entries(tmp_path, [Path("stats") / "a.json", "./train.txt"]) == entries
    assert file_entries(tmp_path, ["stats//a.json", "train.txt/"]) == entries


def test_schema_problems_skipping_known_valid_images_reports_the_same_problems(built):
    """The incremental check validates only the image records that are not known to be valid; the problems of the
    others (and of the rest of the manifest) are reported exactly as by the full check, paths included."""
    manifest = built[1]
    assert schema_problems(manifest) == []
    bad = copy.deepcopy(manifest)
    bad["images"][1]["license"] = 5
    del bad["images"][2]["split"]
    bad["release"] = 3
    full = schema_problems(bad)
    assert len(full) == 3 and any(line.startswith("images[2]") for line in full)
    assert schema_problems(bad, skip_images={0, 3}) == full
    assert schema_problems(bad, skip_images={0, 1, 3}) == [p for p in full if not p.startswith("images[1]")]


def test_schema_problems_skipping_known_valid_files_entries_reports_the_same_problems(built):
    """``files`` entries equal to a validated previous manifest's are left out of the incremental schema check;
    a changed entry is still reported, with its index, exactly as by the full check."""
    manifest = copy.deepcopy(built[1])
    manifest["files"] = [{"path": f"stac/items/t{i}.json", "sha256": "0" * 64, "bytes": 10 + i} for i in range(5)]
    assert schema_problems(manifest) == []
    manifest["files"][3]["bytes"] = -1
    manifest["files"][4]["extra"] = True
    full = schema_problems(manifest)
    assert len(full) == 2 and {line.split(".")[0].split(":")[0] for line in full} == {"files[3]", "files[4]"}
    assert schema_problems(manifest, skip_files={0, 1, 2}) == full
    assert schema_problems(manifest, skip_files={0, 1, 2, 3}) == [p for p in full if not p.startswith("files[3]")]
    assert schema_problems(manifest, skip_images=set(range(len(manifest["images"]))), skip_files={0}) == full


def test_file_names_and_compact_json_match_the_library_forms():
    """The fast forms used for 5,000-image releases give what ``PurePosixPath.name`` gives; ``compact_json`` names
    equal values alike (whatever their key order) and different values apart, and reads back as the value."""
    import json
    from pathlib import PurePosixPath

    from pipeline.atomic import compact_json
    from pipeline.release.manifest import file_name

    for path in ("austin/images/austin_1.tif", "a.tif", "a/b/", "a/b/.", "..", "a/..", "", "/", "//x", "a//b", "."):
        assert file_name(path) == PurePosixPath(path).name, path
    values = ({"b": 1, "a": [1, 2.5, "é", None, True]}, [], "x", {"z": {"y": 1e-05}}, {"k": 10**30}, {"b": 2, "a": 1})
    for value in values:
        assert json.loads(compact_json(value)) == value
    assert compact_json({"a": 1, "b": 2}) == compact_json({"b": 2, "a": 1})
    assert len({compact_json(v) for v in values}) == len(values)


def test_file_size_answers_where_path_is_file_does(tmp_path):
    from pipeline.release.manifest import file_size

    (tmp_path / "f").write_text("abc")
    (tmp_path / "dir").mkdir()
    (tmp_path / "ln").symlink_to(tmp_path / "f")
    (tmp_path / "dangling").symlink_to(tmp_path / "nope")
    for rel in ("f", "dir", "ln", "dangling", "f/x", "missing", "a\0b"):
        assert (file_size(tmp_path, rel) is not None) == (tmp_path / rel).is_file(), rel
    assert file_size(tmp_path, "ln") == file_size(str(tmp_path), "f") == 3


def test_record_json_forms_read_back_as_the_standard_library_reads_them(tmp_path):
    """The fast (orjson) forms of the dataset records, the manifest and STAC files: sorted keys, what ``json``
    reads back equal; values orjson does not take fall back to ``json``; what ``json`` reads, ``read_record``
    reads alike (NaN in an older record)."""
    import json

    from pipeline.atomic import canonical_json, indented_bytes, read_record, record_bytes, write_record

    value = {"b": 1, "a": [1, 2.5, "é</", None, True, 1e-7, 1e16], "c": {"z": {}, "y": []}}
    assert record_bytes(value) == json.dumps(value, sort_keys=True, ensure_ascii=False,
                                              separators=(",", ":")).replace("1e-07", "1e-7").encode()
    assert json.loads(indented_bytes(value)) == value and indented_bytes(value).endswith(b"}\n")
    assert json.loads(record_bytes({"n": 2 ** 70})) == {"n": 2 ** 70}  # beyond orjson: the standard library
    assert record_bytes({"x": float("nan")}) == b'{"x":null}'
    manifest = {"release": "v1", "images": [{"id": "a_1", "b": 2}, {"id": "a_2", "b": [3]}], "files": []}
    text = canonical_json(manifest)
    assert json.loads(text) == manifest and '\n  {"b":2,"id":"a_1"},\n' in text
    # members that are not lists of objects keep the standard library's 1-space layout (orjson's 2 halved)
    nested = {"selection": {"r": {"kept": ["a~b", "c"], "z": {}, "e": [], "x": [[1, {"y": "é\u2028"}]]}},
              "n": 3, "s": "x\ny", "big": {"k": 10 ** 30}, "files": [{"p": 1}, 2]}
    stdlib = "{\n" + ",\n".join(f" {json.dumps(k)}: " + json.dumps(nested[k], indent=1, sort_keys=True,
                                                                     ensure_ascii=False).replace("\n", "\n ")
                                 for k in sorted(nested)) + "\n}\n"
    assert canonical_json(nested) == stdlib
    assert canonical_json([{"b": 1, "a": [2]}]) == json.dumps([{"b": 1, "a": [2]}], indent=1, sort_keys=True) + "\n"
    write_record(tmp_path / "r.json", value)
    assert read_record(tmp_path / "r.json") == value
    (tmp_path / "old.json").write_text(json.dumps({"x": float("nan")}))
    assert str(read_record(tmp_path / "old.json")["x"]) == "nan"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError):
        read_record(tmp_path / "bad.json")
