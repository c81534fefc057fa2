"""Open Cities AI Challenge adapter (GFDRR, 2020): drone orthomosaics of African cities with building footprints.

Two layouts are recognised anywhere below ``root`` (sorted, recursive), the one the dataset registry's archives
unpack to (Radiant MLHub, now Source Cooperative) and the one of the challenge's STAC catalog (DrivenData)::

    open_cities_ai_challenge_<tier>_source/open_cities_ai_challenge_<tier>_source_<city>_<id>/image.tif
    open_cities_ai_challenge_<tier>_labels/open_cities_ai_challenge_<tier>_labels_<city>_<id>/labels.geojson

    <tier>/<city>/<id>/<id>.tif
    <tier>/<city>/<id>-labels/<id>.geojson

``tier`` is ``train_tier_1`` or ``train_tier_2`` (tier 2's footprints are of lower quality); ``city`` a
three-letter code (``acc`` Accra, ``dar`` Dar es Salaam, ``gao`` Gao, ``kam`` Kampala, ``kin`` Kinshasa, ``mah``
Mahé, ``mon`` Monrovia, ``nia`` Niamey, ``ptn`` Pointe-Noire, ``znz`` Zanzibar); ``id`` six characters
(``665946``, ``a42435``).  The test set (1024 px chips without georeference) is not read.

Facts: the images are GeoTIFFs in the local UTM zone at 2-20 cm (RGB with an alpha band; the raster stage takes
them to 0.3 or 0.5 m and reads the alpha band as the nodata mask), ``georef=None``; the labels are building
polygons in a GeoJSON (lon/lat unless it says otherwise), ``extra["footprints_format"] = "vector"``: the scenes'
tiles await 8-class annotation, pre-annotated with these buildings.  ``scene_id`` = ``<city>_<id>``;
``region_hint`` = the city as the gazetteer names it (:data:`CITY_REGIONS`), so another source's scene of the
same city shares its region; an unknown code is its own region.  ``options.tiers`` (default ``[1]``) keeps the
listed tiers, ``options.cities`` the listed cities (codes or region names, case-insensitive).  Licence of every
collection: ODbL-1.0.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, sorted_glob
from pipeline.sources.config import SourceConfig
from pipeline.sources.footprints import VECTOR, vector_crs

#: City codes -> the region name :func:`pipeline.dataset.regions.metro_city` gives the city (GeoNames' name
#: slugified); Mahé, an island of the Seychelles, has no city the gazetteer lists.
CITY_REGIONS = {"acc": "accra", "dar": "dar_es_salaam", "gao": "gao", "kam": "kampala", "kin": "kinshasa",
                "mah": "mahe", "mon": "monrovia", "nia": "niamey", "ptn": "pointe_noire", "znz": "zanzibar"}

_PREFIX = "open_cities_ai_challenge_"
_REGISTRY = re.compile(rf"^{_PREFIX}(?P<tier>train_tier_\d)_source_(?P<city>[a-z]+)_(?P<id>[0-9a-z]+)$")
_TIER = re.compile(r"^train_tier_(?P<n>\d)$")
_SCENE = re.compile(r"^[0-9a-z]+$")


def city_region(city: str) -> str:
    """The region of an Open Cities city code (``dar`` -> ``dar_es_salaam``; an unknown code is its own)."""
    return CITY_REGIONS.get(city.lower(), city.lower())


class OpenCitiesAdapter(Adapter):
    """Open Cities AI Challenge layouts (see module docstring)."""

    kind: ClassVar[str] = "opencities"
    title: ClassVar[str] = "Open Cities AI Challenge"
    default_license: ClassVar[str] = "ODbL-1.0"
    citation: ClassVar[str] = (
        'GFDRR Labs (2020). "Open Cities AI Challenge Dataset", Version 1.0, Radiant MLHub, '
        "doi:10.34911/rdnt.f94cxb"
    )
    label_encoding: ClassVar[str] = "labels.geojson / <id>-labels/<id>.geojson: building polygons"

    def _wanted(self, source: SourceConfig, tier: str, city: str) -> bool:
        opts = source.options or {}
        tiers = {int(t) for t in opts.get("tiers") or [1]}
        cities = {str(c).lower() for c in opts.get("cities") or []}
        match = _TIER.match(tier)
        return (match is not None and int(match["n"]) in tiers
                and (not cities or city in cities or city_region(city) in cities))

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        opts = source.options or {}
        tiers = ", ".join(f"train_tier_{int(t)}" for t in opts.get("tiers") or [1])
        cities = f" of cities {sorted(opts['cities'])}" if opts.get("cities") else ""
        return (f"no Open Cities AI scenes{cities} in {tiers} below {root} ({_PREFIX}<tier>_source_<city>_<id>/"
                "image.tif or <tier>/<city>/<id>/<id>.tif)")

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        found: dict[str, tuple[Path, Path, str, str, str]] = {}
        for image in sorted_glob(root, "image.tif", recursive=True):  # the registry's archives
            m = _REGISTRY.match(image.parent.name)
            if m and self._wanted(source, m["tier"], m["city"]):
                labels = (image.parent.parent.parent / f"{_PREFIX}{m['tier']}_labels"
                          / f"{_PREFIX}{m['tier']}_labels_{m['city']}_{m['id']}" / "labels.geojson")
                found.setdefault(str(image), (image, labels, m["tier"], m["city"], m["id"]))
        for image in sorted_glob(root, "*.tif", recursive=True):  # the challenge's STAC catalog
            scene, city, tier = image.parent, image.parent.parent, image.parent.parent.parent
            if (image.stem == scene.name and _SCENE.match(scene.name) and _TIER.match(tier.name)
                    and self._wanted(source, tier.name, city.name)):
                labels = city / f"{scene.name}-labels" / f"{scene.name}.geojson"
                found.setdefault(str(image), (image, labels, tier.name, city.name, scene.name))
        for key in sorted(found):
            yield functools.partial(self.scene_for, *found[key], source)

    def scene_for(self, image: Path, labels: Path, tier: str, city: str, scene: str,
                  source: SourceConfig) -> Scene:
        footprints = labels if labels.is_file() else None
        return self.make_scene(
            source,
            f"{city}_{scene}",
            image,
            footprints=footprints,
            footprints_crs=vector_crs(footprints) if footprints is not None else None,
            region_hint=city_region(city),
            extra={"city": city, "tier": tier, **({"footprints_format": VECTOR} if footprints is not None else {})},
        )
