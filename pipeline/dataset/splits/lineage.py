"""A place keeps its split along a lineage: a new image on the footprint of an image the lineage no longer ships
takes that image's split (no Luigi here).

Images are matched across releases by their stable key (``<source>~<scene>~<tile>``).  The same pixels can come
back under a new key: a source renamed in ``sources.yaml``, a local folder reorganised (scene ids follow the
paths), imagery of the same place fetched through another source.  The old keys are then retired and, without
this rule, the new images would be split afresh: a tile that was in test in v1 could be in train in v2, which is
the leakage that frozen splits exist to prevent.  Leakage groups (:mod:`.leakage`) keep overlapping images of
one release in one split; :func:`lineage_anchors` does the same across the lineage:

* candidates: the new images (key neither shipped by the previous release nor retired in its lineage) whose
  leakage group holds no image with a kept split (such a group follows that image);
* a candidate's anchor is the retired image (:func:`pipeline.dataset.history.retired_images`, with its footprint)
  that it overlaps most, by more than :data:`~.leakage.OVERLAP_TOLERANCE` of the smaller footprint as leakage
  groups measure it; ties go to the first key in natural order.  The candidate keeps the anchor's split and
  names it (``same_place_as`` in the manifest; ``validate`` checks that it is a retired image of that split);
* a leakage group with several anchored candidates takes the split of its first (natural id order); a member
  anchored to another split is not anchored (it follows its group);
* the selection keeps a pool tile on a retired image's place as it keeps the previous release's images
  (:func:`on_retired_places`), so a sampled region releases the same places after its keys changed.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pipeline.dataset.ids import image_key, natural_key
from pipeline.dataset.splits.leakage import overlapping_pairs

#: Id prefix of the retired footprints measured beside the images (ids never contain ``~``).
_RETIRED = "~retired~"


def retired_matches(records: Sequence[Mapping[str, Any]], retired: Sequence[Mapping[str, Any]]
                    ) -> dict[str, tuple[str, str]]:
    """id -> ``(retired key, split)`` of the retired image (``{"key", "split", "crs", "bounds"}``; those without a
    footprint are left out) that each of ``records`` (``id``, ``crs``, ``bounds``) overlaps most, for those that
    overlap one (module docstring)."""
    placed = [r for r in retired if isinstance(r.get("crs"), str) and isinstance(r.get("bounds"), list)]
    if not placed or not records:
        return {}
    mixed = [{"id": str(r["id"]), "crs": r.get("crs"), "bounds": r.get("bounds")} for r in records]
    mixed += [{"id": f"{_RETIRED}{i}", "crs": r["crs"], "bounds": r["bounds"]} for i, r in enumerate(placed)]
    best: dict[str, tuple[float, Any, str, str]] = {}  # record id -> (fraction, key order, retired key, split)
    for a, b, fraction in overlapping_pairs(mixed):
        if a.startswith(_RETIRED) == b.startswith(_RETIRED):
            continue
        record_id, other = (b, a) if a.startswith(_RETIRED) else (a, b)
        r = placed[int(other[len(_RETIRED):])]
        order = natural_key(str(r["key"]))
        current = best.get(record_id)
        if current is None or fraction > current[0] or (fraction == current[0] and order < current[1]):
            best[record_id] = (fraction, order, str(r["key"]), str(r["split"]))
    return {i: (key, split) for i, (_, _, key, split) in best.items()}


def on_retired_places(tiles: Sequence[Mapping[str, Any]], retired: Sequence[Mapping[str, Any]]) -> set[str]:
    """The keys of ``tiles`` (pool tiles: ``key``, ``crs``, ``bounds``) that lie on a retired image's place: the
    selection keeps them as it keeps the previous release's images, so a region's released places stay released
    when their keys change."""
    return set(retired_matches([{**t, "id": t["key"]} for t in tiles], retired))


def lineage_anchors(images: Sequence[Mapping[str, Any]], groups: Mapping[str, str], kept: Collection[str],
                    retired: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """key -> ``(split, retired key)`` for the new images of ``images`` (named, with ``crs`` and ``bounds``) that
    lie on the footprint of a ``retired`` image (:func:`retired_matches`) -- module docstring.  ``groups``: id ->
    leakage group; ``kept``: the keys whose split is kept from the lineage."""
    if not any(isinstance(r.get("crs"), str) for r in retired):  # nothing retired (a source added): no image looked at
        return {}
    held = {groups.get(im["id"], im["id"]) for im in images if image_key(im) in kept}
    new = [im for im in images if image_key(im) not in kept and groups.get(im["id"], im["id"]) not in held]
    best = retired_matches(new, retired)
    group_split: dict[str, str] = {}
    for im in sorted(new, key=lambda d: natural_key(str(d["id"]))):
        if im["id"] in best:
            group_split.setdefault(groups.get(im["id"], im["id"]), best[im["id"]][1])
    return {image_key(im): (best[im["id"]][1], best[im["id"]][0]) for im in new
            if im["id"] in best and best[im["id"]][1] == group_split[groups.get(im["id"], im["id"])]}
