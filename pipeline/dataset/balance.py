"""How evenly the released images spread over the continents (warnings for the build summary and the manifest).

Policy: the counts are of **released** images, i.e. the selected tiles that have an 8-class label (pending
tiles awaiting annotation are not released, :func:`released_per_continent`); a continent of the six inhabited
ones is *under-represented* when it has no released image or fewer than half the mean per continent
(:func:`under_represented`).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pipeline.constants import CONTINENTS


def released_per_continent(tiles: Iterable[Mapping[str, Any]], selected: Collection[str]) -> dict[str, int]:
    """``{continent: released images}`` (sorted) over pool ``tiles`` whose key is ``selected`` and that are
    labelled (what the split releases)."""
    out: dict[str, int] = {}
    for t in tiles:
        if t["key"] in selected and t.get("status") == "labelled":
            out[t["continent"]] = out.get(t["continent"], 0) + 1
    return dict(sorted(out.items()))


def under_represented(per_continent: Mapping[str, int]) -> list[str]:
    """One warning per inhabited continent with no released image, or fewer than half the mean."""
    names = sorted(CONTINENTS)
    mean = sum(per_continent.get(c, 0) for c in names) / len(names)
    out = []
    for c in names:
        n = per_continent.get(c, 0)
        if n == 0 or n < mean / 2:
            out.append(f"continent {c} is under-represented: {n} released images (mean {mean:.1f} per continent)")
    return out
