"""Test catalogs shaped like the real ones, served by :class:`tests.stac_server.StacServer`.

* OpenAerialMap's STAC API (``/api``, collection ``openaerialmap``): items as HOT's stactools-hotosm writes
  them and the live API serves them: ``image`` or ``visual`` COG asset with ``file:size`` and ``proj:code``
  / ``proj:shape`` / ``proj:transform``, ``thumbnail`` and ``metadata`` assets, ``gsd`` (metres, or degrees
  for EPSG:4326 images), SPDX ``license``, top-level ``providers`` (producer + licensor), ``provider``,
  ``oam:platform_type``, ``oam:uploader_email``, ``datetime: null`` with ``start_datetime``/``end_datetime``.
* A NOAA-emergency-response-like collection on the same API: licence and providers only on the collection,
  a ``cog`` asset with a ``file:checksum``.
* Maxar Open Data (static, ``/static/events/``): root catalog -> event collection -> acquisition
  collections -> items with relative links and ``visual`` COG assets (JPEG, UTM ``proj:code``, 0.3 m
  pixels while the item's ``gsd`` is the sensor's 0.58 m), licence CC-BY-NC-4.0 on the collections only.
  Besides the good acquisition it has a broken item (invalid JSON), one without geometry, one whose asset
  is missing (404), one whose asset is not a COG, one whose ``proj:code`` contradicts the file, and one
  outside the bbox.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from affine import Affine
from rasterio.warp import transform_bounds

from tests.stac_server import API, StacServer, geotiff_bytes, texture

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "oam": "https://hotosm.github.io/stactools-hotosm/oam/v0.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
}

# Maxar: Los Angeles, UTM 11N, a 4096 x 4096 visual COG at 0.3 m
LA_CRS, LA_X0, LA_Y0, LA_SIZE, LA_GSD = "EPSG:32611", 348000.0, 3800000.0, 4096, 0.3
LA_WINDOW_UTM = (348300.0, 3799300.0, 348660.0, 3799660.0)  # 360 m x 360 m: ~8 % of the image
EVENT = "WildFires-LosAngeles-Jan-2025"
# OpenAerialMap: Dar es Salaam, UTM 37S (0.15 m drone image) and EPSG:4326 (~0.3 m)
DAR_CRS, DAR_X0, DAR_Y0 = "EPSG:32737", 530000.0, 9248000.0
DAR_WINDOW_UTM = (530030.0, 9247640.0, 530720.0, 9247970.0)  # parts of both images
DEG = 2.7e-6  # ~0.3 m in degrees


def lonlat_box(crs: str, box: tuple) -> list[float]:
    return [round(v, 7) for v in transform_bounds(crs, "EPSG:4326", *box, densify_pts=21)]


def _polygon(b: list[float]) -> dict:
    w, s, e, n = b
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _grid(crs: str, x0: float, y0: float, res: float, size: int) -> tuple[Affine, list[float]]:
    t = Affine(res, 0, x0, 0, -res, y0)
    return t, lonlat_box(crs, (x0, y0 - res * size, x0 + res * size, y0))


def _extent(bbox: list, start: str) -> dict:
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[start, None]]}}


def _proj(crs: str, t: Affine, size: int) -> dict:
    return {"proj:code": crs, "proj:shape": [size, size], "proj:transform": list(t)[:6] + [0, 0, 1]}


@dataclass
class World:
    """What was served, for the assertions."""

    srv: StacServer
    cog_paths: dict[str, str] = field(default_factory=dict)  # name -> served path
    rasters: dict[str, bytes] = field(default_factory=dict)  # name -> bytes
    items: dict[str, dict] = field(default_factory=dict)  # name -> item

    def serve(self, name: str, path: str, data: bytes) -> str:
        self.srv.files[path] = data
        self.cog_paths[name], self.rasters[name] = path, data
        return self.srv.url(path)

    @property
    def maxar_event_url(self) -> str:
        return self.srv.url(f"/static/events/{EVENT}/collection.json")

    @property
    def maxar_bbox(self) -> list[float]:
        return lonlat_box(LA_CRS, LA_WINDOW_UTM)

    @property
    def dar_bbox(self) -> list[float]:
        return lonlat_box(DAR_CRS, DAR_WINDOW_UTM)


# --------------------------------------------------------------------------------------------- OpenAerialMap


def oam_item(base: str, oid: str, *, title: str, href: str, crs: str, t: Affine, size: int, bbox: list[float],
             gsd: float, license=None, providers=None, provider=None, key: str = "image", day: str = "2019-03-02",
             nbytes: int = 0) -> dict:
    props = {"title": title, "oam:platform_type": "uav", "gsd": gsd, "instruments": ["DJI Phantom 4 Pro"],
             "created": "2019-04-01T10:00:00Z", "datetime": None, "start_datetime": f"{day}T08:00:00Z",
             "end_datetime": f"{day}T09:30:00Z", "oam:uploader_email": "uploader@example.org"}
    if provider:
        props["provider"] = provider
    if license:
        props["license"] = license
    item = {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [EXT["file"], EXT["proj"], EXT["oam"]],
        "id": oid, "collection": "openaerialmap", "geometry": _polygon(bbox), "bbox": bbox, "properties": props,
        "links": [{"rel": "collection", "href": f"{base}{API}/collections/openaerialmap", "type": "application/json"},
                  {"rel": "self", "href": f"{base}{API}/collections/openaerialmap/items/{oid}",
                   "type": "application/geo+json"}],
        "assets": {
            key: {"href": href, "type": COG_TYPE, "title": title, "file:size": nbytes, **_proj(crs, t, size),
                  "roles": ["data"]},
            "thumbnail": {"href": href.replace(".tif", "_thumb.png"), "type": "image/png", "roles": ["thumbnail"]},
            "metadata": {"href": href.replace(".tif", "_meta.json"), "type": "application/json",
                         "roles": ["metadata"]},
        },
    }
    if providers:
        item["providers"] = providers
    return item


def _oam(world: World) -> None:
    srv, base = world.srv, world.srv.base
    t1, b1 = _grid(DAR_CRS, DAR_X0, DAR_Y0, 0.15, 2400)
    d1 = geotiff_bytes(texture(2400, 2400, 1), DAR_CRS, t1, compress="JPEG")
    h1 = world.serve("oam-utm", "/oin/5d00aa/0/5d00aa.tif", d1)
    corner = lonlat_box(DAR_CRS, (DAR_X0 + 380, DAR_Y0, DAR_X0 + 381, DAR_Y0 + 1))  # 20 m east of the first
    lon0, lat1 = corner[0], corner[3]
    t2 = Affine(DEG, 0, lon0, 0, -DEG, lat1)
    b2 = [lon0, lat1 - 1300 * DEG, lon0 + 1300 * DEG, lat1]
    d2 = geotiff_bytes(texture(1300, 1300, 2), "EPSG:4326", t2, compress="JPEG")
    h2 = world.serve("oam-4326", "/oin/5d00bb/0/5d00bb.tif", d2)
    items = {
        "oam-utm": oam_item(base, "5d00aa", title="Msasani drone survey", href=h1, crs=DAR_CRS, t=t1, size=2400,
                            bbox=b1, gsd=0.15, license="CC-BY-4.0", provider="Drone Lab Dar", nbytes=len(d1),
                            providers=[{"name": "Drone Lab Dar", "description": "Ali, ali@example.org",
                                        "roles": ["producer", "licensor"]}]),
        "oam-4326": oam_item(base, "5d00bb", title="Kinondoni", href=h2, crs="EPSG:4326", t=t2, size=1300, bbox=b2,
                             gsd=DEG, license="CC-BY-NC-4.0", provider="Kijiji Mapping", key="visual",
                             day="2020-07-15", nbytes=len(d2)),
        "oam-coarse": oam_item(base, "5d00cc", title="coarse", href=srv.url("/oin/cc.tif"), crs=DAR_CRS, t=t1,
                               size=2400, bbox=b1, gsd=0.8, license="CC-BY-4.0"),
        "oam-far": oam_item(base, "5d00dd", title="far away", href=srv.url("/oin/dd.tif"), crs="EPSG:32633",
                            t=t1, size=2400, bbox=[15.0, 48.0, 15.01, 48.01], gsd=0.1, license="CC-BY-4.0"),
    }
    world.items.update(items)
    srv.collections.append({
        "type": "Collection", "id": "openaerialmap", "stac_version": "1.1.0", "license": "CC-BY-4.0",
        "description": "OpenAerialMap (OAM) is a set of tools for searching, sharing, and using openly licensed "
                       "satellite and unmanned aerial vehicle (UAV) imagery.",
        "providers": [{"name": "OpenAerialMap", "url": "https://openaerialmap.org/", "roles": ["host", "licensor"]}],
        "extent": _extent([-180, -90, 180, 90], "2000-01-01T00:00:00Z"),
        "item_assets": {"image": {"type": COG_TYPE, "roles": ["data"]}},
    })
    srv.items.extend(items.values())


def _noaa(world: World) -> None:
    srv = world.srv
    t = Affine(DEG, 0, -86.79, 0, -DEG, 36.17)
    data = geotiff_bytes(texture(1200, 1200, 3), "EPSG:4326", t, compress="JPEG")
    href = world.serve("noaa", "/noaa/20200311a_RGB/20200311aC0867600w361600n.tif", data)
    bbox = [-86.79, 36.17 - 1200 * DEG, -86.79 + 1200 * DEG, 36.17]
    item = {
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [EXT["file"], EXT["proj"]],
        "id": "20200311aC0867600w361600n", "collection": "noaa-emergency-response",
        "geometry": _polygon(bbox), "bbox": bbox,
        "properties": {"datetime": "2020-03-11T17:00:00Z", "event": "Nashville Tornado", "proj:code": "EPSG:4326"},
        "links": [],
        "assets": {"cog": {"href": href, "type": COG_TYPE, "roles": ["data"], "file:size": len(data),
                           "file:checksum": "1220" + hashlib.sha256(data).hexdigest()}},
    }
    world.items["noaa"] = item
    srv.items.append(item)
    srv.collections.append({
        "type": "Collection", "id": "noaa-emergency-response", "stac_version": "1.0.0", "license": "public-domain",
        "description": "NOAA emergency response imagery",
        "providers": [{"name": "NOAA National Geodetic Survey", "roles": ["producer", "licensor"]},
                      {"name": "Loopback hosting", "roles": ["host"]}],
        "extent": _extent([-87, 36, -86, 37], "2020-03-07T00:00:00Z"),
    })


# --------------------------------------------------------------------------------------------- Maxar


def maxar_item(base: str, cat: str, quadkey: str, *, bbox: list[float], crs: str, t: Affine, size: int,
               date: str = "2024-12-14") -> dict:
    """An item as Maxar's ARD catalog writes it (the asset hrefs are relative to the item)."""
    folder = f"{base}/static/events/{EVENT}/ard/11/{quadkey}/{date}"
    return {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [EXT["view"], EXT["proj"]],
        "id": f"11/{quadkey}/{cat}", "geometry": _polygon(bbox), "bbox": bbox,
        "properties": {"datetime": f"{date}T18:53:50Z", "platform": "WV02", "gsd": 0.58, "catalog_id": cat,
                       "utm_zone": 11, "quadkey": quadkey, "view:off_nadir": 27.5, "proj:code": crs,
                       "tile:clouds_percent": 0},
        "links": [{"rel": "self", "href": f"{folder}/{cat}.json", "type": "application/json"},
                  {"rel": "collection", "href": f"../../../acquisition_collections/{cat}_collection.json"}],
        "assets": {
            "visual": {"href": f"./{cat}-visual.tif", "type": COG_TYPE, "title": "Visual Image", **_proj(crs, t, size),
                       "roles": ["visual"]},
            "data-mask": {"href": f"./{cat}-data-mask.gpkg", "type": "application/geopackage+sqlite3",
                          "roles": ["data-mask"]},
        },
        "collection": cat,
    }


def _collection(cid: str, links: list[dict], **extra) -> dict:
    return {"type": "Collection", "id": cid, "stac_version": "1.1.0", "description": cid, "license": "CC-BY-NC-4.0",
            "extent": _extent(extra.pop("bbox", [-180, -90, 180, 90]), "2024-12-01T00:00:00Z"),
            "links": links, **extra}


def _maxar(world: World) -> None:
    srv, base = world.srv, world.srv.base
    t, bbox = _grid(LA_CRS, LA_X0, LA_Y0, LA_GSD, LA_SIZE)
    big = geotiff_bytes(texture(LA_SIZE, LA_SIZE, 4), LA_CRS, t, compress="JPEG")
    small_t, _ = _grid(LA_CRS, 348200.0, 3799800.0, LA_GSD, 1024)
    plain = geotiff_bytes(texture(1024, 1024, 5), LA_CRS, small_t, cog=False)
    far = [-100.0, 40.0, -99.99, 40.01]
    ev = f"/static/events/{EVENT}"
    # acquisition -> (quadkey, item or raw bytes, asset file or None)
    def item(cat: str, qk: str, **kw) -> dict:
        return maxar_item(base, cat, qk, **{"bbox": bbox, "crs": LA_CRS, "t": t, "size": LA_SIZE, **kw})

    qk1, qk2 = "031311102001", "031311102002"
    # acquisition -> (quadkey, item (or raw bytes), its visual asset (None: not served))
    acq = {
        "10300100AAA00100": (qk1, item("10300100AAA00100", qk1), big),
        "10300100BBB00200": (qk1, b'{"type": "Feature", "id": "11/031311102001/10300100BBB00200", ', None),
        "10300100CCC00300": (qk1, {**item("10300100CCC00300", qk1), "geometry": None, "bbox": None}, None),
        "10300100DDD00400": (qk2, item("10300100DDD00400", qk2), None),
        "10300100EEE00500": (qk2, item("10300100EEE00500", qk2, t=small_t, size=1024), plain),
        "10300100FFF00600": (qk2, item("10300100FFF00600", qk2, crs="EPSG:32612", t=small_t, size=1024), plain),
        "10300100GGG00700": ("031311103000", item("10300100GGG00700", "031311103000", bbox=far), None),
    }
    children = []
    for cat, (qk, doc, raster) in acq.items():
        folder = f"{ev}/ard/11/{qk}/2024-12-14"
        srv.docs[f"{folder}/{cat}.json"] = doc
        if isinstance(doc, dict):
            world.items[cat] = doc
        if raster is not None:
            world.serve(cat, f"{folder}/{cat}-visual.tif", raster)
        links = [{"rel": "item", "href": f"../11/{qk}/2024-12-14/{cat}.json", "type": "application/json"},
                 {"rel": "parent", "href": "../../collection.json"}, {"rel": "root", "href": "../../../catalog.json"}]
        srv.docs[f"{ev}/ard/acquisition_collections/{cat}_collection.json"] = _collection(
            cat, links, bbox=far if cat.startswith("10300100GGG") else bbox)
        children.append({"rel": "child", "href": f"./ard/acquisition_collections/{cat}_collection.json"})
    srv.docs[f"{ev}/collection.json"] = _collection(
        EVENT, children + [{"rel": "root", "href": "../catalog.json"}], title="Los Angeles wildfires, January 2025",
        providers=[{"name": "Maxar", "url": "https://www.maxar.com/open-data",
                    "roles": ["licensor", "producer"]}])
    srv.docs["/static/events/catalog.json"] = {
        "type": "Catalog", "id": "maxar-opendata", "stac_version": "1.1.0",
        "description": "Maxar ARD Open Data Catalog", "license": "CC-BY-NC-4.0",
        "links": [{"rel": "child", "href": f"./{EVENT}/collection.json"},
                  {"rel": "child", "href": "./Other-Event/collection.json"}, {"rel": "root", "href": "./catalog.json"}]}
    srv.docs["/static/events/Other-Event/collection.json"] = _collection("Other-Event", [])


def build_world(srv: StacServer) -> World:
    world = World(srv)
    _oam(world)
    _noaa(world)
    _maxar(world)
    return world


def json_docs(srv: StacServer) -> dict[str, bytes]:
    """Every static document as the bytes served (for copying the catalog to disk or S3)."""
    return {p: d if isinstance(d, bytes) else json.dumps(d).encode() for p, d in srv.docs.items()}
