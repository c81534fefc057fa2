"""Anonymous reads from public S3 buckets (e.g. ``s3://spacenet-dataset``).

Requests are unsigned (botocore ``UNSIGNED``), so no credentials are needed or looked up.
``endpoint_url`` points the client elsewhere (a mirror, or a local moto server in tests).
Downloads go to ``<dest>.part`` and are renamed only after size and (single-part) ETag md5 match.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore import UNSIGNED
from botocore.config import Config

from pipeline.atomic import free_bytes
from pipeline.errors import FetchError, NoSpace, out_of_space
from pipeline.sources.rawreuse import link_earlier

#: An ETag that is the plain md5 of the object (single-part upload); multipart ETags end in ``-<n>``.
_PLAIN_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_REGION = "us-east-1"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``"s3://bucket/some/prefix"`` -> ``("bucket", "some/prefix")`` (prefix without leading ``/``)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL with a bucket: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


@functools.lru_cache(maxsize=16)
def s3_client(endpoint_url: str | None = None, *, timeout: float = 30.0, signed: bool = False):
    """An S3 client, optionally for another endpoint (cached; clients are thread-safe).

    Unsigned (anonymous) by default, for public buckets.  ``signed=True`` signs requests with boto3's
    default credential chain (environment, ``~/.aws``, instance role), as writes and private buckets
    (the publish target and the raw cache, :mod:`pipeline.sources.object_store`) need; with an ``endpoint_url``
    (MinIO, moto) it then uses path-style addressing.
    """
    config = Config(
        signature_version=None if signed else UNSIGNED,
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 4, "mode": "standard"},
        s3={"addressing_style": "path"} if signed and endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=DEFAULT_REGION, config=config
    )


def _clean_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"').lower()


def list_keys(
    bucket: str, prefix: str, *, endpoint_url: str | None = None, page_size: int = 1000, signed: bool = False
) -> list[dict[str, Any]]:
    """All objects under ``prefix`` as ``[{"key", "size", "etag"}]`` sorted by key.

    Follows the ``list_objects_v2`` continuation tokens (``page_size`` keys per request, S3's maximum
    and default is 1000).
    Folder placeholder keys (ending in ``/``) are left out.  Raises ``FetchError`` naming the
    ``s3://`` URL when the bucket cannot be listed.
    """
    client = s3_client(endpoint_url, signed=signed)
    out: list[dict[str, Any]] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue
                out.append({"key": obj["Key"], "size": int(obj["Size"]), "etag": _clean_etag(obj.get("ETag"))})
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise FetchError(f"s3://{bucket}/{prefix}", f"cannot list: {exc}") from exc
    out.sort(key=lambda d: d["key"])
    return out


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def download_key(
    bucket: str,
    key: str,
    dest: Path,
    *,
    endpoint_url: str | None = None,
    expected_size: int | None = None,
    expected_etag: str | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    signed: bool = False,
) -> dict[str, Any]:
    """Download ``s3://bucket/key`` to ``dest`` atomically and verify it.

    Streams into ``<dest>.part`` (an interrupted transfer resumes with a byte range), then checks the
    size (``expected_size`` or the object's ContentLength) and, when the ETag is a plain md5 (single-part
    upload), the md5; only then renames onto ``dest``.  A ``dest`` that already has the expected size
    and md5 is kept without downloading.  Returns ``{"url", "path", "bytes", "sha256", "md5", "etag",
    "skipped"}``.  Raises ``FetchError`` naming the ``s3://`` URL.  ``signed`` as for :func:`s3_client`.
    """
    url = f"s3://{bucket}/{key}"
    dest = Path(dest)
    client = s3_client(endpoint_url, signed=signed)
    size, etag = _head(client, bucket, key, expected_size, expected_etag)
    plain_md5 = etag if _PLAIN_MD5_RE.match(etag) else None

    def record(sha: str, md5: str, skipped: bool) -> dict[str, Any]:
        return {"url": url, "path": str(dest), "bytes": size, "sha256": sha, "md5": md5, "etag": etag,
                "skipped": skipped}

    earlier_sha = link_earlier(url, dest)  # the same object fetched before (pipeline.sources.rawreuse)
    if dest.is_file() and dest.stat().st_size == size:
        sha, md5 = _digests(dest)
        if (plain_md5 is None or md5 == plain_md5) and earlier_sha in (None, sha):
            return record(sha, md5, True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.exists() and part.stat().st_size > size:
        part.unlink()
    sha, md5 = _transfer(client, bucket, key, part, size, plain_md5, retries=retries, backoff=backoff)
    os.replace(part, dest)
    return record(sha, md5, False)


def _head(client: Any, bucket: str, key: str, expected_size: int | None, expected_etag: str | None
          ) -> tuple[int, str]:
    """``(size, ETag)`` of the object; FetchError when it cannot be read or differs from the listing."""
    url = f"s3://{bucket}/{key}"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise FetchError(url, f"S3 error {code}: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise FetchError(url, f"S3 request failed: {exc}") from exc
    size = int(head["ContentLength"])
    etag = _clean_etag(head.get("ETag"))
    if expected_size is not None and int(expected_size) != size:
        raise FetchError(url, f"size changed: listed {expected_size} bytes, object has {size}")
    if expected_etag is not None and _clean_etag(expected_etag) != etag:
        raise FetchError(url, f"ETag changed: listed {_clean_etag(expected_etag)}, object has {etag}")
    return size, etag


def _append_body(client: Any, bucket: str, key: str, part: Path, offset: int) -> None:
    """Append the object's bytes from ``offset`` on to ``part`` (a byte-range GET when resuming)."""
    kwargs = {"Range": f"bytes={offset}-"} if offset else {}
    body = client.get_object(Bucket=bucket, Key=key, **kwargs)["Body"]
    with open(part, "ab" if offset else "wb") as fh:
        try:
            for block in body.iter_chunks(1 << 20):
                fh.write(block)
        finally:
            fh.flush()
            os.fsync(fh.fileno())
            body.close()


def _transfer(client: Any, bucket: str, key: str, part: Path, size: int, plain_md5: str | None, *,
              retries: int, backoff: float) -> tuple[str, str]:
    """Resume / retry until ``part`` holds the ``size`` bytes with the ETag's md5 (when it is one); returns
    ``(sha256, md5)``.  Permanent S3 errors and exhausted retries raise FetchError."""
    url = f"s3://{bucket}/{key}"
    failures = 0
    restarted = False
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            if offset < size:
                _append_body(client, bucket, key, part, offset)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status < 500 and code not in ("SlowDown", "RequestTimeout", "InvalidRange"):
                raise FetchError(url, f"S3 error {code}: {exc}") from exc
            reason = f"S3 error {code}"
            if code == "InvalidRange":
                part.unlink(missing_ok=True)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            if out_of_space(exc) is not None:  # the disk is full: no retry helps
                raise NoSpace(part, free_bytes(part), f"{type(exc).__name__}: {exc}") from exc
            reason = f"{type(exc).__name__}: {exc}"
        else:
            got = part.stat().st_size if part.exists() else 0
            if got == size:
                sha, md5 = _digests(part)
                if plain_md5 is None or md5 == plain_md5:
                    return sha, md5
                part.unlink()
                if restarted:
                    raise FetchError(url, f"md5 mismatch: expected {plain_md5} (ETag), got {md5}")
                restarted = True
                continue
            if got > size:
                part.unlink()
            reason = f"size mismatch: got {got} of {size} bytes"
        failures += 1
        if failures > retries:
            raise FetchError(url, f"giving up after {failures} attempts: {reason}")
        time.sleep(min(backoff * 2 ** (failures - 1), 60.0))
