"""Copies of one image in the tile pool: released once (no Luigi here).

The same imagery often reaches a build twice: a source listed again under another name, a local copy of a
downloaded dataset, a file copied within a folder.  Each copy would be released as an image of its own, the
same pixels counted twice in every statistic and, in one split, seen twice by a model.  A tile is a *copy* of
another when its scene's image file has the same bytes (the SHA-256 its fetch record states) and the tile has
the same grid (CRS, transform) and tile id: the pipeline makes the same pixels from it.

Of each group of copies one tile stays in the pool: a labelled one before one awaiting annotation, then the one
of the source listed first in ``sources.yaml`` (sources are usually added at the end, so an image already
released keeps its id), then the lowest scene id.  The others leave the pool with one ``rejects.csv`` row per
scene (stage ``pool``) naming the copy kept.  Tiles of a scene whose image checksum is unknown are kept.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Tile fields the pool shares carry for this check only; :func:`drop_copies` removes them.
PRIVATE = ("_image_sha256", "_image_file")
STAGE = "pool"


def _place(tile: dict[str, Any]) -> tuple:
    return tile["_image_sha256"], tile["tile"], tile["crs"], tuple(tile["transform"])


def drop_copies(tiles: list[dict[str, Any]], source_order: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """``(kept, rejects)``: ``tiles`` (pool records, in order) less the copies of another (module docstring), each
    without the :data:`PRIVATE` fields, and the ``rejects.csv`` rows of the scenes whose tiles left."""
    rank = {name: i for i, name in enumerate(source_order)}
    best: dict[tuple, tuple[tuple, dict]] = {}
    for tile in tiles:
        if tile.get("_image_sha256"):
            pref = (tile["status"] != "labelled", rank.get(tile["source"], len(rank)), tile["source_scene_id"])
            place = _place(tile)
            if place not in best or pref < best[place][0]:
                best[place] = pref, tile
    kept: list[dict] = []
    left: dict[tuple[str, str, str], list[dict]] = {}
    for tile in tiles:
        winner = best[_place(tile)][1] if tile.get("_image_sha256") else tile
        if winner is not tile:
            scene = (tile["source"], tile["source_scene_id"], tile.get("_image_file") or "")
            left.setdefault(scene, []).append(winner)
            continue
        kept.append({k: v for k, v in tile.items() if k not in PRIVATE})
    rejects = []
    for (source, scene_id, file), winners in sorted(left.items()):
        first = winners[0]
        rejects.append({
            "source": source, "scene_id": scene_id, "file": file, "stage": STAGE,
            "reason": f"{len(winners)} tile(s) are copies of {first['source']}/{first.get('_image_file') or ''} "
                      f"(same image bytes, same grid): that copy is released, this one is not"})
    return kept, rejects
