"""Check 9: the UDA split files are exactly what the manifest's ``uda`` section implies."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset.ids import natural_key
from pipeline.dataset.splits.uda import continent_splits
from pipeline.release.manifest import UDA_DIR, uda_lines
from pipeline.release.validate.common import MANIFEST


def _read_names(path: Path) -> list[str] | None:
    try:
        return path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def check_uda_files(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    uda = manifest.get("uda")
    usable = [r for r in records if isinstance(r.get("region"), str) and isinstance(r.get("image"), str)]
    expected: dict[str, list[str]] = {}
    if isinstance(uda, dict) and isinstance(uda.get("regional"), dict):
        continent = uda.get("continent")
        if isinstance(continent, dict):
            with_continent = [r for r in usable if isinstance(r.get("continent"), str)]
            if continent != continent_splits(with_continent, by="region"):
                out.append(f"{MANIFEST}: uda.continent differs from the continent-wise split of the images' regions")
        try:
            expected = uda_lines(usable, uda)
        except (AttributeError, TypeError):
            expected = {}  # malformed section, reported by the schema
    for rel, names in expected.items():
        path = root / rel
        if not path.is_file():
            out.append(f"{rel}: missing")
            continue
        got = _read_names(path)
        if got is None:
            out.append(f"{rel}: not UTF-8 text")
            continue
        if got != names:
            missing = sorted(set(names) - set(got), key=natural_key)
            extra = sorted(set(got) - set(names), key=natural_key)
            what = "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "",
            ) if part) or "order or duplicate lines"
            out.append(f"{rel}: differs from the manifest's uda section ({what})")
    folder = root / UDA_DIR
    if folder.is_dir():
        for p in sorted(folder.rglob("*"), key=lambda q: natural_key(q.as_posix())):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in expected:
                out.append(f"{rel}: not implied by the manifest's uda section")
