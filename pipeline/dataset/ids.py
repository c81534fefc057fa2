"""Names: of releases (what a release may be called), of released images (their natural order) and the stable
key that follows an image across releases.

* A release name is one folder name under ``<data_dir>/releases/`` and part of S3 keys and STAC ids
  (:func:`release_name_problem`): letters, digits and ``. _ + -``, starting with a letter or digit.  Without
  that rule ``--release .`` replaced the whole ``releases/`` folder (every earlier release gone) and
  ``--release ../x`` wrote outside it.
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

from pipeline.errors import ConfigError
from pipeline.labels.keys import tile_key

#: What a release may be called (also the manifest schema's ``release`` pattern).
RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def release_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a release (module docstring), or None when it can."""
    if RELEASE_NAME.fullmatch(name):
        return None
    return (f"release name {name!r} is not one folder name under releases/: use letters, digits and '.', '_', "
            "'+', '-', starting with a letter or digit, at most 100 characters (e.g. v0.2.0)")


def check_release_name(name: str) -> str:
    """``name`` when it can name a release; else a :class:`~pipeline.errors.ConfigError` saying why."""
    problem = release_name_problem(name)
    if problem:
        raise ConfigError(problem)
    return name


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
