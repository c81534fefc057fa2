"""OpenAerialMap's legacy catalog (``options.api: meta``): search, fetch and adapter against a loopback ``/meta``
endpoint (the STAC API, the default, is tested in test_stac_source.py).

The endpoint answers like hotosm/oam-api: ``{"meta": {provided_by, license, website, page, limit,
found}, "results": [...]}``, filters on bbox (footprint intersects) and gsd_from/gsd_to, sorts by gsd
ascending then acquisition_end descending, and pages with ``limit``/``page``.  The records' ``uuid`` is
the URL of a real small GeoTIFF served by the same server.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.errors import FetchError
from pipeline.sources.adapters.openaerialmap import OpenAerialMapAdapter
from pipeline.sources.config import SourceConfig
from pipeline.sources.fetch import fetch_source
from pipeline.sources.oam import build_params, search_catalog
from tests.loopback import LOOPBACK_LIMITS, LoopbackServer

BBOX = [39.2, -6.9, 39.4, -6.7]  # Dar es Salaam


def _geotiff(seed: int) -> bytes:
    """A real 3-band uint8 GeoTIFF (UTM 37S, 0.1 m) as bytes."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 255, size=(3, 16, 16), dtype=np.uint8)
    buf = io.BytesIO()
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=16, height=16, count=3, dtype="uint8", crs="EPSG:32737",
                      transform=Affine(0.1, 0.0, 530000.0, 0.0, -0.1, 9240000.0)) as ds:
            ds.write(data)
        buf.write(mem.read())
    return buf.getvalue()


def _record(i: int, base: str, *, gsd: float, lon: float, lat: float, **fields) -> dict:
    oid = f"5d{i:022x}"
    rec = {
        "_id": oid,
        "uuid": f"{base}/oin/upload{i}/0/{oid}.tif",
        "meta_uri": f"{base}/oin/upload{i}/0/{oid}_meta.json",
        "title": f"Scene {i}",
        "projection": 'PROJCS["WGS 84 / UTM zone 37S", ...]',
        "footprint": (f"POLYGON(({lon} {lat},{lon + 0.01} {lat},{lon + 0.01} {lat + 0.01},"
                      f"{lon} {lat + 0.01},{lon} {lat}))"),
        "gsd": gsd,
        "file_size": 1234,
        "acquisition_start": f"2019-0{1 + i % 9}-01T00:00:00.000Z",
        "acquisition_end": f"2019-0{1 + i % 9}-02T00:00:00.000Z",
        "platform": "uav",
        "tags": "",
        "uploaded_at": "2019-10-01T00:00:00.000Z",
        "user": {"_id": "u1", "name": "uploader"},
        "bbox": [lon, lat, lon + 0.01, lat + 0.01],
        "properties": {"tms": f"{base}/tiles/{oid}/{{z}}/{{x}}/{{y}}", "thumbnail": f"{base}/{oid}.png",
                       "sensor": "DJI", "dtype": "uint8", "bands": 3, "crs": "EPSG:32737"},
    }
    rec.update(fields)
    return rec


def _catalog(base: str) -> list[dict]:
    return [
        _record(1, base, gsd=0.05, lon=39.25, lat=-6.80, provider="OpenMap Dar", contact="Ali,ali@example.org",
                license="CC-BY 4.0"),
        _record(2, base, gsd=0.08, lon=39.30, lat=-6.85, provider="Drone Lab", contact=None,
                properties={"license": "CC-BY-NC 4.0", "sensor": "x"}),
        _record(3, base, gsd=0.12, lon=39.35, lat=-6.75),  # no licence, no provider: source defaults
        _record(4, base, gsd=0.30, lon=39.21, lat=-6.71, provider="Aerial Co", license="CC-BY 4.0"),
        _record(5, base, gsd=0.45, lon=39.38, lat=-6.88, contact="Someone", license="CC-BY-SA 4.0"),
        _record(6, base, gsd=0.80, lon=39.30, lat=-6.80, provider="Too coarse"),
        _record(7, base, gsd=0.04, lon=10.00, lat=50.00, provider="Elsewhere"),
    ]


def _intersects(a: list[float], b: list[float]) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _meta_route(records: list[dict]):
    def answer(q: dict[str, list[str]]):
        hits = list(records)
        if "bbox" in q:
            box = [float(v) for v in q["bbox"][0].split(",")]
            hits = [r for r in hits if _intersects(r["bbox"], box)]
        if "gsd_from" in q:
            hits = [r for r in hits if r["gsd"] >= float(q["gsd_from"][0])]
        if "gsd_to" in q:
            hits = [r for r in hits if r["gsd"] <= float(q["gsd_to"][0])]
        hits.sort(key=lambda r: r["acquisition_end"], reverse=True)
        hits.sort(key=lambda r: r["gsd"])
        limit = int(q.get("limit", ["100"])[0])
        page = int(q.get("page", ["1"])[0])
        body = {
            "meta": {"provided_by": "OpenAerialMap", "license": "CC-BY 4.0",
                     "website": "http://beta.openaerialmap.org", "page": page, "limit": limit,
                     "found": len(hits)},
            "results": hits[limit * (page - 1): limit * page],
        }
        return 200, body
    return answer


@pytest.fixture
def oam():
    with LoopbackServer() as srv:
        records = _catalog(srv.base)
        for i, rec in enumerate(records):
            srv.files[rec["uuid"][len(srv.base):]] = _geotiff(i)
        srv.routes["/meta"] = _meta_route(records)
        yield srv, records


def _source(base: str, **options) -> SourceConfig:
    opts = {"bbox": BBOX, "gsd_from": None, "gsd_to": 0.5, "acquisition_from": None, "acquisition_to": None,
            "limit": 2, "max_items": 50, "region": "dar_es_salaam", "sha256": {}, "region_override": None,
            "api": "meta", **options}
    return SourceConfig(name="oam-dar", kind="openaerialmap", location=base, license="CC-BY 4.0",
                        attribution="OpenAerialMap contributors", options=opts)


def test_build_params_matches_the_api():
    assert build_params(bbox=BBOX, gsd_to=0.5, acquisition_from="2018-01-01", limit=100) == {
        "bbox": "39.2,-6.9,39.4,-6.7", "gsd_to": "0.5", "acquisition_from": "2018-01-01", "limit": "100"}
    with pytest.raises(ValueError):
        build_params(bbox=[39.4, -6.7, 39.2])


def test_search_follows_pages_and_filters(oam):
    srv, records = oam
    items = search_catalog(srv.base, bbox=BBOX, gsd_to=0.5, limit=2, limits=LOOPBACK_LIMITS)
    assert [it["_id"] for it in items] == sorted(r["_id"] for r in records[:5])
    reqs = srv.requests_for("/meta")
    assert [r["query"]["page"] for r in reqs] == [["1"], ["2"], ["3"]]
    assert reqs[0]["query"]["bbox"] == ["39.2,-6.9,39.4,-6.7"]
    assert reqs[0]["query"]["gsd_to"] == ["0.5"] and reqs[0]["query"]["limit"] == ["2"]


def test_search_stops_at_found_and_max_items(oam):
    srv, records = oam
    # 4 found: 2 full pages
    items = search_catalog(srv.base + "/", gsd_from=0.05, gsd_to=0.3, limit=2, limits=LOOPBACK_LIMITS)
    assert len(items) == 4 and len(srv.requests_for("/meta")) == 2
    srv.requests.clear()
    items = search_catalog(srv.base, bbox=BBOX, gsd_to=0.5, limit=2, max_items=3, limits=LOOPBACK_LIMITS)
    assert len(srv.requests_for("/meta")) == 2
    # the three finest records (API order: gsd ascending), returned sorted by _id
    assert [it["gsd"] for it in items] == [0.05, 0.08, 0.12]


def test_search_retries_5xx_and_rejects_bad_shapes(oam):
    srv, _ = oam
    srv.queue("/meta", "500")
    assert len(search_catalog(srv.base, bbox=BBOX, gsd_to=0.5, limit=100, limits=LOOPBACK_LIMITS)) == 5
    srv.routes["/broken/meta"] = lambda q: (200, {"results": "nope"})
    with pytest.raises(FetchError, match="unexpected response"):
        search_catalog(srv.base + "/broken", limits=LOOPBACK_LIMITS)
    with pytest.raises(FetchError, match="HTTP 404"):
        search_catalog(srv.base + "/nothing", limits=LOOPBACK_LIMITS)


def test_fetch_openaerialmap_downloads_images_and_sidecars(oam, tmp_path):
    srv, records = oam
    src = _source(srv.base)
    dest = tmp_path / "raw" / "oam-dar"
    rec = fetch_source(src, dest, limits=LOOPBACK_LIMITS)
    wanted = sorted(records[:5], key=lambda r: r["_id"])
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [f"{r['_id']}.tif" for r in wanted] + [f"{r['_id']}.json" for r in wanted])
    for r in wanted:
        assert json.loads((dest / f"{r['_id']}.json").read_text()) == r
        with rasterio.open(dest / f"{r['_id']}.tif") as ds:
            assert ds.count == 3 and ds.crs.to_epsg() == 32737
    files = {f["path"]: f for f in rec["files"]}
    one = files[f"{records[0]['_id']}.tif"]
    assert one["url"] == records[0]["uuid"]
    assert one["sha256"] == hashlib.sha256((dest / one["path"]).read_bytes()).hexdigest()
    assert one["license"] == "CC-BY 4.0" and one["attribution"] == "OpenMap Dar (Ali,ali@example.org)"
    assert files[f"{records[1]['_id']}.tif"]["license"] == "CC-BY-NC 4.0"
    assert files[f"{records[2]['_id']}.tif"]["attribution"] == "OpenAerialMap contributors"
    assert [it["_id"] for it in rec["items"]] == [r["_id"] for r in wanted]
    assert rec["catalog"]["found"] == 5 and rec["catalog"]["meta"]["provided_by"] == "OpenAerialMap"

    # the task stores the record beside the data; the adapter must ignore it
    (dest / "fetch.json").write_text(json.dumps(rec))
    scenes = OpenAerialMapAdapter().scenes(dest, src)
    assert [s.scene_id for s in scenes] == [f"oam-{r['_id']}" for r in wanted]
    by_id = {s.scene_id: s for s in scenes}
    s1 = by_id[f"oam-{records[0]['_id']}"]
    assert s1.kind == "openaerialmap" and s1.source == "oam-dar"
    assert s1.image == str(dest / f"{records[0]['_id']}.tif")
    assert s1.license == "CC-BY 4.0" and s1.attribution == "OpenMap Dar (Ali,ali@example.org)"
    assert s1.acquired == records[0]["acquisition_start"] and s1.region_hint == "dar_es_salaam"
    assert s1.extra["oam_uuid"] == records[0]["uuid"] and s1.extra["gsd"] == 0.05
    assert s1.extra["platform"] == "uav"
    s2 = by_id[f"oam-{records[1]['_id']}"]
    assert (s2.license, s2.attribution) == ("CC-BY-NC 4.0", "Drone Lab")
    s3 = by_id[f"oam-{records[2]['_id']}"]
    assert (s3.license, s3.attribution) == ("CC-BY 4.0", "OpenAerialMap contributors")
    s5 = by_id[f"oam-{records[4]['_id']}"]
    assert (s5.license, s5.attribution) == ("CC-BY-SA 4.0", "Someone")

    # a second fetch downloads nothing again
    n = len(srv.requests)
    fetch_source(src, dest, limits=LOOPBACK_LIMITS)
    assert [r["path"] for r in srv.requests[n:]] == ["/meta"] * 3


def test_fetch_openaerialmap_cut_image_is_resumed(oam, tmp_path):
    srv, records = oam
    path = records[3]["uuid"][len(srv.base):]
    srv.queue(path, "cut")
    fetch_source(_source(srv.base), tmp_path / "o", limits=LOOPBACK_LIMITS)
    assert (tmp_path / "o" / f"{records[3]['_id']}.tif").read_bytes() == srv.files[path]
    assert srv.requests_for(path)[1]["headers"]["Range"].startswith("bytes=")


def test_fetch_openaerialmap_missing_image_costs_only_that_record(oam, tmp_path):
    """A record whose image is gone is named in the fetch record's ``rejects`` (the build makes it a
    rejects.csv row); the other records are fetched."""
    srv, records = oam
    del srv.files[records[2]["uuid"][len(srv.base):]]
    rec = fetch_source(_source(srv.base), tmp_path / "o", limits=LOOPBACK_LIMITS)
    assert rec["rejects"] == [{"path": f"{records[2]['_id']}.tif", "url": records[2]["uuid"],
                               "reason": "HTTP 404 Not Found"}]
    assert not (tmp_path / "o" / f"{records[2]['_id']}.json").exists()
    requested = {r["_id"] for r in records if srv.requests_for(r["uuid"][len(srv.base):])}
    assert len(requested) > 1 and records[2]["_id"] in requested
    assert sorted(f["path"] for f in rec["files"]) == sorted(f"{i}.tif" for i in requested - {records[2]["_id"]})


def test_adapter_rejects_record_without_image(oam, tmp_path):
    srv, records = oam
    (tmp_path / f"{records[0]['_id']}.json").write_text(json.dumps(records[0]))
    from pipeline.errors import SceneRejected
    with pytest.raises(SceneRejected, match="is missing"):
        OpenAerialMapAdapter().scenes(tmp_path, _source(srv.base))


def test_licences_refuse_records_before_their_image_is_downloaded(oam, tmp_path):
    """``options.licences`` on the catalog API: a record whose licence it does not list is never downloaded (its
    image URL is not requested), it is a ``catalog`` row with its scene id and licence, and the adapter lists
    only the others."""
    srv, records = oam
    src = _source(srv.base, licences=["CC BY 4.0"])
    dest = tmp_path / "o"
    rec = fetch_source(src, dest, limits=LOOPBACK_LIMITS)
    kept = {records[i]["_id"] for i in (0, 2, 3)}  # CC-BY 4.0 (the third by the source's default)
    for r in records[:5]:
        assert bool(srv.requests_for(r["uuid"][len(srv.base):])) == (r["_id"] in kept), r["_id"]
    assert sorted(f["path"] for f in rec["files"]) == sorted(f"{i}.tif" for i in kept)
    nc, sa = records[1], records[4]
    assert sorted(rec["rejects"], key=lambda r: r["path"]) == sorted([
        {"path": f"{nc['_id']}.tif", "url": nc["uuid"], "scene_id": f"oam-{nc['_id']}", "stage": "catalog",
         "reason": "licence 'CC-BY-NC 4.0' is not one of options.licences (CC BY 4.0)"},
        {"path": f"{sa['_id']}.tif", "url": sa["uuid"], "scene_id": f"oam-{sa['_id']}", "stage": "catalog",
         "reason": "licence 'CC-BY-SA 4.0' is not one of options.licences (CC BY 4.0)"}], key=lambda r: r["path"])
    (dest / "fetch.json").write_text(json.dumps(rec))
    assert sorted(s.scene_id for s in OpenAerialMapAdapter().scenes(dest, src)) == sorted(f"oam-{i}" for i in kept)
