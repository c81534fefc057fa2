"""Fetch one configured source into its raw folder and describe what was fetched.

:func:`fetch_source` dispatches on the source's kind and location scheme and returns the *fetch record*
the manifest later cites (URL, size, sha256, licence and attribution per file).  It writes nothing
outside ``dest``; a local folder is not copied at all (adapters read it in place).

On-disk layout per case (``dest`` = ``data/raw/<source>/``):

* local folder or plain file: nothing written; ``record["root"]`` is its absolute path.  Only regular files
  (or symlinks to them) are recorded, read no further than their size (:mod:`pipeline.sources.localfs`);
  FIFOs, devices, pseudo-files, symlinks to folders and files over ``local_file_max_bytes`` are left out
  and listed in ``record["skipped"]``.  A location that is a FIFO, a device or a pseudo-file fails.
* local archive (.zip/.tar/.tar.gz/.tgz/.tar.bz2, e.g. the registered xBD download): extracted into
  ``dest/`` (archive layout kept); marker ``dest/downloads/<archive name>.extracted.json``.
* http(s) archive: ``dest/downloads/<file name>`` then extracted into ``dest/`` (+ marker as above).
* http(s) plain file: ``dest/<file name>``.
* s3: every key below the prefix at ``dest/<key relative to prefix>``; keys that are archives go to
  ``dest/downloads/<key relative to prefix>`` and are extracted into ``dest/``.
* openaerialmap with ``options.api: meta``: ``dest/<_id>.tif`` (the image at the record's ``uuid`` URL)
  and ``dest/<_id>.json`` (the catalog record, written after the image).  A record whose image cannot be
  fetched (bad id or URL, refused by the network policy, over a limit, HTTP error) costs only itself: it is
  listed in ``record["rejects"]`` (``{"path", "url", "reason"}``) and the others are fetched.  A record whose
  licence ``options.licences`` does not list is never downloaded: a row with its ``scene_id`` and stage
  ``catalog`` too.
* stac, and openaerialmap on its STAC API (the default): ``dest/images/``, ``dest/items/`` and
  ``dest/stac-index.json`` (see :mod:`pipeline.sources.stac.fetch`; its rejected items are in the index).

Every download and extraction is bounded by ``limits`` (:class:`pipeline.limits.Limits`) and every URL,
redirect and connection is checked by the network policy (:mod:`pipeline.sources.netpolicy`), the S3
``options.endpoint_url`` of a source and the STAC searches, items and assets included.

For every case except the local folder, ``record["root"] == str(dest)``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pipeline import atomic
from pipeline.errors import ConfigError, FetchError, LimitExceeded
from pipeline.licences import licence_refused
from pipeline.limits import DEFAULT_LIMITS, Limits, human_sizes
from pipeline.sources.archive import extract_archive, is_archive
from pipeline.sources.config import SourceConfig
from pipeline.sources.download import download, file_digests
from pipeline.sources.localfs import check_file, file_kind, is_pseudo, sha256_bounded, sha256_remembered, walk_files
from pipeline.sources.netpolicy import check_url_limits
from pipeline.sources.oam import item_attribution, item_id, item_license, search_catalog_with_info
from pipeline.sources.s3 import download_key, list_keys, parse_s3_url

#: ``progress(bytes_done, bytes_total_or_None)`` for the file being transferred (as ``download`` takes).
FetchProgress = Callable[[int, int | None], None]

#: SpaceNet 2 product folders; keys under a product other than ``options.product`` are skipped.
SPACENET_PRODUCTS = ("RGB-PanSharpen", "MUL-PanSharpen", "MUL", "PAN")
_OAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DOWNLOADS = "downloads"


def _expected_sha(source: SourceConfig, *names: str) -> str | None:
    """The digest ``options.sha256`` gives for the first of ``names`` it has (relative path or name)."""
    table = (source.options or {}).get("sha256") or {}
    for name in names:
        if name in table:
            return str(table[name]).strip().lower()
    return None


def _safe_rel(origin: str, rel: str) -> str:
    """``rel`` normalised; FetchError when it is absolute or climbs out with ``..``."""
    rel = rel.replace("\\", "/")
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or norm in (".", "..") or norm.startswith("../"):
        raise FetchError(origin, f"path '{rel}' escapes the source folder")
    return norm


def _file_entry(path: str, url: str, nbytes: int, sha256: str, license: str, attribution: str) -> dict:
    return {"path": path, "url": url, "bytes": nbytes, "sha256": sha256, "license": license,
            "attribution": attribution}


def _extract_into(
    archive: Path, archive_url: str, archive_sha: str, dest: Path, source: SourceConfig, limits: Limits
) -> list[dict]:
    """Extract ``archive`` into ``dest`` unless the marker says this exact archive already was.

    Returns the file entries (paths relative to ``dest``) of what the archive holds.
    """
    marker = dest / DOWNLOADS / f"{archive.name}.extracted.json"
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except ValueError:
            old = None
        if (
            isinstance(old, dict)
            and old.get("sha256") == archive_sha
            and all((dest / f["path"]).is_file() and (dest / f["path"]).stat().st_size == f["bytes"]
                    for f in old.get("files", []))
        ):  # the source's terms as they are now (a raw folder started from an earlier one: pipeline.sources.rawreuse)
            return [dict(f, license=source.license, attribution=source.attribution) for f in old["files"]]
    extracted = extract_archive(archive, dest, limits=limits)
    files = []
    for path in extracted:
        rel = path.relative_to(dest).as_posix()
        files.append(_file_entry(rel, archive_url, path.stat().st_size, file_digests(path)["sha256"],
                                 source.license, source.attribution))
    atomic.write_json(marker, {"archive": archive.name, "url": archive_url, "sha256": archive_sha,
                               "files": files})
    return files


def _record(source: SourceConfig, root: Path) -> dict[str, Any]:
    return {
        "source": source.name,
        "kind": source.kind,
        "location": source.location,
        "license": source.license,
        "attribution": source.attribution,
        "root": str(root),
        "files": [],
        "archives": [],
        "items": [],
        "rejects": [],
    }


def _local_location(source: SourceConfig) -> tuple[Path, bool]:
    """The local location (absolute) and whether it is a folder; FetchError naming what else it is."""
    location = Path(os.path.expanduser(source.location)).absolute()
    if not os.path.lexists(location):
        raise FetchError(str(location), f"local location of source '{source.name}' does not exist")
    try:
        resolved = location.resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError) as exc:
        raise FetchError(str(location), f"local location of source '{source.name}' cannot be read: {exc}") from exc
    if is_pseudo(resolved):
        raise FetchError(str(location), f"local location of source '{source.name}' is {resolved}, a pseudo-file")
    kind = file_kind(mode)
    if kind not in ("folder", "regular file"):
        raise FetchError(str(location), f"local location of source '{source.name}' is a {kind}, "
                                        "not a file or a folder")
    return location, kind == "folder"


def _fetch_local(source: SourceConfig, dest: Path, progress: FetchProgress | None, limits: Limits,
                 hashes: dict[str, list] | None = None) -> dict[str, Any]:
    location, is_dir = _local_location(source)
    skipped: list[tuple[Path, str]] = []
    if not is_dir and is_archive(location):
        dest.mkdir(parents=True, exist_ok=True)
        rec = _record(source, dest)
        sha, nbytes = sha256_bounded(location, limits.local_file_max_bytes)
        want = _expected_sha(source, location.name)
        if want and sha != want:
            raise FetchError(str(location), f"sha256 mismatch: expected {want}, got {sha}")
        url = location.as_uri()
        rec["archives"].append(_file_entry(str(location), url, nbytes, sha, source.license, source.attribution))
        rec["files"] = _extract_into(location, url, sha, dest, source, limits)
        return rec
    if not is_dir:
        if location.suffix.lower() in (".7z", ".rar") or location.name.lower().endswith(".7z.001"):
            raise FetchError(str(location), "unsupported archive format: extract it first (e.g. with 7z) "
                                            "and point 'location' at the extracted folder")
        check_file(location, limits.local_file_max_bytes)
        files = [location]
    else:
        files, skipped = walk_files(location, limits)
    rec = _record(source, location)
    known, seen = dict(hashes or {}), dict[str, list]()
    for path in files:
        rel = path.name if location == path else path.relative_to(location).as_posix()
        try:
            sha, nbytes = sha256_remembered(path.absolute(), limits.local_file_max_bytes, known, seen, key=rel)
        except FetchError as exc:
            skipped.append((path, exc.reason))
            continue
        want = _expected_sha(source, rel, path.name)
        if want and sha != want:
            raise FetchError(str(path), f"sha256 mismatch: expected {want}, got {sha}")
        rec["files"].append(_file_entry(rel, path.as_uri(), nbytes, sha, source.license, source.attribution))
    if skipped:
        rec["skipped"] = [{"path": p.relative_to(location).as_posix(), "reason": why} for p, why in sorted(skipped)]
    if hashes is not None:  # what the next fetch of this folder need not read again
        hashes.clear()
        hashes.update(seen)
    return rec


def _fetch_http(source: SourceConfig, dest: Path, progress: FetchProgress | None, limits: Limits) -> dict[str, Any]:
    url = source.location
    name = posixpath.basename(unquote(urlparse(url).path)) or "download"
    name = _safe_rel(url, name)
    rec = _record(source, dest)
    want = _expected_sha(source, name)
    if is_archive(name):
        target = dest / DOWNLOADS / name
        got = download(url, target, sha256=want, progress=progress, limits=limits)
        rec["archives"].append(_file_entry(f"{DOWNLOADS}/{name}", url, got["bytes"], got["sha256"],
                                           source.license, source.attribution))
        rec["files"] = _extract_into(target, url, got["sha256"], dest, source, limits)
    else:
        got = download(url, dest / name, sha256=want, progress=progress, limits=limits)
        rec["files"].append(_file_entry(name, url, got["bytes"], got["sha256"], source.license,
                                        source.attribution))
    return rec


def _skip_product(rel: str, product: str | None) -> bool:
    """Whether ``rel`` lies under a SpaceNet product folder other than ``product``."""
    if not product or product not in SPACENET_PRODUCTS:
        return False
    parts = rel.split("/")[:-1]
    return any(p in SPACENET_PRODUCTS and p != product for p in parts)


def _fetch_s3(source: SourceConfig, dest: Path, progress: FetchProgress | None, limits: Limits) -> dict[str, Any]:
    bucket, prefix = parse_s3_url(source.location)
    endpoint = (source.options or {}).get("endpoint_url")
    if endpoint:  # a source's own endpoint is input like its location: the network policy applies
        check_url_limits(endpoint, limits)
    folder = prefix.rstrip("/") + "/" if prefix else ""
    keys = list_keys(bucket, folder, endpoint_url=endpoint)
    base = folder
    if not keys and prefix and not prefix.endswith("/"):  # the location may name one object
        keys = [k for k in list_keys(bucket, prefix, endpoint_url=endpoint) if k["key"] == prefix]
        base = posixpath.dirname(prefix) + "/" if "/" in prefix else ""
    if not keys:
        raise FetchError(source.location, "no objects under this prefix")
    aois = (source.options or {}).get("aois")
    product = (source.options or {}).get("product") if source.kind == "spacenet" else None
    rec = _record(source, dest)
    selected = 0
    for obj in keys:
        key = obj["key"]
        rel = _safe_rel(f"s3://{bucket}/{key}", key[len(base):])
        if aois and not any(a in key for a in aois):
            continue
        if _skip_product(rel, product):
            continue
        selected += 1
        url = f"s3://{bucket}/{key}"
        if obj["size"] > limits.download_max_bytes:
            shown, limit = human_sizes(obj["size"], limits.download_max_bytes)
            raise LimitExceeded(url, f"size {shown} is over download_max_bytes ({limit})")
        archive = is_archive(rel)
        target = dest / DOWNLOADS / rel if archive else dest / rel
        got = download_key(bucket, key, target, endpoint_url=endpoint, expected_size=obj["size"],
                           expected_etag=obj["etag"] or None)
        if progress is not None:
            progress(got["bytes"], got["bytes"])
        want = _expected_sha(source, rel, posixpath.basename(rel))
        if want and got["sha256"] != want:
            target.unlink(missing_ok=True)
            raise FetchError(url, f"sha256 mismatch: expected {want}, got {got['sha256']}")
        if archive:
            rec["archives"].append(_file_entry(f"{DOWNLOADS}/{rel}", url, got["bytes"], got["sha256"],
                                               source.license, source.attribution))
            rec["files"].extend(_extract_into(target, url, got["sha256"], dest, source, limits))
        else:
            rec["files"].append(_file_entry(rel, url, got["bytes"], got["sha256"], source.license,
                                            source.attribution))
    if selected == 0:
        raise FetchError(source.location, f"no objects match options.aois {aois!r} / product {product!r}")
    rec["files"].sort(key=lambda f: f["path"])
    return rec


#: Catalog record fields kept in the fetch record's ``items`` list.
OAM_ITEM_FIELDS = ("_id", "uuid", "title", "provider", "contact", "license", "platform", "gsd",
                   "acquisition_start", "acquisition_end", "bbox", "file_size")


def _fetch_oam_item(source: SourceConfig, dest: Path, item: dict, catalog_url: str,
                    progress: FetchProgress | None, limits: Limits) -> dict:
    """Fetch one catalog record's image (FetchError for this record only); returns its file entry."""
    oid = item_id(item)
    url = item.get("uuid")
    if not oid or not _OAM_ID_RE.match(oid) or len(oid) > 200:
        raise FetchError(catalog_url, f"catalog record has an unusable _id {oid[:80]!r}")
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        raise FetchError(catalog_url, f"catalog record {oid} has no http(s) image URL in 'uuid': {str(url)[:200]!r}")
    name = f"{oid}.tif"
    got = download(url, dest / name, sha256=_expected_sha(source, name), progress=progress, limits=limits)
    atomic.write_json(dest / f"{oid}.json", item)
    return _file_entry(name, url, got["bytes"], got["sha256"], item_license(item, source.license),
                       item_attribution(item, source.attribution))


def _fetch_oam(source: SourceConfig, dest: Path, progress: FetchProgress | None, limits: Limits) -> dict[str, Any]:
    opts = source.options or {}
    items, info = search_catalog_with_info(
        source.location,
        bbox=opts.get("bbox"),
        gsd_from=opts.get("gsd_from"),
        gsd_to=opts.get("gsd_to"),
        acquisition_from=opts.get("acquisition_from"),
        acquisition_to=opts.get("acquisition_to"),
        limit=opts.get("limit") or 100,
        max_items=opts.get("max_items"),
        limits=limits,
    )
    rec = _record(source, dest)
    rec["catalog"] = {**info, "accessed": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    dest.mkdir(parents=True, exist_ok=True)
    for item in items:
        refused = licence_refused(item_license(item, source.license), opts.get("licences"))
        if refused is not None:  # the record states its licence: the image is never downloaded
            rec["rejects"].append({"path": f"{item_id(item)[:80]}.tif", "url": item.get("uuid"), "reason": refused,
                                   "scene_id": f"oam-{item_id(item)[:80]}", "stage": "catalog"})
            continue
        try:
            entry = _fetch_oam_item(source, dest, item, info["url"], progress, limits)
        except FetchError as exc:  # one record costs only itself
            rec["rejects"].append({"path": f"{item_id(item)[:80]}.tif", "url": exc.file, "reason": exc.reason})
            continue
        rec["files"].append(entry)
        rec["items"].append({k: item[k] for k in OAM_ITEM_FIELDS if k in item})
    return rec


def fetch_source(source: SourceConfig, dest: Path, *, progress: FetchProgress | None = None,
                 limits: Limits | None = None, hashes: dict[str, list] | None = None) -> dict:
    """Fetch ``source`` into ``dest`` and return its fetch record.

    Record: ``{"source", "kind", "location", "license", "attribution", "root", "files", "archives",
    "items"}`` (+ ``"catalog"`` for OpenAerialMap: API URL, query, ``found``, envelope, access time).
    ``root`` is where adapters read (``dest``, or the local folder itself).  Each of ``files`` /
    ``archives`` is ``{"path", "url", "bytes", "sha256", "license", "attribution"}`` with ``path``
    relative to ``root`` (an archive's ``path`` is absolute when it is a local file outside ``dest``);
    extracted files cite the archive's URL.  ``items`` are the OpenAerialMap catalog records (selected
    fields), otherwise empty.  ``progress(done, total)`` is called as the bytes of each file arrive
    (``total`` is that file's size, or None when unknown; it restarts at 0 for the next file).

    Dispatch: kind ``stac``, and ``openaerialmap`` with ``options.api: stac`` (its default) ->
    :func:`pipeline.sources.stac.fetch.fetch_stac` (record also has ``rejects`` and ``transfer``); kind
    ``openaerialmap`` with ``options.api: meta`` -> catalog search at ``location`` + image downloads; otherwise by
    scheme: local path, ``http``/``https``, ``s3`` (see the module docstring for the layouts).
    ``options.sha256`` (file name or relative path -> hex digest) is verified where a file matches.
    ``limits`` (default :data:`pipeline.limits.DEFAULT_LIMITS`) bound every download and extraction and set
    the network policy; ``record["rejects"]`` lists the items that failed alone (OpenAerialMap records; STAC
    items, also in ``stac-index.json``), ``record["skipped"]`` the local files left out (see the module doc).
    ``hashes`` (a local folder or file: relative path -> ``[size, mtime_ns, inode, sha256]``) are the digests
    of an earlier fetch of it, taken again for files that did not change (:func:`sha256_remembered`): adding a
    scene to a folder of gigabytes reads that scene only; on return it holds this fetch's files.
    Raises ``FetchError`` for anything missing, unreachable or corrupt, ``ConfigError`` for kind ``demo``
    (generated by :func:`pipeline.sources.adapters.demo.fetch_demo`, not fetched).
    """
    dest = Path(dest)
    lim = limits or DEFAULT_LIMITS
    if source.kind == "demo":
        raise ConfigError(f"source '{source.name}': kind 'demo' is generated, not fetched")
    oam_api = (source.options or {}).get("api", "stac")
    if source.kind == "stac" or (source.kind == "openaerialmap" and oam_api == "stac"):
        from pipeline.sources.stac.fetch import fetch_stac

        return fetch_stac(source, dest, progress=progress, limits=lim)
    if source.kind == "openaerialmap":
        if source.scheme not in ("http", "https"):
            raise FetchError(source.location, "openaerialmap needs the catalog API base URL (http/https)")
        return _fetch_oam(source, dest, progress, lim)
    if source.scheme == "file":
        return _fetch_local(source, dest, progress, lim, hashes)
    if source.scheme in ("http", "https"):
        return _fetch_http(source, dest, progress, lim)
    if source.scheme == "s3":
        return _fetch_s3(source, dest, progress, lim)
    raise FetchError(source.location, f"unsupported location scheme '{source.scheme}'")
