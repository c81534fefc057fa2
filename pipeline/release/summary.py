"""The manifest's ``summary`` section: what a release holds, counted over its released images.

``{"images", "splits": {"train", "val", "test"}, "area_km2", "regions" | "countries" | "continents":
{name: {"images", "area_km2"}}, "labels": {...}}``.  Areas are the union of the image footprints
(:mod:`pipeline.dataset.stats.area`; overlapping tiles count once).  ``labels`` counts what the annotation
workflow repaired or held back: ``annotation_repaired_polygons`` (invalid polygons of the released images'
annotations that ``make_valid`` repaired), ``footprint_repaired_polygons`` / ``footprint_dropped_polygons``
(source building footprints repaired / dropped as unusable while exporting the pending tiles'
pre-annotations), ``pending`` (selected tiles awaiting annotation) and ``pending_unfinished`` (those whose
annotation in ``done/`` was unedited or mostly unlabelled, :func:`pipeline.labels.labelling.unfinished_reason`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.constants import SPLITS
from pipeline.dataset.pool import PENDING_REASON
from pipeline.dataset.stats.area import released_area


def release_summary(records: Sequence[Mapping[str, Any]], *, pending: Iterable[Mapping[str, Any]] = (),
                    annotation_repairs: int = 0, groups: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``summary`` of the manifest image ``records`` (module docstring).  ``pending`` rows may carry
    ``footprints_repaired`` / ``footprints_dropped`` and ``pending_reason``; ``groups``: the records' leakage
    groups when known (the validator leaves them out: it recomputes them)."""
    area = released_area(records, groups)
    out: dict[str, Any] = {
        "images": len(records),
        "splits": {s: sum(1 for r in records if r.get("split") == s) for s in SPLITS},
        "area_km2": area["area_km2"],
    }
    for section, field in (("regions", "region"), ("countries", "country"), ("continents", "continent")):
        counts = Counter(str(r[field]) for r in records)
        out[section] = {k: {"images": counts[k], "area_km2": area[section][k]} for k in sorted(counts)}
    rows = list(pending)
    out["labels"] = {
        "annotation_repaired_polygons": int(annotation_repairs),
        "footprint_repaired_polygons": sum(int(r.get("footprints_repaired", 0) or 0) for r in rows),
        "footprint_dropped_polygons": sum(int(r.get("footprints_dropped", 0) or 0) for r in rows),
        "pending": len(rows),
        "pending_unfinished": sum(1 for r in rows if r.get("pending_reason") not in (None, "", PENDING_REASON)),
    }
    return out


def summary_problems(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                     groups: Mapping[str, str] | None = None) -> list[str]:
    """Where a manifest's ``summary`` disagrees with its images (counts, union areas); [] without one.
    ``groups``: the records' leakage groups when the caller computed them (never the manifest's own)."""
    summary = manifest.get("summary")
    if not isinstance(summary, dict):
        return []
    try:
        expected = release_summary(records, groups=groups)
    except Exception as exc:  # noqa: BLE001  (malformed records are reported by the schema)
        return [f"manifest.json: summary cannot be checked ({exc})"]
    out = []
    for key in ("images", "splits", "area_km2", "regions", "countries", "continents"):
        if summary.get(key) != expected[key]:
            out.append(f"manifest.json: summary.{key} is {summary.get(key)!r}, the images give {expected[key]!r}")
    return out
