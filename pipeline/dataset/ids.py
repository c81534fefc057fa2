"""Names of released images: their natural order and the stable key that follows an image across releases.

* Image ids are ``<region>_<n>`` (:func:`pipeline.dataset.pool.name_images`); :func:`natural_key` orders them
  (and release names such as ``v0.10.0``) with digit runs compared as numbers.
* The stable key of an image is ``<source>~<source scene id>~<tile id>`` (the pool's tile key,
  :func:`pipeline.labels.keys.tile_key`): ids are renumbered when a scene is inserted before others,
  keys never change, so releases are compared and continued by key (:func:`image_key`).  The key is
  computed from the record's ``source``, ``source_scene_id`` and ``tile`` whenever it has them (every manifest
  image does), so a manifest written before the ``~`` separator, whose ``key`` fields hold the ambiguous
  legacy ``<source>-<scene>-<tile>``, maps to exactly the new keys: a rebuild after upgrading keeps ids and
  splits.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from pipeline.labels.keys import tile_key


@functools.lru_cache(maxsize=1 << 16)
def natural_key(text: str) -> tuple:
    """Sort key ordering digit runs numerically: ``austin_2`` < ``austin_10`` < ``b_1`` (remembered for the
    last 65,536 names: a release sorts its 5,000 ids many times)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def image_key(image: Mapping[str, Any]) -> str:
    """Stable key of an image across releases: :func:`pipeline.labels.keys.tile_key` of its ``source``,
    ``source_scene_id`` and ``tile`` when the record has all three (whatever its ``key`` field says: old
    manifests hold legacy keys there), else its ``key``."""
    parts = [image.get(k) for k in ("source", "source_scene_id", "tile")]
    if all(isinstance(p, str) and p for p in parts):
        return tile_key(*parts)  # type: ignore[arg-type]
    key = image.get("key")
    if key:
        return str(key)
    raise ValueError(f"image {image.get('id')!r} has neither 'key' nor source/source_scene_id/tile")
