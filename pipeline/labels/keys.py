"""Stable tile keys: the name of a tile across releases and of its annotation files.

Policy
------
* A key is ``<source>~<scene id>~<tile id>`` (:func:`tile_key`).  ``~`` (:data:`KEY_SEP`) is a character
  none of the three parts can contain: source names are ``[a-z0-9][a-z0-9_-]*``
  (:mod:`pipeline.sources.config`), scene ids ``[a-z0-9_.-]`` (:func:`pipeline.sources.adapters.base.safe_id`)
  and tile ids ``r<row>_c<col>`` (:func:`pipeline.raster.tiling.tile_id`), so a key splits back into its parts
  unambiguously (:func:`split_tile_key`), even when names contain ``-`` (the shipped ``spacenet-vegas``).
  ``~`` is safe in file names on every common file system, in S3 object keys and in URLs (an RFC 3986
  *unreserved* character), and a key never starts with it, so shells do not expand it.
* Releases built before this rule carry *legacy* keys ``<source>-<scene id>-<tile id>``
  (:func:`legacy_tile_key`), which are ambiguous (``a`` + ``b-c`` and ``a-b`` + ``c`` give the same key).
  They are never parsed: a manifest image is identified by its ``source``, ``source_scene_id`` and ``tile``
  fields (:func:`pipeline.dataset.ids.image_key`), which every manifest has, so continuing an old release maps
  its images to the new keys exactly.
* Annotation files are named ``<key>.<suffix>``; they are matched by the **whole** file stem, never by a
  prefix (:func:`scene_key_stem_matches`): scene ``a`` never picks up the files of scene ``a-b``.  A file
  named by the legacy key of the same tile is still accepted (annotations completed before the upgrade), also
  by exact stem only.
"""
from __future__ import annotations

import re

#: Separator of the three parts of a tile key.
KEY_SEP = "~"
#: Tile ids as :func:`pipeline.raster.tiling.tile_id` writes them.
TILE_ID_RE = re.compile(r"^r\d{3,}_c\d{3,}$")


def tile_key(source: str, scene_id: str, tile_id: str) -> str:
    """Stable name of a tile across releases: ``<source>~<scene id>~<tile id>`` (module docstring)."""
    for part, what in ((source, "source name"), (scene_id, "scene id"), (tile_id, "tile id")):
        if KEY_SEP in part:
            raise ValueError(f"{what} {part!r} contains the key separator {KEY_SEP!r}")
    return f"{source}{KEY_SEP}{scene_id}{KEY_SEP}{tile_id}"


def legacy_tile_key(source: str, scene_id: str, tile_id: str) -> str:
    """The key releases before the ``~`` separator used: ``<source>-<scene id>-<tile id>`` (ambiguous)."""
    return f"{source}-{scene_id}-{tile_id}"


def split_tile_key(key: str) -> tuple[str, str, str] | None:
    """``(source, scene id, tile id)`` of a key made by :func:`tile_key`, or None for anything else
    (including legacy keys)."""
    parts = str(key).split(KEY_SEP)
    if len(parts) != 3 or not all(parts) or not TILE_ID_RE.match(parts[2]):
        return None
    return parts[0], parts[1], parts[2]


def scene_key_stem_matches(stem: str, source: str, scene_id: str) -> bool:
    """Whether a file stem is exactly the key (or the legacy key) of one tile of scene ``source/scene_id``."""
    for prefix in (tile_key(source, scene_id, ""), legacy_tile_key(source, scene_id, "")):
        if stem.startswith(prefix) and TILE_ID_RE.match(stem[len(prefix):]):
            return True
    return False
