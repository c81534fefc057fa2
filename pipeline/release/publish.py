"""Publish a built release to S3 (or any S3-compatible store), manifest last; no Luigi here (``tasks.publish``).

Not part of the release stage's code version (``tasks.versions.IGNORED``): publishing copies a release, it
makes none of its files.  A folder that ``validate``'s check 5 refuses (a file the manifest does not list outside
the browser ``viewer/``, or a symbolic link, which would publish whatever it points at) is not published.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.errors import ObjectStoreError
from pipeline.release.validate.files import check_stray_files
from pipeline.sources.object_store import (
    MANIFEST,
    UPLOAD_THREADS,
    Progress,
    get_bytes,
    head,
    join_url,
    put_file,
    sync_files,
)
from pipeline.sources.s3 import _digests


def manifest_checksums(manifest: dict[str, Any]) -> dict[str, str]:
    """Release-relative path -> sha256 for every file ``manifest.json`` lists (image and label tiles and
    the ``files`` section)."""
    out: dict[str, str] = {}
    for im in manifest.get("images", []):
        for kind in ("image", "label"):
            if im.get(kind) and im.get(f"sha256_{kind}"):
                out[im[kind]] = im[f"sha256_{kind}"]
    for entry in manifest.get("files", []):
        out[entry["path"]] = entry["sha256"]
    return out


def _release_files(release_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(release_dir).as_posix() for p in release_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".tmp-") for part in p.relative_to(release_dir).parts)
    )


def publish_release(release_dir: Path, url: str, *, endpoint_url: str | None = None,
                    progress: Progress | None = None, threads: int = UPLOAD_THREADS) -> dict[str, Any]:
    """Copy the release folder to the S3 prefix ``url`` (``s3://bucket/prefix/<release>``), manifest last.

    Every file the manifest lists must hash to the manifest's sha256 (else :class:`ObjectStoreError`
    and nothing more is uploaded); the browser's files (``viewer/``), which the manifest does not list, are
    uploaded with their own sha256 and counted as ``unlisted``; any other file the manifest does not list, and
    any symbolic link, is refused before anything is uploaded (module docstring).  When ``manifest.json`` is
    already there: identical -> nothing is done; different -> :class:`ObjectStoreError` (a published release is
    never overwritten).
    Returns ``{"url", "manifest", "uploaded", "skipped", "deleted", "bytes", "unlisted", "files"}``.
    """
    release_dir = Path(release_dir)
    manifest_path = release_dir / MANIFEST
    if not manifest_path.is_file():
        raise ObjectStoreError(str(manifest_path), "no manifest.json: not a finished release")
    manifest_bytes = manifest_path.read_bytes()
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    manifest_url = join_url(url, MANIFEST)
    remote = head(manifest_url, endpoint_url=endpoint_url)
    if remote is not None:
        published = get_bytes(manifest_url, endpoint_url=endpoint_url)
        if published is not None and hashlib.sha256(published).hexdigest() == manifest_sha:
            n = len(_release_files(release_dir))
            return {"url": url, "manifest": manifest_url, "uploaded": 0, "skipped": n, "deleted": 0,
                    "bytes": 0, "unlisted": 0, "files": n}
        raise ObjectStoreError(manifest_url, "a different release is already published here; releases are "
                                             "immutable, publish under a new release name")
    manifest = json.loads(manifest_bytes)
    strays: list[str] = []
    check_stray_files(release_dir, manifest, [r for r in manifest.get("images", []) if isinstance(r, dict)], strays)
    if strays:
        more = f" (+{len(strays) - 1} more)" if len(strays) > 1 else ""
        raise ObjectStoreError(str(release_dir), f"not published: {strays[0]}{more}; a release holds the files its "
                                                 "manifest lists and the browser viewer/ (python -m pipeline validate)")
    expected = manifest_checksums(manifest)
    names = [n for n in _release_files(release_dir) if n != MANIFEST]
    missing = sorted(set(expected) - set(names))
    if missing:
        raise ObjectStoreError(str(release_dir / missing[0]), f"listed in the manifest but missing "
                                                              f"({len(missing)} file(s))")
    files: dict[str, tuple[Path, str]] = {}
    unlisted = 0
    for name in names:
        path = release_dir / name
        if name in expected:
            files[name] = (path, expected[name])
        else:
            files[name] = (path, _digests(path)[0])
            unlisted += 1
    # put_file re-hashes every file it sends and refuses one that differs from the manifest
    result = sync_files(files, url, endpoint_url=endpoint_url, keep=(MANIFEST,), progress=progress, threads=threads)
    result["bytes"] += put_file(manifest_path, manifest_url, sha256=manifest_sha, endpoint_url=endpoint_url)
    result["uploaded"] += 1
    return {"url": url, "manifest": manifest_url, **result, "unlisted": unlisted, "files": len(files) + 1}
