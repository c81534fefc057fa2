"""OpenAerialMap adapter: one scene per fetched catalog record.

Layout written by :func:`pipeline.sources.fetch.fetch_source` for kind ``openaerialmap``::

    <root>/<_id>.tif    the image (COG GeoTIFF downloaded from the record's ``uuid`` URL)
    <root>/<_id>.json   the catalog record (provider, contact, license, title, acquisition dates,
                        platform, gsd, uuid, properties, ...)

JSON files that are not catalog records (no ``_id`` / ``uuid``, e.g. ``fetch.json``) are ignored.  A
record whose image is missing is rejected (``SceneRejected(<json>, ...)``).  Licence and attribution are
per record (``license`` or ``properties.license``; ``provider`` / ``contact``), falling back to the
source's.  OAM has no annotations: scenes carry imagery only.

With ``options.api: stac`` (the default) the source is fetched from OpenAerialMap's STAC API by
:mod:`pipeline.sources.stac.fetch` and its scenes are read like any STAC source's
(:mod:`pipeline.sources.adapters.stac`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import SceneRejected
from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, sorted_glob
from pipeline.sources.config import SourceConfig
from pipeline.sources.oam import item_attribution, item_license


class OpenAerialMapAdapter(Adapter):
    """Scenes from ``<_id>.tif`` + ``<_id>.json`` pairs fetched from the OAM catalog."""

    kind: ClassVar[str] = "openaerialmap"
    title: ClassVar[str] = "OpenAerialMap"
    default_license: ClassVar[str] = "CC-BY 4.0"
    citation: ClassVar[str] = (
        "This orthophoto data is available through OpenAerialMap, provided by Contributors of Open Imagery "
        "Network (https://openaerialmap.org)."
    )
    label_encoding: ClassVar[str] = "none (OpenAerialMap has imagery only)"

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        from pipeline.sources.adapters.stac import has_index, stac_thunks

        if has_index(root):  # fetched from OpenAerialMap's STAC API (the default, options.api: stac)
            yield from stac_thunks(self, root, source)
            return
        for sidecar in sorted_glob(root, "*.json"):
            try:
                item = self.read_json(sidecar)
            except SceneRejected:
                item = None
            if not isinstance(item, dict) or "_id" not in item or "uuid" not in item:
                continue
            yield functools.partial(self._scene, sidecar, item, source)

    def _scene(self, sidecar: Path, item: dict[str, Any], source: SourceConfig) -> Scene:
        image = sidecar.with_suffix(".tif")
        if not image.is_file():
            raise SceneRejected(str(sidecar), f"OpenAerialMap record {item['_id']}: image {image.name} is missing")
        return self.make_scene(
            source,
            f"oam-{item['_id']}",
            image,
            license=item_license(item, source.license),
            attribution=item_attribution(item, source.attribution),
            acquired=item.get("acquisition_start"),
            region_hint=(source.options or {}).get("region"),
            extra={
                "oam_id": str(item["_id"]),
                "oam_uuid": item.get("uuid"),
                "platform": item.get("platform"),
                "gsd": item.get("gsd"),
                "title": item.get("title"),
                "provider": item.get("provider"),
                "acquisition_end": item.get("acquisition_end"),
            },
        )

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        return "no OpenAerialMap records found (expected <_id>.json catalog records beside <_id>.tif images)"
