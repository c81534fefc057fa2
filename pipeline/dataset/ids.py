"""Names of released images: their natural order and the stable key that follows an image across releases.

* Image ids are ``<region>_<n>`` (:func:`pipeline.dataset.pool.name_images`); :func:`natural_key` orders them
  (and release names such as ``v0.10.0``) with digit runs compared as numbers.
* The stable key of an image is ``<source>-<source scene id>-<tile id>`` (the pool's tile key,
  :func:`pipeline.labels.labelling.tile_key`): ids are renumbered when a scene is inserted before others,
  keys never change, so releases are compared and continued by key (:func:`image_key`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def natural_key(text: str) -> tuple:
    """Sort key ordering digit runs numerically: ``austin_2`` < ``austin_10`` < ``b_1``."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def image_key(image: Mapping[str, Any]) -> str:
    """Stable key of an image across releases: ``image["key"]`` when present, else the pool's tile key
    ``f"{source}-{source_scene_id}-{tile}"`` (the format of :func:`pipeline.labels.labelling.tile_key`)."""
    key = image.get("key")
    if key:
        return str(key)
    try:
        return f"{image['source']}-{image['source_scene_id']}-{image['tile']}"
    except KeyError as exc:
        raise ValueError(f"image {image.get('id')!r} has neither 'key' nor source/source_scene_id/tile") from exc
