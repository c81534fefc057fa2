"""Check 12: the per-UTM-zone file lists (``zones/<epsg>.txt``, :mod:`pipeline.release.torchgeo`) list exactly
the manifest's images of each zone, in natural order, and the manifest's ``zones`` section counts them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.release.torchgeo import ZONES_DIR, zone_lines, zone_section
from pipeline.release.validate.common import MANIFEST


def check_zone_files(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    if "zones" not in manifest:
        return  # releases built before the zone lists
    usable = [r for r in records if isinstance(r.get("crs"), str) and isinstance(r.get("image"), str)]
    try:
        expected = zone_lines(usable)
        section = zone_section(usable)
    except ValueError as exc:  # a CRS that is no EPSG code (reported by the schema)
        out.append(f"{MANIFEST}: zones cannot be checked ({exc})")
        return
    if manifest["zones"] != section:
        out.append(f"{MANIFEST}: zones section {manifest['zones']} differs from the images' zones {section}")
    for rel, lines in expected.items():
        path = root / rel
        try:
            got = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            out.append(f"{rel}: missing or not UTF-8 text")
            continue
        if got != lines:
            out.append(f"{rel}: does not list exactly the zone's {len(lines)} images in natural order")
    folder = root / ZONES_DIR
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in expected:
                out.append(f"{rel}: no image of the manifest is in this zone")
