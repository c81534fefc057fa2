"""What the release checkers share: the manifest name, safe release-relative paths, checksum checks."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.release.manifest import sha256_file

MANIFEST = "manifest.json"


def short(digest: str) -> str:
    return f"{digest[:12]}…"


def safe_rel(rel: Any) -> str | None:
    """``rel`` as a POSIX path when it is a string naming something inside the release, else None."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return None
    parts = rel.split("/")
    if "" not in parts:  # no leading, trailing or doubled slash: the path is already in its POSIX form
        return None if any(part in ("..", ".") for part in parts) else rel
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", ".") for part in rel.split("/")):
        return None
    return p.as_posix()


def exc_text(exc: Exception, root: Path) -> str:
    """An exception message with the release folder prefix removed from paths."""
    return str(exc).replace(f"{root}/", "")


def check_file_hash(root: Path, rel: str, expected: Any, out: list[str]) -> bool | None:
    """Report a missing file or a checksum mismatch: None when missing, else whether the hash matched."""
    path = root / rel
    if not path.is_file():
        out.append(f"{rel}: missing")
        return None
    if isinstance(expected, str):
        actual = sha256_file(path)
        if actual != expected:
            out.append(f"{rel}: sha256 mismatch (manifest {short(expected)}, file {short(actual)})")
            return False
    return True
