"""Check 11: outputs for users of COG releases: valid COG tiles, a valid STAC catalog, ``index.parquet``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.raster.cog import validate_cog
from pipeline.release.validate.common import safe_rel
from pipeline.release.validate.incremental import Trust
from pipeline.release.validate.stac import validate_stac


def check_user_outputs(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str], *,
                       trust: Trust | None = None) -> None:
    """``trust``: records whose COGs and STAC items are not checked again (:mod:`.incremental`)."""
    created = manifest.get("created_with")
    if not isinstance(created, dict) or created.get("tile_format") != "COG":
        return
    trust = trust or Trust()
    for rec in records:
        if rec.get("id") in trust.records:
            continue
        for key in ("image", "label"):
            rel = safe_rel(rec.get(key))
            if rel and (root / rel).is_file():
                errors = [p.split(": ", 1)[-1] for p in validate_cog(root / rel) if ": warning: " not in p]
                if errors:
                    out.append(f"{rel}: not a valid COG: {'; '.join(errors)}")
    ids = [r["id"] for r in records if isinstance(r.get("id"), str)]
    out.extend(validate_stac(root, expected_ids=ids, trusted=trust.stac_items, known_links=trust.collection_links))
    if not (root / "index.parquet").is_file():
        out.append("index.parquet: missing")
