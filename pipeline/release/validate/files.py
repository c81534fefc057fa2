"""Check 6: the manifest's ``files`` entries exist with the recorded SHA-256 and size."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.release.validate.common import check_file_hash, safe_rel


def check_files_entries(root: Path, manifest: dict[str, Any], out: list[str]) -> None:
    entries = manifest.get("files")
    if not isinstance(entries, list):
        return
    for e in entries:
        if not isinstance(e, dict):
            continue
        rel = safe_rel(e.get("path"))
        if rel is None:
            continue  # reported by the schema
        if check_file_hash(root, rel, e.get("sha256"), out):  # size only matters when the hash matched
            size = (root / rel).stat().st_size
            if isinstance(e.get("bytes"), int) and size != e["bytes"]:
                out.append(f"{rel}: {size} bytes, manifest says {e['bytes']}")
