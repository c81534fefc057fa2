"""A STAC catalog for a release (``stac/collection.json`` + one Item per image; pystac, no Luigi here).

Layout (all links and asset hrefs relative, so the release folder can be moved or served as is)::

    stac/collection.json         Collection of the release (root of a self-contained catalog)
    stac/items/<id>.json         one Item per image, assets ``image`` and ``label``

Policies
--------
* STAC 1.1.0 with the projection (v1.2.0) and label (v1.0.1) extensions.  Projection v1.2.0, not v2.0.0:
  it is the one version that has both ``proj:code`` and the deprecated-but-allowed ``proj:epsg`` (v2.0.0
  forbids ``proj:epsg``), and tools that read only ``proj:epsg`` (older stackstac/odc-stac, the QGIS STAC
  plugin) need it.
* **Collection**: id ``oem`` in every release (the release names its title and description), so the item of an
  image that two releases share is the same bytes in both: a release that continues another hard-links those
  items instead of writing them (STAC's versioning model: one collection id, one version per catalog; load one
  release per STAC API collection); extent = union of the items' WGS 84 footprints and the time range
  covering every item (its acquisition time, or its ``start_datetime``..``end_datetime``); ``license`` the
  single SPDX id shared by every image, else ``other`` with a ``license`` link to the release card
  (``../README.md``, whose Licences section says which images are under which terms); one provider per source
  (licensor + producer, its attribution and licence text as description, its location as URL when that is
  http(s)) plus ``oem-pipeline`` as processor;
  ``item_assets`` describes ``image``/``label``; summaries: ``gsd``, ``proj:code``, ``proj:epsg`` (the
  integer codes, for clients that predate ``proj:code``), ``split``, ``continent``, ``region``, ``country``,
  ``source``, ``license`` (the images' SPDX ids), ``label:type``, ``label:tasks``, ``label:classes`` and
  ``classes`` (``{"id", "name", "color"}`` of the 8 classes, as in the manifest).
* **Item** (id = image id): geometry = the tile's UTM rectangle with its four corners transformed to
  WGS 84 (lon/lat, 7 decimals), bbox its bounds; ``datetime`` = acquisition date (midnight UTC) when
  known, else ``null`` with ``start_datetime``/``end_datetime`` = the source's documented imagery period
  (the manifest source's ``acquired_range``: ``options.acquired_range`` or the adapter's default, e.g. xBD
  2011-01-01..2019-12-31, else :data:`pipeline.sources.adapters.UNKNOWN_ACQUISITION`; start at 00:00:00Z,
  end at 23:59:59Z) -- never an open placeholder that matches every date filter;
  properties ``split, region, country, country_code, continent, source, source_kind, gsd, license,
  attribution`` (and ``key`` when the record has one); projection ``proj:code, proj:transform,
  proj:shape [height, width], proj:bbox`` (native CRS) and ``proj:epsg`` (the integer code, when the
  CRS is an EPSG code; the collection summarises both).  Label extension, one vocabulary throughout, the class ids:
  ``label:type raster``, ``label:classes [{"name": null, "classes": [1..8]}]`` (the extension's schema
  requires ``name`` null for raster labels: the classes are the pixel values), ``label:properties null``
  (a raster has no feature property), ``label:overviews [{"counts": [{"name": "1", "count": n}, ...]}]``
  with the same ids as strings (the schema requires string names), so counts join ``label:classes`` by
  id; the class names are in the collection's ``classes`` summary; ``label:tasks ["segmentation"]``.
  Assets ``image`` (COG, roles ``data``) and ``label`` (COG, roles ``labels, labels-raster``) point at
  ``../../<region>/images|labels/<id>.tif``.  An item's links (root, collection, parent: ``../collection.json``)
  carry no title, so nothing in an item names its release.
* Output is deterministic: items in natural id order, no timestamps, canonical JSON.

Offline validation of the catalog: :mod:`pipeline.release.validate.stac`.
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.constants import CLASS_IDS, CLASS_NAMES, SPLITS
from pipeline.dataset.ids import natural_key
from pipeline.licences import spdx_license
from pipeline.release.card import CARD
from pipeline.release.footprints import epsg_of, footprint_lonlat, footprints_bbox, footprints_lonlat
from pipeline.release.manifest import class_table
from pipeline.sources.adapters import UNKNOWN_ACQUISITION

STAC_DIR = "stac"
COLLECTION = f"{STAC_DIR}/collection.json"
ITEMS_DIR = f"{STAC_DIR}/items"
STAC_VERSION = "1.1.0"
#: The collection id of every release (module docstring).
COLLECTION_ID = "oem"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
LABEL_SCHEMA = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

# --- footprints ----------------------------------------------------------------------------------

def _bbox(ring: Sequence[Sequence[float]]) -> list[float]:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return [min(xs), min(ys), max(xs), max(ys)]


def acquired_time(rec: dict[str, Any]) -> datetime | None:
    """The record's ``acquired`` as an aware UTC datetime (a date alone is midnight UTC), None when unknown
    or unparsable."""
    return _acquired(rec)


def _acquired(rec: dict[str, Any]) -> datetime | None:
    value = rec.get("acquired")
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --- building -------------------------------------------------------------------------------------

def _label_fields(rec: dict[str, Any]) -> dict[str, Any]:
    counts = rec.get("class_pixels") or {}
    return {
        "label:type": "raster",
        "label:properties": None,
        "label:classes": [{"name": None, "classes": list(CLASS_IDS)}],
        "label:tasks": ["segmentation"],
        "label:description": "8-class land cover, one uint8 class id per pixel on the image grid: "
                             + ", ".join(f"{c} {CLASS_NAMES[c]}" for c in CLASS_IDS) + "; 0 = unlabelled",
        "label:overviews": [{"counts": [{"name": str(c), "count": int(counts.get(str(c), 0))} for c in CLASS_IDS]}],
    }


def time_range(rec: dict[str, Any], ranges: dict[str, Sequence[str]] | None = None) -> tuple[datetime, datetime]:
    """``(start, end)`` of an image without an acquisition time: its source's ``acquired_range`` in ``ranges``
    (source name -> [start, end] ISO dates), else :data:`UNKNOWN_ACQUISITION`; start 00:00:00Z, end 23:59:59Z."""
    start, end = (ranges or {}).get(str(rec.get("source")), UNKNOWN_ACQUISITION)
    s = datetime.fromisoformat(str(start)[:10]).replace(tzinfo=UTC)
    e = datetime.fromisoformat(str(end)[:10]).replace(tzinfo=UTC, hour=23, minute=59, second=59)
    return s, e


def _span(rec: dict[str, Any], ranges: dict[str, Sequence[str]] | None) -> tuple[datetime, datetime]:
    when = _acquired(rec)
    return (when, when) if when is not None else time_range(rec, ranges)


def build_item(rec: dict[str, Any], collection_id: str, ranges: dict[str, Sequence[str]] | None = None,
               ring: list[list[float]] | None = None):
    """The pystac Item of one manifest image record (hrefs relative to ``stac/items/<id>.json``); ``ranges``:
    source name -> ``acquired_range`` (:func:`time_range`); ``ring``: its :func:`footprint_lonlat` when known."""
    import pystac

    ring = ring if ring is not None else footprint_lonlat(rec)
    when = _acquired(rec)
    props: dict[str, Any] = {}
    if when is None:
        start, end = time_range(rec, ranges)
        props.update(start_datetime=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end_datetime=end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    props.update({
        "split": rec["split"], "region": rec["region"], "country": rec.get("country"),
        "country_code": rec.get("country_code"), "continent": rec.get("continent"), "source": rec.get("source"),
        "source_kind": rec.get("source_kind"), "gsd": float(rec["gsd"]), "license": spdx_license(rec.get("license")),
        "attribution": rec.get("attribution") or "",
    })
    if rec.get("key"):
        props["key"] = rec["key"]
    props.update({
        "proj:code": str(rec["crs"]),
        **({"proj:epsg": epsg} if (epsg := epsg_of(str(rec["crs"]))) is not None else {}),
        "proj:transform": [float(v) for v in rec["transform"]],
        "proj:shape": [int(rec["height"]), int(rec["width"])],
        "proj:bbox": [float(v) for v in rec["bounds"]],
    })
    props.update(_label_fields(rec))
    item = pystac.Item(
        id=str(rec["id"]), geometry={"type": "Polygon", "coordinates": [ring]}, bbox=_bbox(ring),
        datetime=when, properties=props, stac_extensions=[PROJECTION_SCHEMA, LABEL_SCHEMA],
        collection=collection_id,
    )
    up = "../.."
    item.add_asset("image", pystac.Asset(
        href=posixpath.join(up, rec["image"]), media_type=COG_MEDIA_TYPE, roles=["data"],
        title="RGB image (3-band uint8 COG)"))
    item.add_asset("label", pystac.Asset(
        href=posixpath.join(up, rec["label"]), media_type=COG_MEDIA_TYPE, roles=["labels", "labels-raster"],
        title="Land-cover labels (1-band uint8 COG, ids 0..8)"))
    return item


def _providers(sources: Iterable[dict[str, Any]]):
    import pystac

    out = []
    for s in sorted(sources, key=lambda d: str(d.get("name", ""))):
        desc = "; ".join(x for x in (s.get("attribution"), f"licence: {s['license']}" if s.get("license") else "") if x)
        loc = str(s.get("location") or "")
        out.append(pystac.Provider(
            name=str(s["name"]), description=desc or None,
            roles=[pystac.ProviderRole.LICENSOR, pystac.ProviderRole.PRODUCER],
            url=loc if loc.startswith(("http://", "https://")) else None))
    out.append(pystac.Provider(name="oem-pipeline", roles=[pystac.ProviderRole.PROCESSOR],
                               description="tiled, resampled to 0.3-0.5 m in local UTM, labelled and split"))
    return out


def _summary(values: Iterable[Any]) -> list[Any]:
    vals = {v for v in values if v is not None}
    return sorted(vals, key=lambda v: natural_key(str(v)) if isinstance(v, str) else (0, v, ""))


def build_collection(records: Sequence[dict[str, Any]], *, release: str, sources: Sequence[dict[str, Any]],
                     title: str | None = None, href: str | None = None):
    """The pystac Collection of a release for its manifest image records, without its items (:func:`write_stac`
    adds them; its extent and summaries cover every record, the spatial extent their footprints': the items'
    ``bbox``, :func:`~pipeline.release.footprints.footprints_bbox`).  ``href``: the collection's file, its items
    then at ``items/<id>.json`` beside it."""
    import pystac

    cid = COLLECTION_ID
    order = sorted(range(len(records)), key=lambda i: natural_key(str(records[i]["id"])))
    recs = [records[i] for i in order]
    ranges = {str(s["name"]): s["acquired_range"] for s in sources if s.get("acquired_range")}
    bbox = footprints_bbox(records) or [-180.0, -90.0, 180.0, 90.0]
    spans = [_span(r, ranges) for r in recs]
    interval: list[list[datetime | None]] = ([[min(s for s, _ in spans), max(e for _, e in spans)]] if spans
                                             else [[None, None]])
    licenses = {spdx_license(r.get("license")) for r in recs}
    licence = next(iter(licenses)) if len(licenses) == 1 else "other"
    classes = class_table()
    collection = pystac.Collection(
        id=cid, title=title or f"OpenEarthMap-style land-cover release {release}",
        description=(f"Release {release}: {len(recs)} image tiles (1024x1024 px, 3-band uint8, 0.3-0.5 m GSD "
                     "in the local UTM zone) with 8-class raster labels on the same grid, split into train/val/test "
                     "per region (6:1:3). Classes: " + ", ".join(f"{c['id']} {c['name']}" for c in classes)
                     + "; 0 = unlabelled."),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent(interval)),
        license=licence,
        providers=_providers(sources),
        keywords=["land cover", "semantic segmentation", "OpenEarthMap", "benchmark"],
        stac_extensions=[PROJECTION_SCHEMA, LABEL_SCHEMA],
        summaries=pystac.Summaries({k: v for k, v in {
            "gsd": _summary(float(r["gsd"]) for r in recs),
            "proj:code": _summary(str(r["crs"]) for r in recs),
            "proj:epsg": _summary(epsg_of(str(r["crs"])) for r in recs),
            "split": [s for s in SPLITS if any(r["split"] == s for r in recs)],
            "continent": _summary(r.get("continent") for r in recs),
            "country": _summary(r.get("country") for r in recs),
            "region": _summary(r.get("region") for r in recs),
            "source": _summary(r.get("source") for r in recs),
            "license": _summary(spdx_license(r.get("license")) for r in recs),
            "label:type": ["raster"],
            "label:tasks": ["segmentation"],
            "label:classes": [{"name": None, "classes": list(CLASS_IDS)}],
            "classes": classes,
        }.items() if v}),  # STAC forbids empty summaries (a release whose tiles all await annotation)
    )
    collection.item_assets = {
        "image": pystac.ItemAssetDefinition.create(
            title="RGB image (3-band uint8 COG)", description=None, media_type=COG_MEDIA_TYPE, roles=["data"]),
        "label": pystac.ItemAssetDefinition.create(
            title="Land-cover labels (1-band uint8 COG, ids 0..8)", description=None, media_type=COG_MEDIA_TYPE,
            roles=["labels", "labels-raster"]),
    }
    if licence == "other":  # STAC asks for a link to the terms, the release card's per-licence section
        collection.add_link(pystac.Link("license", f"../{CARD}", media_type="text/markdown",
                                        title="Licences of the release's images (each keeps its source's)"))
    if href is not None:
        collection.set_self_href(href)
    return collection


def _add_items(collection, items: Sequence[Any]) -> None:
    """Add ``items`` to ``collection``, their self hrefs ``items/<id>.json`` beside the collection's when it has
    one: set before adding, because pystac looks an object's self and parent links up by scanning its links, so
    with the item links first every added item costs a scan of all of them (quadratic: 6 s for 5,000 items)."""
    import pystac

    href = collection.get_self_href()
    if href is not None:
        folder = posixpath.dirname(href)
        for item in items:
            item.set_self_href(posixpath.join(folder, ITEMS_DIR.removeprefix(f"{STAC_DIR}/"), f"{item.id}.json"))
    strategy = pystac.layout.AsIsLayoutStrategy()
    for item in items:
        collection.add_item(item, strategy=strategy)


def _dump(obj: dict[str, Any]) -> bytes:
    return atomic.indented_bytes(obj)


def _item_bytes(item: Any) -> bytes:
    """An item's file: canonical JSON, its links without titles (module docstring)."""
    data = item.to_dict(include_self_link=False, transform_hrefs=True)
    for link in data.get("links") or []:
        link.pop("title", None)
    return _dump(data)


def _reusable(records: Sequence[dict[str, Any]], sources: Sequence[dict[str, Any]],
              previous: tuple[Path, dict[str, Any]] | None) -> dict[str, str]:
    """Image id -> item file of the ``previous`` release (folder, manifest) made from an equal record and an
    equal source ``acquired_range`` (the same bytes as this release's item, the collection id being the same)."""
    if previous is None:
        return {}
    folder, manifest = previous
    try:
        if atomic.read_record(Path(folder) / COLLECTION)["id"] != COLLECTION_ID:
            return {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    before = {r.get("id"): r for r in manifest.get("images") or [] if isinstance(r, dict)}
    ranges = {s.get("name"): s.get("acquired_range") for s in sources}
    old_ranges = {s.get("name"): s.get("acquired_range") for s in manifest.get("sources") or []}
    return {r["id"]: f"{os.fspath(folder)}/{ITEMS_DIR}/{r['id']}.json" for r in records  # strings: 5,000 a release
            if before.get(r["id"]) == r and ranges.get(r.get("source")) == old_ranges.get(r.get("source"))}


def _link_or_copy(src: str | Path, dst: str | Path) -> bool:
    """Hard-link ``src`` to ``dst`` (a copy across file systems); False when ``src`` cannot be read."""
    try:
        os.link(src, dst)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        try:
            Path(dst).write_bytes(Path(src).read_bytes())
            return True
        except OSError:
            return False


def write_stac(out: Path, records: Sequence[dict[str, Any]], *, release: str, sources: Sequence[dict[str, Any]],
               title: str | None = None, previous: tuple[Path, dict[str, Any]] | None = None,
               reused: set[str] | None = None) -> list[str]:
    """Write the items (:func:`write_items`) and the collection (:func:`write_collection`) of the manifest image
    records into the release folder ``out``; returns the files relative to ``out``, the collection first."""
    items = write_items(out, records, sources=sources, previous=previous, reused=reused)
    return [write_collection(out, records, release=release, sources=sources, title=title), *items]


def write_items(out: Path, records: Sequence[dict[str, Any]], *, sources: Sequence[dict[str, Any]],
                previous: tuple[Path, dict[str, Any]] | None = None, reused: set[str] | None = None) -> list[str]:
    """Write ``stac/items/<id>.json`` into the release folder ``out`` (straight in: the folder is itself renamed
    whole) for the manifest image records; returns them relative to ``out``, natural id order.  ``sources``: the
    manifest's (their ``acquired_range``).  ``previous``: (folder, manifest) of a release written by this same
    code (the caller checks the release stage's code version): the item of an image whose record and source
    ``acquired_range`` equal that release's is a hard link of that release's item file (nothing in an item
    names its release: the same bytes as a rebuilt item's), no pystac object made.  ``reused`` (a set)
    receives those items' files (what :mod:`pipeline.release.validate.incremental` trusts)."""
    import pystac

    out = Path(out)
    recs = sorted(records, key=lambda r: natural_key(str(r["id"])))
    reuse = _reusable(recs, sources, previous)
    (out / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
    linked = {i for i, src in reuse.items() if _link_or_copy(src, f"{os.fspath(out)}/{ITEMS_DIR}/{i}.json")}
    if reused is not None:
        reused.update(f"{ITEMS_DIR}/{i}.json" for i in linked)
    fresh_recs = [r for r in recs if r["id"] not in linked]
    if fresh_recs:
        # the items' links are relative to the collection's file: an unsaved collection of the same id at the
        # same place gives the same bytes as the release's
        collection = build_collection(fresh_recs, release="", sources=sources, href=str(out / COLLECTION))
        collection.catalog_type = pystac.CatalogType.SELF_CONTAINED
        ranges = {str(s["name"]): s["acquired_range"] for s in sources if s.get("acquired_range")}
        fresh = [build_item(r, collection.id, ranges, ring)
                 for r, ring in zip(fresh_recs, footprints_lonlat(fresh_recs))]
        _add_items(collection, fresh)
        for item in fresh:
            item.set_parent(collection)  # links root, collection, parent: the order pystac's get_items() leaves
            (out / ITEMS_DIR / f"{item.id}.json").write_bytes(_item_bytes(item))
    return [f"{ITEMS_DIR}/{rec['id']}.json" for rec in recs]


def write_collection(out: Path, records: Sequence[dict[str, Any]], *, release: str,
                     sources: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """Write ``stac/collection.json`` (atomically) into the release folder ``out``, linking the items of
    ``records`` (:func:`write_items`); returns its path relative to ``out``."""
    import pystac

    root = Path(out) / COLLECTION
    recs = sorted(records, key=lambda r: natural_key(str(r["id"])))
    collection = build_collection(recs, release=release, sources=sources, title=title, href=str(root))
    collection.catalog_type = pystac.CatalogType.SELF_CONTAINED
    collection_dict = collection.to_dict(include_self_link=False, transform_hrefs=True)
    collection_dict["links"] = [link for link in collection_dict["links"] if link.get("rel") != "item"] + [
        {"href": f"./items/{r['id']}.json", "rel": "item", "type": "application/geo+json"} for r in recs]
    atomic.write_bytes(root, _dump(collection_dict))
    return COLLECTION
