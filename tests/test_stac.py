"""The release's STAC catalog (pipeline/release/stac.py): structure, content and offline schema validation."""
from __future__ import annotations

import copy
import json
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path

import pystac
import pytest

from pipeline.release.stac import COLLECTION, LABEL_SCHEMA, PROJECTION_SCHEMA, spdx_license, write_stac
from pipeline.release.validate.report import validate_release
from pipeline.release.validate.stac import schema_dir, schema_map, validate_stac, validate_stac_object
from tests.helpers_outputs import (  # noqa: F401
    SOURCES,
    demo_release,
    manifest_of,
    no_network,
    strip_cog,
    synthetic_records,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return demo_release(tmp_path_factory)


@pytest.fixture
def synthetic(tmp_path):
    records = synthetic_records(tmp_path)
    write_stac(tmp_path, records, release="t1", sources=SOURCES)
    return tmp_path, records


def test_release_catalog_validates_offline(release, no_network):
    ids = [im["id"] for im in manifest_of(release)["images"]]
    assert validate_stac(release, expected_ids=ids) == []


def test_release_catalog_passes_stac_validator_recursively(release, no_network):
    stac_validator = pytest.importorskip("stac_validator.validate")
    v = stac_validator.StacValidate(str(release / COLLECTION), recursive=True, schema_map=schema_map())
    assert v.run(), v.message
    n = len(manifest_of(release)["images"])
    assert len(v.message) == 1 + n
    assert all(m["valid_stac"] for m in v.message)
    kinds = sorted(m["asset_type"] for m in v.message)
    assert kinds == ["COLLECTION"] + ["ITEM"] * n
    # the extension schemas were checked, from the shipped copies
    used = {s for m in v.message for s in m["schema"]}
    assert any(s.endswith("projection-v1.2.0.json") for s in used)
    assert any(s.endswith("label-v1.0.1.json") for s in used)


def test_stac_validator_cli_with_the_shipped_schema_config(release):
    # the console script of the interpreter running the tests (a venv's bin/ need not be on PATH)
    exe = shutil.which("stac-validator", path=str(Path(sys.executable).parent)) or shutil.which("stac-validator")
    assert exe is not None, "the stac-validator command is missing: install the test extra (pip install -e '.[test]')"
    proc = subprocess.run(
        [exe, "validate", "--recursive", "--schema-config", str(schema_dir() / "schema-map.json"),
         str(release / COLLECTION)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_every_image_has_an_item_with_both_assets(release):
    manifest = manifest_of(release)
    collection = pystac.Collection.from_file(str(release / COLLECTION))
    items = {i.id: i for i in collection.get_items()}
    assert sorted(items) == sorted(im["id"] for im in manifest["images"])
    for im in manifest["images"]:
        item = items[im["id"]]
        assert set(item.assets) == {"image", "label"}
        for key in ("image", "label"):
            href = Path(item.assets[key].get_absolute_href())
            assert href.is_file()
            assert href.resolve() == (release / im[key]).resolve()
            assert not Path(item.assets[key].href).is_absolute()  # relative in the JSON
            assert "cloud-optimized" in item.assets[key].media_type
        p = item.properties
        assert (p["split"], p["region"], p["country"], p["continent"], p["source"]) == (
            im["split"], im["region"], im["country"], im["continent"], im["source"])
        assert p["gsd"] == im["gsd"]
        assert p["proj:code"] == im["crs"]
        assert p["proj:transform"] == im["transform"]
        assert p["proj:shape"] == [im["height"], im["width"]]
        assert p["proj:bbox"] == im["bounds"]
        assert p["label:type"] == "raster" and p["label:tasks"] == ["segmentation"]
        assert p["label:classes"] == [{"name": None, "classes": [1, 2, 3, 4, 5, 6, 7, 8]}]
        counts = {c["name"]: c["count"] for c in p["label:overviews"][0]["counts"]}
        assert sum(counts.values()) + im["unlabelled_pixels"] == im["width"] * im["height"]
        # joinable: the overview counts are keyed by the ids label:classes lists (as strings, as the schema wants)
        assert sorted(counts, key=int) == [str(c) for c in p["label:classes"][0]["classes"]]
        assert counts == {k: v for k, v in im["class_pixels"].items()}
        assert p["label:properties"] is None and "property_key" not in p["label:overviews"][0]
        # time: the acquisition, else the source's documented period (never the 1970..9999 placeholder)
        if im["acquired"]:
            assert item.datetime is not None
        else:
            assert p["start_datetime"] >= "1999" and p["end_datetime"] < "9999"
        # pystac migrates projection v1.2.0 to v2.0.0 when it reads an item; the files are checked below
        assert LABEL_SCHEMA in item.stac_extensions
        # footprint: the lon/lat box of the manifest encloses the item geometry's bbox (within rounding)
        w, s, e, n = im["bounds_lonlat"]
        assert item.bbox[0] >= w - 1e-6 and item.bbox[2] <= e + 1e-6
        assert item.bbox[1] >= s - 1e-6 and item.bbox[3] <= n + 1e-6


def test_collection_metadata(release):
    manifest = manifest_of(release)
    data = json.loads((release / COLLECTION).read_text())
    assert data["type"] == "Collection" and data["stac_version"] == "1.1.0"
    assert data["license"] == "CC0-1.0"
    names = [p["name"] for p in data["providers"]]
    assert {s["name"] for s in manifest["sources"]} <= set(names) and "oem-pipeline" in names
    (bbox,) = data["extent"]["spatial"]["bbox"]
    for im in manifest["images"]:
        w, s, e, n = im["bounds_lonlat"]
        assert bbox[0] <= w + 1e-6 and bbox[1] <= s + 1e-6 and bbox[2] >= e - 1e-6 and bbox[3] >= n - 1e-6
    summaries = data["summaries"]
    assert [c["name"] for c in summaries["classes"]] == [c["name"] for c in manifest["classes"]]
    assert summaries["label:classes"] == [{"name": None, "classes": list(range(1, 9))}]
    assert set(summaries["split"]) == {im["split"] for im in manifest["images"]}
    assert summaries["proj:epsg"] == sorted({int(im["crs"].split(":")[1]) for im in manifest["images"]})
    assert set(data["item_assets"]) == {"image", "label"}
    # the temporal extent covers every item (acquired ones and those with the source's documented period)
    (start, end) = data["extent"]["temporal"]["interval"][0]
    for item in pystac.Collection.from_file(str(release / COLLECTION)).get_items():
        p = item.properties
        first = p.get("start_datetime") or p["datetime"]
        last = p.get("end_datetime") or p["datetime"]
        assert start <= first and last <= end, item.id
    # self-contained: no absolute hrefs anywhere, no self links
    text = (release / COLLECTION).read_text()
    assert str(release) not in text and '"rel": "self"' not in text


def test_stac_files_are_in_the_manifest_files(release):
    manifest = manifest_of(release)
    paths = {f["path"] for f in manifest["files"]}
    assert COLLECTION in paths
    assert {f"stac/items/{im['id']}.json" for im in manifest["images"]} <= paths


def test_synthetic_catalog_is_valid_and_deterministic(synthetic, tmp_path_factory, no_network):
    root, records = synthetic
    assert validate_stac(root, expected_ids=[r["id"] for r in records]) == []
    other = tmp_path_factory.mktemp("again")
    shutil.copytree(root, other, dirs_exist_ok=True)
    shutil.rmtree(other / "stac")
    write_stac(other, list(reversed(records)), release="t1", sources=SOURCES)
    for p in sorted((root / "stac").rglob("*.json")):
        assert p.read_bytes() == (other / p.relative_to(root)).read_bytes(), p
    item = json.loads((root / "stac/items/vienna_1.json").read_text())
    assert item["properties"]["datetime"] == "2019-06-01T00:00:00Z"
    unknown = json.loads((root / "stac/items/vienna_2.json").read_text())["properties"]
    # no acquisition time: the source's documented period, never an open 1970..9999 placeholder
    assert unknown["datetime"] is None
    assert (unknown["start_datetime"], unknown["end_datetime"]) == ("2018-01-01T00:00:00Z", "2020-12-31T23:59:59Z")
    coll = json.loads((root / COLLECTION).read_text())
    # the collection's temporal extent covers every item
    assert coll["extent"]["temporal"]["interval"] == [["2018-01-01T00:00:00Z", "2021-02-03T00:00:00Z"]]
    assert coll["summaries"]["proj:epsg"] == [32633, 32718] and coll["summaries"]["proj:code"] == [
        "EPSG:32633", "EPSG:32718"]
    assert coll["license"] == "CC-BY-4.0" and coll["summaries"]["license"] == ["CC-BY-4.0"]
    assert not [link for link in coll["links"] if link["rel"] == "license"]  # one SPDX licence says it all
    assert coll["providers"][0]["url"] == "https://example.org/data"


def test_items_of_unchanged_images_are_reused_byte_identically(synthetic, tmp_path, monkeypatch):
    """A release continuing ``t1`` reuses the items of unchanged records as hard links of ``t1``'s item files
    (nothing in an item names its release: one collection id, untitled links) and rebuilds the others: a changed
    record, and every record whose source's acquired_range changed; the files are byte-identical to a catalog
    written from scratch."""
    root, records = synthetic
    previous = (root, {"release": "t1", "images": records, "sources": SOURCES})
    item = json.loads((root / "stac" / "items" / f"{records[0]['id']}.json").read_text())
    assert item["collection"] == "oem" and all("title" not in link for link in item["links"])
    changed = copy.deepcopy(records)
    changed[0]["split"] = "test" if changed[0]["split"] != "test" else "val"
    built: list[str] = []
    to_dict = pystac.Item.to_dict

    def counting(self, *args, **kwargs):
        built.append(self.id)
        return to_dict(self, *args, **kwargs)

    cases = [(changed, SOURCES, {changed[0]["id"]}),
             (records, [{**SOURCES[0], "acquired_range": ["2017-01-01", "2020-12-31"]}], {r["id"] for r in records})]
    for n, (recs, sources, rebuilt) in enumerate(cases):
        fresh, reused = tmp_path / f"fresh{n}", tmp_path / f"reused{n}"
        write_stac(fresh, recs, release="t2", sources=sources)
        monkeypatch.setattr(pystac.Item, "to_dict", counting)
        built.clear()
        write_stac(reused, recs, release="t2", sources=sources, previous=previous)
        monkeypatch.undo()
        assert set(built) == rebuilt
        files = sorted(p.relative_to(fresh) for p in fresh.rglob("*.json"))
        assert files == sorted(p.relative_to(reused) for p in reused.rglob("*.json")) and len(files) == 1 + len(recs)
        assert [f for f in files if (fresh / f).read_bytes() != (reused / f).read_bytes()] == []
        assert b'"collection": "oem"' in (reused / files[-1]).read_bytes()
        same_inode = {f.stem for f in files if f.parent.name == "items"
                      and (reused / f).stat().st_ino == (root / f).stat().st_ino}
        assert same_inode == {r["id"] for r in records} - rebuilt


def test_collection_bbox_is_exactly_the_items_bboxes_extent(release):
    """The collection's spatial extent (:func:`footprints_bbox`, no rings made) is the extent of the items'
    ``bbox``es exactly, also for a record whose CRS cannot be used (its ``bounds_lonlat`` box)."""
    from pipeline.release.footprints import footprints_bbox, footprints_lonlat
    from pipeline.release.stac import _bbox

    records = manifest_of(release)["images"]
    (bbox,) = json.loads((release / COLLECTION).read_text())["extent"]["spatial"]["bbox"]
    boxes = [json.loads((release / "stac" / "items" / f"{r['id']}.json").read_text())["bbox"] for r in records]
    assert bbox == [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                    max(b[3] for b in boxes)]
    odd = [*records, dict(records[0], id="odd_1", crs="EPSG:999999", bounds_lonlat=[179.5, -89.0, 179.9, -88.5])]
    rings = [_bbox(r) for r in footprints_lonlat(odd)]
    assert footprints_bbox(odd) == [min(b[0] for b in rings), -89.0, 179.9, max(b[3] for b in rings)]
    assert footprints_bbox([]) is None


def test_known_valid_collection_links_are_skipped_with_the_same_problems(synthetic, no_network):
    """The build's incremental check leaves out collection links equal to a validated collection's: a changed
    link is still checked and reported with its index in the full list, exactly as by the full check."""
    from pipeline.release.validate.stac import link_key

    root, _ = synthetic
    coll = json.loads((root / COLLECTION).read_text())
    known = {link_key(link) for link in coll["links"]}
    assert validate_stac_object(COLLECTION, coll, known) == validate_stac_object(COLLECTION, coll) == []
    bad = copy.deepcopy(coll)
    items = [i for i, link in enumerate(bad["links"]) if link["rel"] == "item"]
    bad["links"][items[0]]["href"] = 3
    del bad["links"][items[-1]]["rel"]
    full = validate_stac_object(COLLECTION, bad)
    assert validate_stac_object(COLLECTION, bad, known) == full
    assert any(f"links/{items[0]}/href" in p for p in full) and any(f"links/{items[-1]}:" in p for p in full), full


def test_schema_problems_are_reported(synthetic, no_network):
    root, records = synthetic
    item = json.loads((root / "stac/items/vienna_1.json").read_text())
    bad = copy.deepcopy(item)
    bad["properties"]["proj:epsg"] = "32633"        # projection v1.2.0: an integer
    bad["properties"]["label:type"] = "mask"       # not raster/vector
    del bad["properties"]["datetime"]              # core: datetime required
    problems = validate_stac_object("stac/items/vienna_1.json", bad)
    text = "\n".join(problems)
    assert "proj:epsg" in text and "label:type" in text and "datetime" in text
    assert all(p.startswith("stac/items/vienna_1.json: ") for p in problems)


def test_missing_asset_and_missing_item_are_reported(synthetic):
    root, records = synthetic
    (root / records[0]["label"]).unlink()
    (root / "stac/items/lima_1.json").unlink()
    problems = validate_stac(root, expected_ids=[r["id"] for r in records])
    assert ("stac/items/vienna_1.json: label asset ../../vienna/labels/vienna_1.tif does not name a file of the release"
            in problems)
    assert "stac/items/lima_1.json: missing (linked from stac/collection.json)" in problems
    assert f"{COLLECTION}: no item for images: lima_1" in problems


def test_release_validation_reports_a_broken_catalog(release, tmp_path):
    copy_ = tmp_path / "rel"
    shutil.copytree(release, copy_)
    victim = copy_ / "stac/items" / f"{manifest_of(release)['images'][0]['id']}.json"
    data = json.loads(victim.read_text())
    data["properties"]["label:type"] = "mask"
    victim.unlink()
    victim.write_text(json.dumps(data))
    problems = validate_release(copy_)
    rel = victim.relative_to(copy_).as_posix()
    assert any(p.startswith(f"{rel}: sha256 mismatch") for p in problems)
    assert any(p.startswith(f"{rel}: label: ") and "mask" in p for p in problems)


@pytest.mark.parametrize("text, spdx", [
    ("CC0-1.0 (synthetic)", "CC0-1.0"), ("CC BY-NC-SA 4.0", "CC-BY-NC-SA-4.0"), ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC-BY-4.0", "CC-BY-4.0"), ("public-domain imagery; cite Maggiori et al. 2017", "other"), ("", "other"),
    (None, "other"), ("per image, mostly CC BY 4.0", "other"),
])
def test_spdx_license(text, spdx):
    assert spdx_license(text) == spdx


def test_schema_map_points_at_shipped_files():
    mapping = schema_map()
    assert PROJECTION_SCHEMA in mapping and LABEL_SCHEMA in mapping
    for url, path in mapping.items():
        data = json.loads(Path(path).read_text())
        assert data.get("$id", "").rstrip("#").replace("commonjson", "common.json") == url.rstrip("#") or \
            url.startswith("http://json-schema.org/"), (url, data.get("$id"))


def test_items_carry_proj_epsg_and_proj_code_under_projection_v1_2(release, no_network):
    # as tools that read only proj:epsg (older stackstac/odc-stac, the QGIS STAC plugin) see the files
    manifest = manifest_of(release)
    for im in manifest["images"]:
        raw = json.loads((release / "stac" / "items" / f"{im['id']}.json").read_text())
        assert raw["stac_extensions"] == [PROJECTION_SCHEMA, LABEL_SCHEMA]
        assert PROJECTION_SCHEMA.endswith("/projection/v1.2.0/schema.json")
        p = raw["properties"]
        assert p["proj:code"] == im["crs"] and p["proj:epsg"] == int(im["crs"].split(":")[1])
    raw_collection = json.loads((release / COLLECTION).read_text())
    assert PROJECTION_SCHEMA in raw_collection["stac_extensions"]
    # the shipped v1.2.0 schema is really applied: a wrong proj:epsg type fails validation offline
    good = json.loads((release / "stac" / "items" / f"{manifest['images'][0]['id']}.json").read_text())
    assert validate_stac_object("item.json", good) == []
    bad = copy.deepcopy(good)
    bad["properties"]["proj:epsg"] = "EPSG:32633"
    assert validate_stac_object("item.json", bad)


def test_split_checks_give_the_report_of_one_process(release, tmp_path, monkeypatch):
    """With ``concurrent``, check 11 runs beside the schema and release-wide checks, its COG tiles in one forked
    process and the second half of the STAC items in another: the report is the one a single process gives,
    problems in the same order (an item broken in each half, a missing item, a tile that is not a COG)."""
    from pipeline import forked
    from pipeline.release.validate import stac as stac_module
    from pipeline.release.validate.report import validate_report

    copy_ = tmp_path / "rel"
    shutil.copytree(release, copy_)
    images = manifest_of(release)["images"]
    collection = json.loads((copy_ / COLLECTION).read_text())
    hrefs = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert len(hrefs) == len(images) >= 6
    for href in (hrefs[0], hrefs[-1]):  # one in each half
        victim = copy_ / "stac" / href
        data = json.loads(victim.read_text())
        data["properties"]["label:type"] = "mask"
        victim.unlink()
        victim.write_text(json.dumps(data))
    (copy_ / "stac" / hrefs[len(hrefs) // 2 + 1]).unlink()
    strip_cog(copy_ / images[1]["label"])

    log = tmp_path / "started.txt"  # forks are started in forked processes too: logged to a file
    real_start = forked.start

    def start(fn, *args, **kwargs):
        with log.open("a") as f:
            f.write(f"{fn.__name__}\n")
        return real_start(fn, *args, **kwargs)

    monkeypatch.setattr(forked, "start", start)
    monkeypatch.setattr(stac_module, "CONCURRENT_ITEMS", 2)
    split = validate_report(copy_, concurrent=True)
    assert sorted(log.read_text().split()) == ["_cog_problems", "_items_problems", "_user_outputs"]
    one = validate_report(copy_)
    assert split == one and not one["valid"]
    problems = one["problems"]
    first, last = (posixpath.normpath(f"stac/{h}") for h in (hrefs[0], hrefs[-1]))
    assert [p.split(":")[0] for p in problems if ": label: " in p and "mask" in p] == [first, last]
    assert any(p.endswith("missing (linked from stac/collection.json)") for p in problems)
    assert any(p.startswith(f"{images[1]['label']}: not a valid COG: ") for p in problems)
