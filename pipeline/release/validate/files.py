"""Check 6: the manifest's ``files`` entries exist with the recorded SHA-256 and size."""
from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pipeline.release.manifest import file_size
from pipeline.release.validate.common import check_file_hash, safe_rel


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
