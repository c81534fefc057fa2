"""Releases and raw caches on S3 (or any S3-compatible store: MinIO, moto), no Luigi here.

Two uses, both with the same rule: **the index object is written last**, so a reader that finds it finds
every object it lists, each checked against the sha256 it lists.

* :func:`pipeline.release.publish.publish_release` copies a built release folder to ``<url>/<release>/`` with
  :func:`sync_files`.  Every file's sha256 is checked against ``manifest.json`` before upload; each upload
  carries ``Content-MD5`` (the store refuses a body that differs), ``x-amz-checksum-sha256`` (stores that
  implement it verify it) and the sha256 as metadata, and is checked afterwards (size, metadata, ETag = md5
  where the ETag is a plain md5).
  ``manifest.json`` goes up last: a killed publish leaves no manifest, and a rerun uploads only what is
  missing or different, removes stray objects left under the prefix, then writes the manifest.
* :func:`upload_raw` / :func:`restore_raw` keep a source's raw folder (``data/raw/<source>/files``) under
  ``<url>/<source>/<config digest>/`` with ``index.json`` (the fetch record + every file's size and
  sha256) last.  Restoring downloads each file (resuming, skipping files already there) and verifies it
  against the index and the fetch record; a cache that does not verify is ignored (the source is fetched
  again and the cache rewritten).

Requests are signed with boto3's default credential chain (:func:`pipeline.sources.s3.s3_client` ``signed=True``).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import botocore.exceptions

from pipeline.errors import FetchError, ObjectStoreError
from pipeline.sources.config import SourceConfig
from pipeline.sources.options import FETCH_SELECT_KINDS, LABEL_OPTIONS, PIXEL_OPTIONS, SELECT_OPTIONS, TERMS
from pipeline.sources.s3 import _PLAIN_MD5_RE, _clean_etag, _digests, download_key, list_keys, parse_s3_url, s3_client

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RAW_INDEX = "index.json"
#: Files larger than this go up as multipart uploads (per-part SHA-256 checksums) instead of one PUT.
MULTIPART_THRESHOLD = 1 << 30
UPLOAD_THREADS = 8

#: ``progress(done, total)`` over the files of one publish or cache upload.
Progress = Callable[[int, int], None]


def join_url(base: str, *parts: str) -> str:
    """``join_url("s3://b/p/", "v1", "x.tif") == "s3://b/p/v1/x.tif"`` (checks ``base`` is an s3 URL)."""
    bucket, prefix = parse_s3_url(base)
    keys = [k.strip("/") for k in (prefix, *parts) if k and k.strip("/")]
    return f"s3://{bucket}/" + "/".join(keys)


def _client(endpoint_url: str | None):
    return s3_client(endpoint_url or None, signed=True)


def head(url: str, *, endpoint_url: str | None = None) -> dict[str, Any] | None:
    """``{"bytes", "etag", "sha256"}`` of the object at ``url`` (``sha256`` from its metadata, may be
    None), or None when there is no such object."""
    bucket, key = parse_s3_url(url)
    try:
        h = _client(endpoint_url).head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise ObjectStoreError(url, f"cannot read: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise ObjectStoreError(url, f"S3 request failed: {exc}") from exc
    return {"bytes": int(h["ContentLength"]), "etag": _clean_etag(h.get("ETag")),
            "sha256": (h.get("Metadata") or {}).get("sha256")}


def exists(url: str, *, endpoint_url: str | None = None) -> bool:
    return head(url, endpoint_url=endpoint_url) is not None


def get_bytes(url: str, *, endpoint_url: str | None = None) -> bytes | None:
    """The body of a (small) object, or None when it does not exist."""
    bucket, key = parse_s3_url(url)
    try:
        return _client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise ObjectStoreError(url, f"cannot read: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise ObjectStoreError(url, f"S3 request failed: {exc}") from exc


def _listing(prefix_url: str, endpoint_url: str | None) -> dict[str, dict[str, Any]]:
    """Objects below ``prefix_url`` (a folder URL) by key relative to it."""
    bucket, prefix = parse_s3_url(prefix_url)
    folder = prefix.rstrip("/") + "/" if prefix else ""
    try:
        keys = list_keys(bucket, folder, endpoint_url=endpoint_url or None, signed=True)
    except FetchError as exc:
        raise ObjectStoreError(exc.file, exc.reason) from exc
    return {k["key"][len(folder):]: k for k in keys}


def _same(remote: dict | None, size: int, md5: str, sha256: str) -> bool:
    """Whether a listed/headed object already holds exactly this content."""
    if remote is None or int(remote.get("bytes", remote.get("size", -1))) != size:
        return False
    if remote.get("sha256"):
        return remote["sha256"] == sha256
    etag = remote.get("etag") or ""
    return bool(_PLAIN_MD5_RE.match(etag)) and etag == md5


def put_file(path: Path, url: str, *, sha256: str, md5: str | None = None, endpoint_url: str | None = None,
             multipart_threshold: int = MULTIPART_THRESHOLD) -> int:
    """Upload ``path`` to ``url`` and verify the stored object; returns its size.

    ``sha256`` is what the file must hash to (checked here, before sending); it is sent as
    ``x-amz-checksum-sha256`` and kept as metadata ``sha256``.  Raises :class:`ObjectStoreError`."""
    path = Path(path)
    bucket, key = parse_s3_url(url)
    size = path.stat().st_size
    local_sha, local_md5 = _digests(path)
    if local_sha != sha256:
        raise ObjectStoreError(str(path), f"sha256 {local_sha} differs from the expected {sha256}; not uploaded")
    if md5 is not None and md5 != local_md5:
        raise ObjectStoreError(str(path), "file changed while being uploaded")
    client = _client(endpoint_url)
    try:
        if size <= multipart_threshold:
            with open(path, "rb") as fh:
                client.put_object(
                    Bucket=bucket, Key=key, Body=fh, Metadata={"sha256": sha256},
                    ContentMD5=base64.b64encode(bytes.fromhex(local_md5)).decode(),
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                )
        else:
            from boto3.s3.transfer import TransferConfig

            client.upload_file(
                str(path), bucket, key,
                ExtraArgs={"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "SHA256"},
                Config=TransferConfig(multipart_threshold=multipart_threshold,
                                      multipart_chunksize=max(8 << 20, multipart_threshold // 8)),
            )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ObjectStoreError(url, f"upload of {path} failed: {exc}") from exc
    got = head(url, endpoint_url=endpoint_url)
    if got is None or got["bytes"] != size or got["sha256"] != sha256:
        raise ObjectStoreError(url, f"uploaded object does not match {path}: {got}")
    if size <= multipart_threshold and _PLAIN_MD5_RE.match(got["etag"]) and got["etag"] != local_md5:
        raise ObjectStoreError(url, f"uploaded object's ETag {got['etag']} is not the md5 {local_md5} of {path}")
    return size


def _delete(url: str, endpoint_url: str | None) -> None:
    bucket, key = parse_s3_url(url)
    try:
        _client(endpoint_url).delete_object(Bucket=bucket, Key=key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ObjectStoreError(url, f"cannot delete: {exc}") from exc


def sync_files(files: dict[str, tuple[Path, str]], prefix_url: str, *, endpoint_url: str | None,
               keep: Iterable[str] = (), progress: Progress | None = None,
               threads: int = UPLOAD_THREADS) -> dict[str, int]:
    """Make the objects below ``prefix_url`` exactly ``files`` (relative key -> (local path, sha256)):
    upload what is missing or different, delete strays (except keys in ``keep``)."""
    remote = _listing(prefix_url, endpoint_url)
    todo: list[tuple[str, Path, str]] = []
    skipped = 0
    for rel, (path, sha) in sorted(files.items()):
        size = path.stat().st_size
        r = remote.get(rel)
        if r is not None and int(r["size"]) == size:
            local_sha, md5 = _digests(path)
            if local_sha != sha:
                raise ObjectStoreError(str(path), f"sha256 {local_sha} differs from the expected {sha}")
            if _PLAIN_MD5_RE.match(r["etag"]) and r["etag"] == md5:
                skipped += 1
                continue
            if not _PLAIN_MD5_RE.match(r["etag"]) and _same(head(join_url(prefix_url, rel), endpoint_url=endpoint_url),
                                                          size, md5, sha):
                skipped += 1  # multipart object: its metadata sha256 decides
                continue
        todo.append((rel, path, sha))
    done = [0]
    total = len(todo)

    def one(item) -> int:
        rel, path, sha = item
        n = put_file(path, join_url(prefix_url, rel), sha256=sha, endpoint_url=endpoint_url)
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
        return n

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(todo)))) as pool:
            nbytes = sum(pool.map(one, todo))
    else:
        nbytes = 0
    stray = sorted(set(remote) - set(files) - set(keep))
    for rel in stray:
        _delete(join_url(prefix_url, rel), endpoint_url)
    return {"uploaded": len(todo), "skipped": skipped, "deleted": len(stray), "bytes": nbytes}


# --------------------------------------------------------------------------------------------- raw cache

def source_digest(source: SourceConfig, *, labels: bool = True, where: bool = True, pixels: bool = True) -> str:
    """12 hex digits over everything of a source's configuration that shapes its raw folder or fetch
    record (kind, location, options, licence, attribution; not ``enabled``, nor the
    :data:`~pipeline.sources.options.SELECT_OPTIONS`, which only its catalog follows, but for the
    :data:`~pipeline.sources.options.FETCH_SELECT_KINDS`, whose fetch follows them too); without the
    :data:`~pipeline.sources.options.TERMS`, :data:`~pipeline.sources.options.LABEL_OPTIONS` and
    :data:`~pipeline.sources.options.SELECT_OPTIONS` when ``labels`` is false (what a scene's files and pixels
    are made from; the content a raw folder of those kinds made under other licences shares with this one's);
    without the location when ``where`` is false (a
    folder read in place, whose scenes are keyed by their files' paths relative to it:
    ``tasks.scenekey.scene_digest``); without the :data:`~pipeline.sources.options.PIXEL_OPTIONS` when ``pixels``
    is false (which files there are, not how their pixels are read: the content of a raw folder)."""
    d = dataclasses.asdict(source)
    d.pop("enabled", None)
    if not where:
        d.pop("location", None)
    selects = labels and source.kind in FETCH_SELECT_KINDS
    drop = (() if selects else SELECT_OPTIONS) + (LABEL_OPTIONS if not labels else ()) \
        + (PIXEL_OPTIONS if not pixels else ())
    if not labels:
        for key in TERMS:
            d.pop(key, None)
    if any(k in drop for k in d.get("options") or {}):
        d["options"] = {k: v for k, v in d["options"].items() if k not in drop}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def raw_cache_url(cache_url: str, source: SourceConfig) -> str:
    return join_url(cache_url, source.name, source_digest(source))


def _cacheable(dest: Path) -> list[str]:
    """Files of a raw folder worth caching: all but downloaded archives (``downloads/``, already
    extracted), unfinished transfers (``*.part``) and unfinished atomic writes (``.tmp-*``)."""
    out = []
    for p in dest.rglob("*"):
        if not p.is_file():
            continue
        parts = p.relative_to(dest).parts
        if parts[0] == "downloads" or p.name.endswith(".part") or any(x.startswith(".tmp-") for x in parts):
            continue
        out.append(p.relative_to(dest).as_posix())
    return sorted(out)


def upload_raw(source: SourceConfig, dest: Path, record: dict[str, Any], cache_url: str, *,
               endpoint_url: str | None = None, progress: Progress | None = None) -> dict | None:
    """Upload the fetched raw folder ``dest`` and its fetch ``record`` to the cache, ``index.json`` last.

    Returns None without uploading when the source is read in place (its record's root is not ``dest``:
    a local folder).  Every file the record lists must still hash to the record's sha256."""
    dest = Path(dest)
    if Path(record.get("root", "")).resolve() != dest.resolve():
        return None
    prefix = raw_cache_url(cache_url, source)
    listed = {f["path"]: f["sha256"] for f in record.get("files", [])}
    entries, files = [], {}
    for rel in _cacheable(dest):
        sha = _digests(dest / rel)[0]
        if rel in listed and listed[rel] != sha:
            raise ObjectStoreError(str(dest / rel), f"sha256 {sha} differs from the fetch record's {listed[rel]}")
        entries.append({"path": rel, "bytes": (dest / rel).stat().st_size, "sha256": sha})
        files[f"files/{rel}"] = (dest / rel, sha)
    absent = sorted(set(listed) - {e["path"] for e in entries})
    if absent:
        raise ObjectStoreError(str(dest / absent[0]), "listed in the fetch record but missing")
    index = {"source": source.name, "digest": source_digest(source),
             "record": {k: v for k, v in record.items() if k != "root"}, "files": entries}
    result = sync_files(files, prefix, endpoint_url=endpoint_url, keep=(RAW_INDEX,), progress=progress)
    body = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
    fd, name = tempfile.mkstemp(prefix=f".tmp-{RAW_INDEX}-", dir=dest.parent)  # unique: never shared by two uploads
    index_path = Path(name)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    try:
        put_file(index_path, join_url(prefix, RAW_INDEX), sha256=hashlib.sha256(body).hexdigest(),
                 endpoint_url=endpoint_url)
    finally:
        index_path.unlink(missing_ok=True)
    return {"url": prefix, **result, "files": len(entries)}


def restore_raw(source: SourceConfig, dest: Path, cache_url: str, *, endpoint_url: str | None = None,
                progress: Progress | None = None) -> dict[str, Any] | None:
    """Restore ``dest`` from the cache; returns the fetch record (``root`` = ``dest``), or None when the
    cache has no complete entry for this source configuration or an entry does not verify (then the
    caller fetches from the origin and :func:`upload_raw` rewrites the entry)."""
    dest = Path(dest)
    prefix = raw_cache_url(cache_url, source)
    body = get_bytes(join_url(prefix, RAW_INDEX), endpoint_url=endpoint_url)
    if body is None:
        return None
    try:
        index = json.loads(body)
        entries = index["files"]
        record = index["record"]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("raw cache %s: unreadable %s (%s); fetching from the source", prefix, RAW_INDEX, exc)
        return None
    listed = {f["path"]: f["sha256"] for f in record.get("files", [])}
    bucket, key_prefix = parse_s3_url(prefix)
    for i, e in enumerate(entries):
        rel = e["path"]
        target = dest / rel
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            log.warning("raw cache %s: unsafe path %r; fetching from the source", prefix, rel)
            return None
        try:
            got = download_key(bucket, f"{key_prefix}/files/{rel}", target, endpoint_url=endpoint_url or None,
                               expected_size=int(e["bytes"]), signed=True)
        except FetchError as exc:
            log.warning("raw cache %s: %s; fetching from the source", prefix, exc)
            return None
        want = {e["sha256"], listed.get(rel, e["sha256"])}
        if len(want) != 1 or got["sha256"] not in want:
            log.warning("raw cache %s: %s has sha256 %s, expected %s; fetching from the source",
                        prefix, rel, got["sha256"], e["sha256"])
            target.unlink(missing_ok=True)
            return None
        if progress is not None:
            progress(i + 1, len(entries))
    return {**record, "root": str(dest)}

