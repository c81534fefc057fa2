"""The demo table: which regions, layouts, CRSs and GSDs the demo source holds, and how many tiles each yields."""
from __future__ import annotations

from dataclasses import dataclass

TILE = 1024
#: Scene extent = tiles * (1 + margin): room for reprojection rotation (~1-2 degrees) and lattice centring.
MARGIN = 1.04
#: Scene extent factor for scenes with a nodata / alpha border (the border stays outside the tile lattice).
BORDER_MARGIN = 1.10
SIZES = ("full", "small")
LAYOUTS = ("xbd", "inria", "spacenet", "local")
#: Coarsest GSD (m) the pipeline accepts (0.5 m + 2 %); coarser scenes are expected to be rejected.
MAX_GSD = 0.51


@dataclass(frozen=True)
class DemoScene:
    """One row of the demo table: a region's scenes of one layout.

    ``full`` / ``small`` are ``(files, tile_cols, tile_rows)``: how many image files the region gets and how many
    whole 1024-px tiles (at the pipeline's target GSD) each file holds.  xBD files are fixed 1024x1024 PNGs at
    0.5 m, i.e. one tile each.  ``name`` is the token used in file names (xBD disaster, Inria city, SpaceNet AOI
    city, local name prefix); ``number`` the first xBD id / Inria index / SpaceNet image number.
    """

    region: str
    continent: str
    country: str
    layout: str
    lon: float
    lat: float
    crs: str
    gsd: float
    style: str
    biome: str
    full: tuple[int, int, int]
    small: tuple[int, int, int]
    nodata: str = "none"
    name: str = ""
    number: int = 1
    aoi: int = 0
    disaster_type: str = ""
    capture_date: str = ""

    @property
    def target_gsd(self) -> float | None:
        """The pipeline's target GSD for this scene (ARCHITECTURE.md GSD rule), ``None`` when it is rejected."""
        return target_gsd(self.gsd)

    def spec(self, size: str) -> tuple[int, int, int]:
        return self.full if size == "full" else self.small

    def expected_tiles(self, size: str) -> int:
        """Tiles the pipeline should cut from all of this row's files (0 for a rejected scene)."""
        files, cols, rows = self.spec(size)
        return 0 if self.target_gsd is None else files * cols * rows


def target_gsd(gsd: float) -> float | None:
    """The ARCHITECTURE.md rule: > 0.51 m rejected (None); 0.25-0.5 m kept (rounded to 1 cm); finer -> 0.3 or
    0.5 m, whichever makes the downsampling factor closest to an integer, ties to 0.3 m."""
    if gsd > MAX_GSD:
        return None
    if gsd >= 0.25:
        return round(gsd, 2)
    f3, f5 = 0.3 / gsd, 0.5 / gsd
    d3, d5 = round(abs(f3 - round(f3)), 9), round(abs(f5 - round(f5)), 9)
    return 0.3 if d3 <= d5 else 0.5


#: The demo scene table.  Centres are real city coordinates on land; CRSs use the right UTM zones.
DEMO_SCENES: tuple[DemoScene, ...] = (
    DemoScene("palu", "Asia", "ID", "xbd", 119.8708, -0.9083, "EPSG:4326", 0.5, "suburban", "tropical",
              (8, 1, 1), (1, 1, 1), name="palu-tsunami", number=12, disaster_type="tsunami",
              capture_date="2018-08-16T02:41:31.000Z"),
    DemoScene("mexico_city", "North America", "MX", "xbd", -99.1277, 19.4285, "EPSG:4326", 0.5, "dense", "arid",
              (8, 1, 1), (1, 1, 1), name="mexico-earthquake", number=40, disaster_type="earthquake",
              capture_date="2017-05-24T17:02:11.000Z"),
    DemoScene("santa_rosa", "North America", "US", "xbd", -122.7144, 38.4405, "EPSG:4326", 0.5, "suburban",
              "temperate", (8, 1, 1), (1, 1, 1), name="santa-rosa-wildfire", number=103, disaster_type="fire",
              capture_date="2017-07-03T19:05:44.000Z"),
    DemoScene("austin", "North America", "US", "inria", -97.7400, 30.2750, "EPSG:32614", 0.3, "periurban",
              "arid", (1, 3, 3), (1, 1, 1), name="austin", number=1),
    DemoScene("vienna", "Europe", "AT", "inria", 16.3721, 48.2085, "EPSG:32633", 0.3, "dense", "temperate",
              (1, 3, 3), (1, 1, 1), name="vienna", number=1),
    DemoScene("paris", "Europe", "FR", "spacenet", 2.3400, 48.8750, "EPSG:4326", 0.3, "dense", "temperate",
              (2, 2, 3), (1, 1, 1), name="Paris", number=101, aoi=3),
    DemoScene("shanghai", "Asia", "CN", "spacenet", 121.4581, 31.2222, "EPSG:4326", 0.3, "dense", "temperate",
              (2, 2, 2), (1, 1, 1), name="Shanghai", number=201, aoi=4),
    DemoScene("khartoum", "Africa", "SD", "spacenet", 32.5324, 15.5518, "EPSG:4326", 0.3, "periurban", "arid",
              (2, 2, 2), (1, 1, 1), name="Khartoum", number=301, aoi=5),
    DemoScene("kampala", "Africa", "UG", "local", 32.5822, 0.3163, "EPSG:3857", 0.1, "suburban", "tropical",
              (3, 1, 1), (1, 1, 1), nodata="alpha", name="kampala"),
    DemoScene("lima", "South America", "PE", "local", -77.0282, -12.0432, "EPSG:32718", 0.15, "dense", "arid",
              (3, 1, 2), (1, 1, 1), nodata="value", name="lima"),
    DemoScene("christchurch", "Oceania", "NZ", "local", 172.6333, -43.5333, "EPSG:32759", 0.15, "rural",
              "temperate", (3, 1, 2), (1, 1, 1), name="christchurch"),
    DemoScene("sao_paulo", "South America", "BR", "local", -46.6361, -23.5475, "EPSG:32723", 0.3, "dense",
              "tropical", (1, 3, 3), (1, 1, 1), nodata="value", name="sao_paulo"),
    DemoScene("tokyo", "Asia", "JP", "local", 139.6917, 35.6895, "EPSG:3857", 0.5, "dense", "temperate",
              (6, 4, 3), (1, 1, 1), name="tokyo"),
    DemoScene("denver", "North America", "US", "local", -104.9847, 39.7392, "EPSG:32613", 0.8, "rural", "arid",
              (1, 1, 1), (1, 1, 1), name="denver_coarse"),
)
