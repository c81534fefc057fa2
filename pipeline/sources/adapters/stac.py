"""STAC adapter: one scene per entry of the ``stac-index.json`` that :mod:`pipeline.sources.stac.fetch` wrote.

Only local files are read: the index, the items and the images it names (``items/<scene>.json``,
``images/<scene>.tif``).  Licence,
attribution and acquisition time are the item's (resolved at fetch time: item ``license`` / license
links, else the nearest collection's, else the source's; providers, else the collection's, else the
source's attribution).  ``extra["stac"]`` keeps the item id, collection, self link, asset key and href,
how it was read (``window`` / ``whole`` ...), the window, the bytes transferred and the CRS/GSD checks;
``extra["bands"]`` the asset's red, green and blue bands when its band list in the stored item names them
(:func:`pipeline.sources.stac.items.rgb_bands`; the source's ``options.bands`` overrides it).
Items the fetch rejected come back as :class:`pipeline.errors.ItemRejected` (one ``rejects.csv`` row
each, with the scene id and the stage).

The ``openaerialmap`` kind uses :func:`stac_thunks` too when its raw folder has an index (STAC API).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from pipeline.errors import ItemRejected, SceneRejected
from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter
from pipeline.sources.config import SourceConfig
from pipeline.sources.stac.fetch import INDEX

#: Index fields copied into ``Scene.extra["stac"]``.
STAC_EXTRA = ("item_id", "collection", "self", "asset", "href", "media_type", "read", "window", "transferred",
              "checks", "title", "platform", "gsd")


def has_index(root: Path) -> bool:
    return (Path(root) / INDEX).is_file()


def stac_thunks(adapter: Adapter, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
    """One thunk per index entry: a scene, or (for a rejected item) a raised ``ItemRejected``."""
    path = Path(root) / INDEX
    try:
        index = json.loads(path.read_text())
        scenes, rejects = list(index["scenes"]), list(index["rejects"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SceneRejected(str(path), f"unreadable STAC index: {exc}") from None
    for rej in rejects:
        yield functools.partial(_raise, rej)
    for entry in scenes:
        yield functools.partial(_scene, adapter, Path(root), entry, source)


def _raise(rej: dict) -> Scene:
    raise ItemRejected(rej["file"], rej["reason"], scene_id=rej.get("scene_id") or "", stage=rej.get("stage", "fetch"))


def _scene(adapter: Adapter, root: Path, entry: dict, source: SourceConfig) -> Scene:
    image = root / entry["image"]
    if not image.is_file():
        raise ItemRejected(str(image), f"image of STAC item {entry.get('item_id')} is missing",
                           scene_id=entry["scene_id"], stage="catalog")
    return adapter.make_scene(
        source, entry["scene_id"], image,
        license=entry["license"], attribution=entry["attribution"], acquired=entry.get("acquired"),
        region_hint=(source.options or {}).get("region"),
        extra={"stac": {k: entry.get(k) for k in STAC_EXTRA},
               **({"bands": bands} if (bands := _asset_rgb(adapter, root, entry)) else {})},
    )


def _asset_rgb(adapter: Adapter, root: Path, entry: dict) -> list[int] | None:
    """The red, green and blue bands the scene's asset names in the item the fetch stored (``items/<scene>.json``,
    :func:`pipeline.sources.stac.items.rgb_bands`); None when it names none or there is no stored item."""
    from pipeline.sources.stac.items import rgb_bands

    item = adapter.read_json(root / entry["item"]) if entry.get("item") and (root / entry["item"]).is_file() else None
    asset = (item.get("assets") or {}).get(entry.get("asset")) if isinstance(item, dict) else None
    return rgb_bands(asset) if isinstance(asset, dict) else None


class StacAdapter(Adapter):
    """Scenes of any STAC API or static catalog (see :mod:`pipeline.sources.stac.fetch`)."""

    kind: ClassVar[str] = "stac"
    title: ClassVar[str] = "STAC catalog"
    default_license: ClassVar[str] = "per item (item license, else collection license)"
    label_encoding: ClassVar[str] = "none (imagery only)"

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        if not has_index(root):
            return
        yield from stac_thunks(self, root, source)

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        if has_index(root):
            return "no STAC items matched the source's collections/bbox/datetime/query"
        return f"no {INDEX} (the folder was not fetched as a STAC source)"
