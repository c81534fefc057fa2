"""Atomic writes: everything is written under a temporary name beside its target, then renamed.

A crash leaves at most a ``.tmp-*`` entry behind, never a partial file under the final name, so a
file (or folder) that exists under its final name is complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    Works for files and folders (the caller creates what it wants at the yielded path).  On error the
    temporary is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    inner = tmp / target.name
    try:
        yield inner
        if not inner.exists():
            raise FileNotFoundError(f"{target}: nothing was written at the temporary path {inner}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


#: ``json.dumps(value, sort_keys=True, ensure_ascii=False)`` without a new encoder object per call (a release
#: encodes ~40,000 small objects so: its manifest's records and files, their keys in the incremental check).
compact_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, 1-space indent, trailing newline; in a top-level object, a member that is
    a list of objects (a manifest's ``images`` and ``files``) is written one compact object per line.  Any JSON
    reader reads it the same; a diff of two manifests shows one line per changed image; and it is written by the
    C encoder (indenting uses the pure-Python one: a 5,000-image manifest 0.38 -> 0.25 s)."""
    def block(value: Any) -> str:
        if isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
            return "[\n" + ",\n".join("  " + compact_json(e) for e in value) + "\n ]"
        return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).replace("\n", "\n ")

    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    members = [f" {json.dumps(k, ensure_ascii=False)}: {block(obj[k])}" for k in sorted(obj)]
    return "{\n" + ",\n".join(members) + "\n}\n"


def write_json(target: str | Path, obj: Any) -> None:
    """Write :func:`canonical_json` atomically."""
    write_text(target, canonical_json(obj))
