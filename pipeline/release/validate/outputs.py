"""Check 11: outputs for users of COG releases: valid COG tiles, a valid STAC catalog, ``index.parquet``
(``index.gpkg``, written since 2026-12, is checked as a listed file: a release made before has none)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import forked
from pipeline.raster.cog import validate_cog
from pipeline.release.validate.common import safe_rel
from pipeline.release.validate.incremental import Trust
from pipeline.release.validate.stac import validate_stac


def check_user_outputs(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str], *,
                       trust: Trust | None = None, concurrent: bool = False) -> None:
    """``trust``: records whose COGs and STAC items are not checked again (:mod:`.incremental`).
    ``concurrent``: the COG tiles are checked in a forked process (:mod:`pipeline.forked`; from
    :data:`~pipeline.release.validate.stac.CONCURRENT_ITEMS` records to check on) while this one checks the STAC
    catalog, itself split in two (:func:`~pipeline.release.validate.stac.validate_stac`); same problems, same
    order."""
    from pipeline.release.validate.stac import CONCURRENT_ITEMS  # read when called: one threshold for both

    created = manifest.get("created_with")
    if not isinstance(created, dict) or created.get("tile_format") != "COG":
        return
    trust = trust or Trust()
    checked = [rec for rec in records if rec.get("id") not in trust.records]
    with (forked.start if concurrent and len(checked) >= CONCURRENT_ITEMS else forked.done)(
            _cog_problems, root, checked) as cogs:
        ids = [r["id"] for r in records if isinstance(r.get("id"), str)]
        stac = validate_stac(root, expected_ids=ids, trusted=trust.stac_items, known_links=trust.collection_links,
                             concurrent=concurrent)
        out.extend(cogs.result())
    out.extend(stac)
    files = manifest.get("files")
    listed = {e.get("path") for e in files if isinstance(e, dict)} if isinstance(files, list) else set()
    if not (root / "index.parquet").is_file() and "index.parquet" not in listed:  # else check 5 says it
        out.append("index.parquet: missing")


def _cog_problems(root: Path, records: list[dict[str, Any]]) -> list[str]:
    """One line per tile of ``records`` that is not a valid COG (warnings left out)."""
    out = []
    for rec in records:
        for key in ("image", "label"):
            rel = safe_rel(rec.get(key))
            if rel and (root / rel).is_file():
                errors = [p.split(": ", 1)[-1] for p in validate_cog(root / rel) if ": warning: " not in p]
                if errors:
                    out.append(f"{rel}: not a valid COG: {'; '.join(errors)}")
    return out
