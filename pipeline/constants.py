"""The one place for the facts every stage shares: classes, splits, continents.

Classes are OpenEarthMap's: ids 1..8 with their names and palette, 0 = unlabelled (nodata, never a class).
Everything else (class tables, label palettes, split files, statistics, STAC summaries, the manifest
schema's enums) is derived from these values; change them here, not in a stage.
"""
from __future__ import annotations

#: The id of unlabelled / nodata pixels in every label raster (not a class).
UNLABELLED = 0
#: Number of land-cover classes (ids 1..NUM_CLASSES).
NUM_CLASSES = 8
#: Class ids, in order (0 = unlabelled is not one).
CLASS_IDS: tuple[int, ...] = tuple(range(1, NUM_CLASSES + 1))
#: Class ids as the string keys of per-class JSON records (``class_pixels``, ``segments``).
CLASS_KEYS: tuple[str, ...] = tuple(str(c) for c in CLASS_IDS)

#: Class names of the release, as in OpenEarthMap.
CLASS_NAMES: dict[int, str] = {
    1: "bareland",
    2: "rangeland",
    3: "developed space",
    4: "road",
    5: "tree",
    6: "water",
    7: "agriculture land",
    8: "building",
}
#: Class colours (R, G, B) of the OpenEarthMap palette; palette annotations must use exactly these.
CLASS_COLORS: dict[int, tuple[int, int, int]] = {
    1: (0x80, 0x00, 0x00),
    2: (0x00, 0xFF, 0x24),
    3: (0x94, 0x94, 0x94),
    4: (0xFF, 0xFF, 0xFF),
    5: (0x22, 0x61, 0x26),
    6: (0x00, 0x45, 0xFF),
    7: (0x4B, 0xB5, 0x49),
    8: (0xDE, 0x1F, 0x07),
}
#: The building class (footprints and pre-annotations burn this id).
BUILDING = 8
#: Classes counted as urban: developed space, road, building.
URBAN_CLASSES: tuple[int, ...] = (3, 4, 8)

#: The three splits, in the order used for counts, ratios, files and tie-breaking.
SPLITS: tuple[str, str, str] = ("train", "val", "test")

#: The six inhabited continents, in the order of the manifest schema and the statistics tables.
CONTINENTS: tuple[str, ...] = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
#: GeoNames continent codes -> continent names (Antarctica included: a place there is located, then rejected: the
#: pool leaves out a scene outside :data:`CONTINENTS`, :func:`pipeline.dataset.pool.outside_continents`).
CONTINENT_CODES: dict[str, str] = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "SA": "South America",
    "OC": "Oceania",
    "AN": "Antarctica",
}
