"""STAC sources against real loopback servers (tests/stac_server.py, catalogs shaped like OpenAerialMap's STAC
API, NOAA's and Maxar Open Data's, in tests/stac_world.py): search and static walks, licences and
attributions, windowed range reads of COGs (bytes counted by the server), reruns without network I/O,
named rejects for broken items, missing and non-COG assets, and a build through Luigi."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import tasks  # noqa: F401  (registers the tasks)
from pipeline.errors import FetchError, ItemRejected, SceneRejected
from pipeline.labels.keys import split_tile_key
from pipeline.release.validate.report import validate_release
from pipeline.sources.adapters.openaerialmap import OpenAerialMapAdapter
from pipeline.sources.adapters.stac import StacAdapter
from pipeline.sources.config import SourceConfig, SourcesError, parse_sources
from pipeline.sources.fetch import fetch_source
from pipeline.sources.stac.io import http_session
from pipeline.sources.stac.items import item_license, matches_query, parse_interval
from pipeline.sources.stac.search import StacQuery, find_items
from tests.helpers_build import build_in_process
from tests.loopback import LOOPBACK_LIMITS
from tests.stac_server import CONFORMANCE, StacServer, read_window
from tests.stac_world import EVENT, build_world, json_docs

BIG = "10300100AAA00100"  # the good Maxar acquisition: a 4096 x 4096 JPEG COG


@pytest.fixture(scope="module")
def world():
    with StacServer() as srv:
        yield build_world(srv)


def _source(name: str, kind: str, location: str, **options) -> SourceConfig:
    data = {"sources": [{"name": name, "kind": kind, "location": location, "license": f"{name} licence",
                         "attribution": f"{name} attribution", "options": options}]}
    return parse_sources(data, Path("sources.yaml"))[0]


def _scenes(adapter, dest: Path, src: SourceConfig):
    rejected: list = []
    return {s.scene_id: s for s in adapter.scenes(dest, src, rejected=rejected)}, rejected


def test_options_are_checked_naming_file_source_and_key():
    bad = [
        ({"bbox": [10, 50, 9, 51]}, "options.bbox"), ({"datetime": "2024-13-45"}, "options.datetime"),
        ({"query": {"gsd": {"below": 1}}}, "options.query"), ({"assets": []}, "options.assets"),
        ({"non_cog": "maybe"}, "options.non_cog"), ({"max_items": 0}, "options.max_items"),
        ({"collections": "openaerialmap"}, "options.collections"), ({"colections": ["x"]}, "options.colections"),
    ]
    for options, key in bad:
        with pytest.raises(SourcesError, match=rf"^sources.yaml: source 'cat': .*'{key}'"):
            _source("cat", "stac", "https://example.org/stac", **options)
    with pytest.raises(SourcesError, match=r"source 'oam': key 'options.api'"):
        _source("oam", "openaerialmap", "https://api.imagery.hotosm.org/stac", api="v2")
    ok = _source("cat", "stac", "s3://bucket/catalog.json", datetime="2024-06/..", query={"gsd": {"lte": 0.5}})
    assert ok.options["non_cog"] == "reject" and ok.options["max_items"] == 100
    assert _source("oam", "openaerialmap", "https://x.org/stac").options["api"] == "stac"


def test_item_helpers():
    start, end = parse_interval("2024-02")
    assert (start.isoformat(), end.isoformat()) == ("2024-02-01T00:00:00+00:00", "2024-02-29T23:59:59.999999+00:00")
    assert parse_interval("../2020-01-01T10:00:00Z")[0] is None
    item = {"properties": {"gsd": 0.3, "license": "other", "platform": "WV03"},
            "links": [{"rel": "license", "href": "https://example.org/terms", "title": "Example terms"}]}
    assert matches_query(item, {"gsd": {"lte": 0.5, "gt": 0.1}, "platform": {"startsWith": "WV"}})
    assert not matches_query(item, {"gsd": {"lt": 0.3}})
    assert item_license(item, [], "x") == "other: Example terms"
    assert item_license({"properties": {}}, [{"license": "CC-BY-NC-4.0"}], "x") == "CC-BY-NC-4.0"
    # transient network failures fail the fetch (a rerun retries); permanent ones reject the item
    from pipeline.sources.stac.fetch import _transient

    assert _transient("giving up after 5 attempts: HTTP 503 Service Unavailable")
    assert _transient("HTTP response code: 429") and _transient("Couldn't connect to server")
    assert not _transient("HTTP response code: 404") and not _transient("HTTP 404 Not Found")
    assert not _transient("sha256 mismatch: expected 00, got 11")


def test_openaerialmap_kind_searches_the_stac_api_and_reads_windows(world, tmp_path):
    srv = world.srv
    src = _source("oam-dar", "openaerialmap", srv.url("/api"), bbox=world.dar_bbox, limit=1, region="dar_es_salaam")
    srv.reset_counters()
    rec = fetch_source(src, tmp_path / "oam", limits=LOOPBACK_LIMITS)
    searches = [r for r in srv.requests if r["path"] == "/api/search"]
    assert [r["method"] for r in searches] == ["POST", "POST"]  # two pages of one item (next link, token)
    assert searches[0]["body"]["collections"] == ["openaerialmap"] and searches[1]["body"]["token"] == 1
    assert searches[0]["body"]["query"] == {"gsd": {"lte": 0.5}} and searches[0]["body"]["bbox"] == world.dar_bbox
    scenes, rejected = _scenes(OpenAerialMapAdapter(), tmp_path / "oam", src)
    assert sorted(scenes) == ["oam-5d00aa", "oam-5d00bb"] and rejected == []  # as the /meta path names them
    a, b = scenes["oam-5d00aa"], scenes["oam-5d00bb"]
    assert (a.kind, a.license, a.attribution) == ("openaerialmap", "CC-BY-4.0", "Drone Lab Dar")
    assert (b.license, b.attribution) == ("CC-BY-NC-4.0", "Kijiji Mapping")
    assert a.acquired == "2019-03-02T08:00:00Z" and a.region_hint == "dar_es_salaam"
    assert a.extra["stac"]["self"] == world.items["oam-utm"]["links"][1]["href"]
    assert a.extra["stac"]["read"] == "window" and b.extra["stac"]["asset"] == "visual"
    assert a.extra["stac"]["checks"]["crs"]["agrees"] and b.extra["stac"]["checks"]["gsd"]["agrees"]
    # the extract: the source's grid and pixels for the window
    win = Window(*a.extra["stac"]["window"])
    with rasterio.open(a.image) as ds:
        assert ds.crs.to_epsg() == 32737 and (ds.width, ds.height) == (win.width, win.height)
        assert np.array_equal(ds.read(), read_window(world.rasters["oam-utm"], win))
    for name, scene in (("oam-utm", a), ("oam-4326", b)):
        assert scene.extra["stac"]["transferred"] == srv.sent[world.cog_paths[name]]
    assert "uploader@example.org" not in json.dumps(rec)  # nothing but selected fields reaches provenance
    assert rec["transfer"]["asset_bytes"] == sum(srv.sent.values())


def test_maxar_event_window_reads_under_half_and_rejects_bad_items(world, tmp_path):
    srv = world.srv
    src = _source("maxar-la", "stac", world.maxar_event_url, bbox=world.maxar_bbox, region="los_angeles")
    srv.reset_counters()
    rec = fetch_source(src, tmp_path / "mx", limits=LOOPBACK_LIMITS)
    big = world.cog_paths[BIG]
    assert srv.sent[big] < len(world.rasters[BIG]) / 2, (srv.sent[big], len(world.rasters[BIG]))
    item = rec["items"][0]
    assert item["transferred"] == srv.sent[big] and item["read"] == "window"
    assert {f["path"]: f.get("transferred") for f in rec["files"]}[item["image"]] == srv.sent[big]
    assert all(r["range"] for r in srv.requests if r["path"] == big and r["method"] == "GET")
    srv.reset_counters()
    scenes, rejected = _scenes(StacAdapter(), tmp_path / "mx", src)
    assert srv.requests == []  # the adapter (CatalogSource) reads local files only
    sid = "11_031311102001_10300100aaa00100"
    assert list(scenes) == [sid]
    s = scenes[sid]
    assert (s.license, s.attribution, s.acquired) == ("CC-BY-NC-4.0", "Maxar", "2024-12-14T18:53:50Z")
    assert s.extra["stac"]["checks"]["gsd"]["agrees"] is False and "0.58" in s.extra["stac"]["checks"]["gsd"]["note"]
    with rasterio.open(s.image) as ds:
        assert np.array_equal(ds.read(), read_window(world.rasters[BIG], Window(*s.extra["stac"]["window"])))
    rows = {Path(e.file).name: e for e in rejected}
    assert all(isinstance(e, ItemRejected) for e in rejected) and len(rows) == 5
    assert "invalid JSON" in rows["10300100BBB00200.json"].reason
    assert "missing geometry" in rows["10300100CCC00300.json"].reason
    assert "404" in rows["10300100DDD00400-visual.tif"].reason
    non_cog = rows["10300100EEE00500-visual.tif"]
    assert "not a Cloud-Optimized GeoTIFF" in non_cog.reason and non_cog.scene_id.endswith("eee00500")
    assert "EPSG:32612" in rows["10300100FFF00600-visual.tif"].reason
    assert {e.reject_stage for e in rejected} == {"catalog", "fetch"}
    # a refetch into the same folder reuses the extract: no pixel bytes of the big COG
    srv.reset_counters()
    again = fetch_source(src, tmp_path / "mx", limits=LOOPBACK_LIMITS)
    assert srv.sent.get(big, 0) == 0 and again["items"][0]["sha256"] == item["sha256"]


def test_maxar_root_catalog_collections_filter_and_non_cog_download(world, tmp_path):
    srv = world.srv
    src = _source("mx", "stac", srv.url("/static/events/catalog.json"), collections=[EVENT], bbox=world.maxar_bbox,
                  non_cog="download", datetime="2024-12")
    srv.reset_counters()
    rec = fetch_source(src, tmp_path / "mx", limits=LOOPBACK_LIMITS)
    assert not any("Other-Event/" in r["path"] and "ard" in r["path"] for r in srv.requests)
    reads = {i["item_id"].split("/")[-1]: i for i in rec["items"]}
    assert sorted(reads) == [BIG, "10300100EEE00500"]
    assert reads["10300100EEE00500"]["read"] == "download+window"
    plain = world.cog_paths["10300100EEE00500"]
    assert srv.sent[plain] >= len(world.rasters["10300100EEE00500"])  # whole file (+ the header probe)
    with rasterio.open(tmp_path / "mx" / reads["10300100EEE00500"]["image"]) as ds:
        win = Window(*reads["10300100EEE00500"]["window"])
        assert np.array_equal(ds.read(), read_window(world.rasters["10300100EEE00500"], win))
    # a datetime outside the acquisitions finds nothing: the adapter names what was searched
    none = _source("none", "stac", srv.url("/api"), collections=["noaa-emergency-response"], datetime="2023")
    fetch_source(none, tmp_path / "none", limits=LOOPBACK_LIMITS)
    with pytest.raises(SceneRejected, match="no STAC items matched"):
        StacAdapter().scenes(tmp_path / "none", none)


def test_whole_file_download_with_checksum_and_features_only_api(world, tmp_path):
    srv = world.srv
    src = _source("noaa", "stac", srv.url("/api"), collections=["noaa-emergency-response"], assets=["cog"])
    rec = fetch_source(src, tmp_path / "noaa", limits=LOOPBACK_LIMITS)
    scenes, _ = _scenes(StacAdapter(), tmp_path / "noaa", src)
    (scene,) = scenes.values()
    assert Path(scene.image).read_bytes() == world.rasters["noaa"]
    assert (scene.license, scene.attribution) == ("public-domain", "NOAA National Geodetic Survey")
    assert rec["items"][0]["read"] == "whole" and rec["items"][0]["transferred"] == len(world.rasters["noaa"])
    asset = world.items["noaa"]["assets"]["cog"]
    good, asset["file:checksum"] = asset["file:checksum"], "1220" + "0" * 64
    old_conformance, srv.conformance = srv.conformance, [c for c in CONFORMANCE if "item-search" not in c]
    try:
        srv.reset_counters()
        bad = fetch_source(src, tmp_path / "noaa-bad", limits=LOOPBACK_LIMITS)
        paths = {r["path"] for r in srv.requests}  # no /search without the item-search conformance class
        assert "/api/collections/noaa-emergency-response/items" in paths and "/api/search" not in paths
        assert "sha256 mismatch" in bad["rejects"][0]["reason"] and bad["items"] == []
        cql2 = {"op": "=", "args": [{"property": "event"}, "Nashville Tornado"]}
        with pytest.raises(FetchError, match="filter"):
            find_items(srv.url("/api"), StacQuery(filter=cql2), session=http_session(limits=LOOPBACK_LIMITS))
        srv.conformance = CONFORMANCE + ["https://api.stacspec.org/v1.0.0-rc.2/item-search#filter"]
        srv.reset_counters()
        find_items(srv.url("/api"), StacQuery(filter=cql2), session=http_session(limits=LOOPBACK_LIMITS))
        assert [(r["body"]["filter"], r["body"]["filter-lang"]) for r in srv.requests if r["path"] == "/api/search"] \
            == [(cql2, "cql2-json")]
    finally:
        asset["file:checksum"], srv.conformance = good, old_conformance


def _copy_catalog(world, root: Path) -> None:
    for path, data in {**json_docs(world.srv), **world.srv.files}.items():
        if path.startswith("/static/"):
            target = root / path.removeprefix("/static/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def test_static_catalog_on_disk_and_on_s3(world, tmp_path, moto_s3):
    import boto3

    _copy_catalog(world, tmp_path / "cat")
    expected = read_window(world.rasters[BIG], Window(980, 1113, 1240, 1240))
    event = tmp_path / "cat" / "events" / EVENT / "collection.json"
    local = _source("local", "stac", str(event), bbox=world.maxar_bbox)
    rec = fetch_source(local, tmp_path / "raw-local", limits=LOOPBACK_LIMITS)
    # local files need no COG layout: the plain GeoTIFF is cut locally too
    assert [i["read"] for i in rec["items"]] == ["local window"] * 2 and rec["transfer"]["asset_bytes"] == 0
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="maxar-opendata", ACL="public-read")
    for p in sorted((tmp_path / "cat").rglob("*")):
        if p.is_file():
            s3.put_object(Bucket="maxar-opendata", Key=f"events/{p.relative_to(tmp_path / 'cat' / 'events')}",
                          Body=p.read_bytes())
    remote = _source("s3", "stac", f"s3://maxar-opendata/events/{EVENT}/collection.json", bbox=world.maxar_bbox,
                     endpoint_url=moto_s3)
    rec = fetch_source(remote, tmp_path / "raw-s3", limits=LOOPBACK_LIMITS)
    item = next(i for i in rec["items"] if i["item_id"].endswith(BIG))
    assert item["href"].startswith("s3://maxar-opendata/") and item["read"] == "window"
    assert 0 < item["transferred"] < len(world.rasters[BIG]) / 2
    for raw in ("raw-local", "raw-s3"):
        with rasterio.open(tmp_path / raw / "images" / "11_031311102001_10300100aaa00100.tif") as ds:
            assert np.array_equal(ds.read(), expected) and ds.crs.to_epsg() == 32611
    assert len(rec["rejects"]) == 5


def test_build_from_stac_sources_and_a_rerun_without_network(world, tmp_path):
    srv = world.srv
    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: maxar-la
    kind: stac
    location: {world.maxar_event_url}
    license: CC BY-NC 4.0
    attribution: Maxar Open Data Program
    options: {{bbox: {world.maxar_bbox}, region: los_angeles}}
  - name: oam-dar
    kind: openaerialmap
    location: {srv.url('/api')}
    license: CC BY 4.0
    attribution: OpenAerialMap contributors
    options: {{bbox: {world.dar_bbox}, region: dar_es_salaam}}
  - name: noaa
    kind: stac
    location: {srv.url('/api')}
    license: public domain
    attribution: NOAA
    options: {{collections: [noaa-emergency-response], assets: [cog], region: nashville}}
""")
    srv.reset_counters()
    # every tile is pending (STAC sources bring no labels): the first build refuses an empty release
    assert not build_in_process(tmp_path, "r1", loopback=True)
    assert not (tmp_path / "data" / "releases" / "r1").exists()
    big = world.cog_paths[BIG]
    sent_big = srv.sent[big]
    assert 0 < sent_big < len(world.rasters[BIG]) / 2
    # annotate every pending tile, then build again: nothing is fetched, the STAC scenes are released
    todo, done = tmp_path / "data" / "annotation" / "todo", tmp_path / "data" / "annotation" / "done"
    done.mkdir(parents=True)
    keys = sorted(p.name.removesuffix("_image.tif") for p in todo.glob("*_image.tif"))
    assert {split_tile_key(k)[0] for k in keys} == {"maxar-la", "oam-dar", "noaa"}
    for key in keys:
        with rasterio.open(todo / f"{key}.tif") as ds:
            profile, shape = ds.profile, (ds.height, ds.width)
        with rasterio.open(done / f"{key}.tif", "w", **profile) as out:
            out.write((np.indices(shape).sum(axis=0) // 128 % 8 + 1).astype(np.uint8), 1)
    srv.reset_counters()
    assert build_in_process(tmp_path, "r2", loopback=True)
    assert srv.requests == []
    rel = tmp_path / "data" / "releases" / "r2"
    assert validate_release(rel) == []
    prov = json.loads((rel / "provenance" / "maxar-la.json").read_text())
    assert prov["transfer"]["asset_bytes"] == sent_big and prov["items"][0]["self"].endswith(f"{BIG}.json")
    rejects = list(csv.DictReader((rel / "rejects.csv").open()))
    maxar = {Path(r["file"]).name: r for r in rejects if r["source"] == "maxar-la"}
    assert len(maxar) == 5 and maxar["10300100EEE00500-visual.tif"]["stage"] == "fetch"
    assert maxar["10300100EEE00500-visual.tif"]["scene_id"] == "11_031311102002_10300100eee00500"
    manifest = json.loads((rel / "manifest.json").read_text())
    assert {im["key"] for im in manifest["images"]} == set(keys)
    by_source: dict[str, set] = {}
    for im in manifest["images"]:
        by_source.setdefault(im["source"], set()).add((im["license"], im["attribution"], im["acquired"]))
    assert by_source == {
        "maxar-la": {("CC-BY-NC-4.0", "Maxar", "2024-12-14T18:53:50Z")},
        "oam-dar": {("CC-BY-4.0", "Drone Lab Dar", "2019-03-02T08:00:00Z"),
                    ("CC-BY-NC-4.0", "Kijiji Mapping", "2020-07-15T08:00:00Z")},
        "noaa": {("public-domain", "NOAA National Geodetic Survey", "2020-03-11T17:00:00Z")},
    }
    _keep_licences(world, tmp_path, keys)


def _keep_licences(world, tmp_path: Path, keys: list[str]) -> None:
    """``options.licences`` on the OpenAerialMap source keeps its CC BY image (``CC BY 4.0`` names the item's
    ``CC-BY-4.0``): its STAC search is made again into a new raw folder started from the earlier one, so no asset
    byte is transferred again and nothing is processed again, and its CC BY-NC scene is a catalog reject naming
    its licence and the option."""
    scene_work = sorted((tmp_path / "data" / "work" / "scenes").rglob("*"))
    sources = tmp_path / "sources.yaml"
    sources.write_text(sources.read_text().replace("region: dar_es_salaam}", "region: dar_es_salaam, "
                                                   "licences: [CC BY 4.0]}"))
    plan = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--json", "--PipelineConfig-data-dir",
                           str(tmp_path / "data"), "--PipelineConfig-sources-file", str(sources),
                           "--PipelineConfig-release", "r3", "--PipelineConfig-split-trials", "50",
                           "--PipelineConfig-allow-private-networks", "true"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-3000:]
    oam = next(s for s in json.loads(plan.stdout)["sources"] if s["name"] == "oam-dar")
    why = "only its licence, attribution, regions, acquisition range or options.licences changed (its files and "
    assert oam["fetch"] == {"action": "refetch", "why": why + "scenes' work are reused)"}
    world.srv.reset_counters()
    assert build_in_process(tmp_path, "r3", loopback=True)
    assert world.srv.requests and all(r["path"] not in world.srv.files for r in world.srv.requests)  # no asset
    assert sorted((tmp_path / "data" / "work" / "scenes").rglob("*")) == scene_work  # nor processed again
    rel = tmp_path / "data" / "releases" / "r3"
    assert validate_release(rel) == []
    manifest = json.loads((rel / "manifest.json").read_text())
    kept = {(im["source"], im["license"]) for im in manifest["images"]}
    assert ("oam-dar", "CC-BY-4.0") in kept and ("oam-dar", "CC-BY-NC-4.0") not in kept
    assert {im["key"] for im in manifest["images"]} == {k for k in keys if "oam-5d00bb" not in k}
    refused = [r for r in csv.DictReader((rel / "rejects.csv").open()) if r["source"] == "oam-dar"]
    assert sorted((r["scene_id"], r["stage"], r["reason"]) for r in refused) == [  # its annotation is left unused
        ("oam-5d00bb", "annotation", "not used: source 'oam-dar' has no tile of scene 'oam-5d00bb' in this build"),
        ("oam-5d00bb", "catalog", "licence 'CC-BY-NC-4.0' is not one of options.licences (CC BY 4.0)")]
    assert next(r["file"] for r in refused if r["stage"] == "catalog").endswith("/items/5d00bb")  # the item named


def test_licences_refuse_items_before_their_asset_is_read_and_a_wider_choice_fetches_only_the_rest(world, tmp_path):
    """``options.licences`` on a STAC source (OpenAerialMap's API: one CC BY item, one CC BY-NC): the refused item's
    asset is never requested, it is a ``catalog`` reject naming the item and its licence; widening the option
    in a raw folder started from that one (what ``FetchSource`` does, :mod:`pipeline.sources.rawreuse`) reads only
    the asset it refused before."""
    from pipeline.sources.rawreuse import seed_raw

    srv = world.srv
    narrow = _source("dar", "openaerialmap", srv.url("/api"), bbox=world.dar_bbox, licences=["CC BY 4.0"])
    srv.reset_counters()
    first = fetch_source(narrow, tmp_path / "a" / "files", limits=LOOPBACK_LIMITS)
    assets = {p for p in srv.files if p.startswith("/oin/")}
    asked = lambda: {r["path"] for r in srv.requests if r["path"] in assets}  # noqa: E731
    assert asked() == {"/oin/5d00aa/0/5d00aa.tif"}
    assert [i["scene_id"] for i in first["items"]] == ["oam-5d00aa"]
    assert [(r["scene_id"], r["stage"], r["reason"]) for r in first["rejects"]] == [
        ("oam-5d00bb", "catalog", "licence 'CC-BY-NC-4.0' is not one of options.licences (CC BY 4.0)")]
    assert first["rejects"][0]["file"].endswith("/items/5d00bb")
    scenes, rejected = _scenes(OpenAerialMapAdapter(), tmp_path / "a" / "files", narrow)
    assert list(scenes) == ["oam-5d00aa"] and [r.scene_id for r in rejected] == ["oam-5d00bb"]

    wide = _source("dar", "openaerialmap", srv.url("/api"), bbox=world.dar_bbox,
                   licences=["CC BY 4.0", "CC BY-NC 4.0"])
    seed_raw(tmp_path / "b" / "files", tmp_path / "a" / "files")
    srv.reset_counters()
    second = fetch_source(wide, tmp_path / "b" / "files", limits=LOOPBACK_LIMITS)
    assert asked() == {"/oin/5d00bb/0/5d00bb.tif"}  # the CC BY window is the earlier folder's file
    assert sorted(i["scene_id"] for i in second["items"]) == ["oam-5d00aa", "oam-5d00bb"] and not second["rejects"]
    reused = {i["scene_id"]: i["transferred"] for i in second["items"]}
    assert reused["oam-5d00aa"] == 0 and reused["oam-5d00bb"] > 0


@pytest.mark.parametrize("max_items", [1, 2])
def test_max_items_counts_scenes_fetched_not_rejected_items(world, tmp_path, max_items):
    # the event has 2 usable items among 7 (broken JSON, no geometry, missing assets, a CRS that contradicts
    # the file), rejects met before the second good one in the catalog: max_items scenes come out anyway
    _copy_catalog(world, tmp_path / "cat")
    event = tmp_path / "cat" / "events" / EVENT / "collection.json"
    src = _source("ev", "stac", str(event), max_items=max_items)
    rec = fetch_source(src, tmp_path / "raw", limits=LOOPBACK_LIMITS)
    assert len(rec["items"]) == max_items, (rec["items"], rec["rejects"])
    if max_items == 2:  # items rejected on the way (a missing asset among them) are rows, not scenes
        assert any("No such file" in r["reason"] for r in rec["rejects"]), rec["rejects"]
    everything = fetch_source(_source("ev", "stac", str(event)), tmp_path / "all", limits=LOOPBACK_LIMITS)
    assert len(everything["items"]) == 2 and everything["catalog"]["truncated"] is False
    # the scenes are the first usable ones in the catalog's order
    assert [i["item_id"] for i in rec["items"]] == [i["item_id"] for i in everything["items"]][:max_items]


def test_unquoted_yaml_datetime_is_an_iso_date(world, tmp_path):
    from pipeline.sources.config import load_sources

    (tmp_path / "sources.yaml").write_text(f"""
sources:
  - name: day
    kind: stac
    location: {world.maxar_event_url}
    license: CC-BY-NC-4.0
    attribution: Maxar
    options: {{datetime: 2024-12-14, bbox: {world.maxar_bbox}, acquired_range: [2024-01-01, 2024-12-31]}}
  - name: instant
    kind: stac
    location: {world.maxar_event_url}
    license: CC-BY-NC-4.0
    attribution: Maxar
    options: {{datetime: 2023-01-02T03:04:05+01:00}}
""")
    day, instant = load_sources(tmp_path / "sources.yaml")
    assert day.options["datetime"] == "2024-12-14" and day.options["acquired_range"] == ["2024-01-01", "2024-12-31"]
    assert instant.options["datetime"] == "2023-01-02T02:04:05Z"
    rec = fetch_source(day, tmp_path / "raw", limits=LOOPBACK_LIMITS)
    assert [i["item_id"].split("/")[-1] for i in rec["items"]] == [BIG]
