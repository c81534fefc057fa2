"""Checks 5 and 6: every file of the release folder is in the manifest (no stray file, no symbolic link), and the
manifest's ``files`` entries exist with the recorded SHA-256 and size."""
from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pipeline.dataset.ids import natural_key
from pipeline.release.manifest import file_size
from pipeline.release.validate.common import MANIFEST, check_file_hash, safe_rel

#: The release browser: derived from the release's files, rewritten at will, never listed (README "Viewer"); and
#: the temporary folder it is written in (:func:`pipeline.atomic.atomic_path`), beside it while a build checks
#: the release (the browser is written meanwhile, by a forked process) or after an interrupted ``browse``.
VIEWER = "viewer"
_VIEWER_TMP = f".tmp-{VIEWER}-"
#: What checks 7, 9 and 12 read line by line against the manifest, whatever ``files`` says: the split files and
#: the folders whose every other file they report (``uda/``, ``zones/``); and the manifest itself.
_UNLISTED = frozenset({MANIFEST, "train.txt", "val.txt", "test.txt"})
_CHECKED_ELSEWHERE = ("uda/", "zones/")


def check_stray_files(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    """Check 5: ``<path>: not in the manifest`` for each file of the release folder that is neither an image or
    label of ``records`` nor a ``files`` entry (``manifest.json`` and ``viewer/`` aside), and ``<path>: a symbolic
    link ...`` for each link (a release is regular files: the tiles are hard links; a link can point outside the
    folder, and whatever it points at would be published).  Natural order, links first."""
    listed = {r.get(k) for r in records for k in ("image", "label")}
    entries = manifest.get("files")
    listed |= {e.get("path") for e in entries if isinstance(e, dict)} if isinstance(entries, list) else set()
    links: list[str] = []
    strays: list[str] = []
    _walk(os.fspath(root), "", listed, links, strays)
    out.extend(f"{rel}: a symbolic link (a release holds regular files only; a link can point outside it)"
               for rel in sorted(links, key=natural_key))
    out.extend(f"{rel}: not in the manifest" for rel in sorted(strays, key=natural_key))


def _walk(folder: str, prefix: str, listed: set, links: list[str], strays: list[str]) -> None:
    """One ``scandir`` per folder (a 5,000-image release holds ~25,000 files); links are not followed."""
    try:
        with os.scandir(folder) as it:
            found = list(it)
    except OSError:
        return
    for entry in found:
        rel = prefix + entry.name
        if entry.is_symlink():
            links.append(rel)
        elif entry.is_dir(follow_symlinks=False):
            if rel != VIEWER and not rel.startswith(_VIEWER_TMP):
                _walk(entry.path, rel + "/", listed, links, strays)
        elif rel not in listed and rel not in _UNLISTED and not rel.startswith(_CHECKED_ELSEWHERE):
            strays.append(rel)


def check_files_entries(root: Path, manifest: dict[str, Any], out: list[str], trusted: Collection[str] = ()) -> None:
    """Every entry hashed, except those whose ``path`` is in ``trusted`` (files proved to be the bytes a
    validated release recorded with an equal entry, :mod:`pipeline.release.validate.incremental`): their
    existence and size are checked."""
    entries = manifest.get("files")
    if not isinstance(entries, list):
        return
    base = os.fspath(root)
    for e in entries:
        if not isinstance(e, dict):
            continue
        rel = safe_rel(e.get("path"))
        if rel is None:
            continue  # reported by the schema
        if rel in trusted:
            size = file_size(base, rel)
            if size is None:
                out.append(f"{rel}: missing")
                continue
        elif not check_file_hash(root, rel, e.get("sha256"), out):  # size only matters when the hash matched
            continue
        else:
            size = (root / rel).stat().st_size
        if isinstance(e.get("bytes"), int) and size != e["bytes"]:
            out.append(f"{rel}: {size} bytes, manifest says {e['bytes']}")
