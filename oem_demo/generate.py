"""Built-in offline DEMO source: synthetic but realistic scenes in the on-disk layout of the real sources.

``generate_demo(root, seed, size)`` writes, deterministically from ``seed``, a set of land-cover scenes
under ``root`` in exactly the layouts the real adapters read (see ``docs/ARCHITECTURE.md`` and
``shared/docs/source-formats.md`` sections 1-3):

``xbd/train/{images,labels,landcover}/``
    ``<disaster>_<8-digit id>_pre_disaster.png`` (RGB, no georeference), the xBD label JSON
    (``features.lng_lat`` / ``features.xy`` WKT, same order and uid) and a single-band index PNG (0..8).
``inria/train/{images,gt,landcover}/<city><n>.tif``
    RGB uint8 GeoTIFF in a UTM CRS, building mask 255/0 and the 8-class label, all on one grid.
``spacenet/AOI_<k>_<City>_Train/{RGB-PanSharpen,geojson/buildings,landcover}/``
    3-band uint16 (11-bit, 0..2047) EPSG:4326 GeoTIFF, CRS84 building GeoJSON and the label raster.
``local/<region>/<name>.tif``, ``local/labels/<region>/<name>.tif``, ``local/footprints/<region>/<name>.geojson``
    RGB (or RGBA) uint8 GeoTIFFs in EPSG:3857 or UTM (some with a nodata value or an alpha border),
    the label raster and building polygons in the image CRS (GeoJSON with a ``crs`` member).

Policies
--------
* Determinism: every file is a pure function of ``(seed, size, scene)``.  Each scene file draws from its own
  ``numpy.random.Generator`` seeded with ``(seed, crc32(<scene key>))``; GeoTIFFs are written with fixed
  creation options (tiled, DEFLATE) and no timestamps, PNGs with fixed compression, JSON/GeoJSON with sorted
  keys and rounded coordinates (1e-9 degrees, 1e-3 metres, 1e-6 pixels).  Same seed and size -> byte-identical
  files.
* Geometry: each scene's land cover is generated as vectors in metric space (metres on the scene's ground
  grid: pixel ``(col, row)`` covers ``[col*gsd, (col+1)*gsd)`` metres east/south of the top-left corner), then
  rasterised on the pixel grid.  CRS pixel sizes realise the ground GSD exactly: UTM pixel = ``gsd`` metres;
  EPSG:3857 square pixel = ``gsd * a / (N(lat) cos(lat))`` (``~ gsd / cos(lat)``); EPSG:4326 pixel =
  ``gsd`` divided by the WGS84 metres per degree of longitude / latitude at the scene latitude.
* Buildings are rectangles (8-40 m) aligned with the street grid; class 8 is drawn last, so the class-8 pixels
  are exactly the rasterised rectangles and the written footprint vectors are those rectangles mapped through
  the scene's affine transform.  Buildings lie wholly inside the image and inside its valid (non-nodata) area,
  never on roads or water; footprints never overlap each other.
* Labels: ids 1..8 everywhere inside the valid area; 0 only in deliberate nodata borders (alpha = 0 or the
  nodata value in the image).
* Sizes: each scene is sized so that, after the pipeline reprojects it to local UTM at its target GSD (0.3 m for
  0.1/0.15 m sources, the native GSD for 0.25-0.5 m), a centred lattice of whole 1024-px tiles fits with a
  4 % margin (10 % for scenes with a nodata border).  ``DemoScene.expected_tiles`` states the count.
"""
from __future__ import annotations

import json
import math
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Optional

import cv2
import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.enums import ColorInterp
from shapely.geometry import LineString, Polygon

from pipeline.atomic import atomic_path, write_text

TILE = 1024
#: Scene extent = tiles * (1 + margin): room for reprojection rotation (~1-2 degrees) and lattice centring.
MARGIN = 1.04
#: Scene extent factor for scenes with a nodata / alpha border (the border stays outside the tile lattice).
BORDER_MARGIN = 1.10
SIZES = ("full", "small")
LAYOUTS = ("xbd", "inria", "spacenet", "local")
CONTINENTS = ("Africa", "Asia", "Europe", "North America", "Oceania", "South America")
#: Coarsest GSD (m) the pipeline accepts (0.5 m + 2 %); coarser scenes are expected to be rejected.
MAX_GSD = 0.51

_WGS84_A = 6378137.0
_WGS84_F = 1 / 298.257223563
_WGS84_E2 = _WGS84_F * (2 - _WGS84_F)


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
    def target_gsd(self) -> Optional[float]:
        """The pipeline's target GSD for this scene (ARCHITECTURE.md GSD rule), ``None`` when it is rejected."""
        return target_gsd(self.gsd)

    def spec(self, size: str) -> tuple[int, int, int]:
        return self.full if size == "full" else self.small

    def expected_tiles(self, size: str) -> int:
        """Tiles the pipeline should cut from all of this row's files (0 for a rejected scene)."""
        files, cols, rows = self.spec(size)
        return 0 if self.target_gsd is None else files * cols * rows


def target_gsd(gsd: float) -> Optional[float]:
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

# --------------------------------------------------------------------------------------------------------------
# Appearance tables (natural colours, not the label palette)

_PALETTES: dict[str, dict[int, tuple[int, int, int]]] = {
    "temperate": {1: (150, 132, 108), 2: (98, 122, 72), 3: (152, 150, 145), 4: (84, 86, 90), 5: (46, 70, 44),
                  6: (42, 62, 78), 7: (96, 128, 62), 8: (130, 130, 132)},
    "arid": {1: (196, 170, 134), 2: (152, 142, 106), 3: (172, 164, 150), 4: (96, 94, 92), 5: (72, 88, 56),
             6: (58, 84, 92), 7: (110, 132, 70), 8: (180, 172, 160)},
    "tropical": {1: (172, 122, 88), 2: (92, 132, 62), 3: (148, 143, 137), 4: (82, 82, 85), 5: (36, 76, 42),
                 6: (72, 88, 72), 7: (104, 142, 66), 8: (140, 110, 90)},
}
_ROOFS = {
    "temperate": [(162, 82, 62), (126, 126, 132), (208, 208, 204), (72, 74, 80), (118, 92, 74), (110, 126, 142)],
    "arid": [(214, 206, 190), (186, 170, 148), (160, 84, 64), (132, 132, 136), (226, 222, 214)],
    "tropical": [(146, 102, 70), (170, 86, 62), (128, 132, 138), (196, 196, 192), (96, 110, 128)],
}
_CROPS = [(86, 126, 56), (178, 164, 100), (126, 102, 76), (132, 152, 80), (150, 140, 88)]
_PAVING = [(160, 158, 152), (96, 96, 98), (172, 152, 132), (140, 140, 138)]
#: Per-class texture: (grain amplitude, medium-scale amplitude) as fractions of the base colour.
_TEXTURE = {0: (0, 0), 1: (0.07, 0.10), 2: (0.06, 0.12), 3: (0.04, 0.05), 4: (0.03, 0.03), 5: (0.08, 0.30),
            6: (0.015, 0.04), 7: (0.05, 0.06), 8: (0.03, 0.02)}

#: Block land-use probabilities per style.
_LANDUSE = {
    "dense": {"urban": 0.55, "parking": 0.1, "park": 0.1, "residential": 0.17, "bare": 0.05, "forest": 0.03},
    "suburban": {"residential": 0.55, "urban": 0.1, "park": 0.1, "parking": 0.05, "bare": 0.07, "forest": 0.06,
                 "fields": 0.07},
    "periurban": {"residential": 0.32, "fields": 0.28, "bare": 0.1, "park": 0.1, "forest": 0.08, "urban": 0.07,
                  "parking": 0.05},
    "rural": {"fields": 0.55, "forest": 0.1, "farmstead": 0.22, "bare": 0.05, "park": 0.08},
}
_BLOCK = {"dense": (60, 100), "suburban": (85, 140), "periurban": (110, 190), "rural": (150, 260)}
_TREE_DENSITY = {"urban": 0.05, "parking": 0.03, "park": 0.35, "residential": 0.2, "bare": 0.03, "forest": 0.9,
                 "fields": 0.0, "farmstead": 0.25}


# --------------------------------------------------------------------------------------------------------------
# Geodesy helpers

def _radii(lat: float) -> tuple[float, float]:
    """WGS84 meridional (M) and prime-vertical (N) radii of curvature at ``lat`` degrees."""
    s = math.sin(math.radians(lat))
    w = 1 - _WGS84_E2 * s * s
    return _WGS84_A * (1 - _WGS84_E2) / w ** 1.5, _WGS84_A / math.sqrt(w)


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Ground metres per degree of (longitude, latitude) at ``lat`` on the WGS84 ellipsoid."""
    m, n = _radii(lat)
    return n * math.cos(math.radians(lat)) * math.pi / 180, m * math.pi / 180


def _pixel_size(crs: str, gsd: float, lat: float) -> tuple[float, float]:
    """CRS units per pixel (x, y) that realise a ground GSD of ``gsd`` metres at ``lat``."""
    if crs == "EPSG:4326":
        mx, my = metres_per_degree(lat)
        return gsd / mx, gsd / my
    if crs == "EPSG:3857":
        _, n = _radii(lat)
        p = gsd * _WGS84_A / (n * math.cos(math.radians(lat)))
        return p, p
    return gsd, gsd


def _scene_dims(sc: DemoScene, size: str) -> tuple[int, int]:
    """Pixel width and height of each of the row's files."""
    if sc.layout == "xbd":
        return 1024, 1024
    _, cols, rows = sc.spec(size)
    tg = sc.target_gsd or sc.gsd
    f = BORDER_MARGIN if sc.nodata != "none" else MARGIN
    return (int(math.ceil(cols * TILE * tg * f / sc.gsd - 1e-9)),
            int(math.ceil(rows * TILE * tg * f / sc.gsd - 1e-9)))


def _file_centres(sc: DemoScene, size: str, w: int, h: int) -> list[tuple[float, float]]:
    """(lon, lat) centres of the row's files: a compact grid around the city centre, 15 % gaps."""
    n = sc.spec(size)[0]
    ncol = int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    sx, sy = w * sc.gsd * 1.15, h * sc.gsd * 1.15
    mx, my = metres_per_degree(sc.lat)
    out = []
    for i in range(n):
        c, r = i % ncol, i // ncol
        east = (c - (ncol - 1) / 2) * sx
        north = -(r - (nrow - 1) / 2) * sy
        out.append((sc.lon + east / mx, sc.lat + north / my))
    return out


def _transform(crs: str, lon: float, lat: float, gsd: float, w: int, h: int) -> tuple[float, ...]:
    """Affine (a, b, c, d, e, f) of a north-up grid of ``w x h`` pixels centred on (lon, lat)."""
    px, py = _pixel_size(crs, gsd, lat)
    if crs == "EPSG:4326":
        x, y = lon, lat
        x0, y0 = round(x - w / 2 * px, 9), round(y + h / 2 * py, 9)
    else:
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        x0, y0 = round(x - w / 2 * px, 2), round(y + h / 2 * py, 2)
    return (px, 0.0, x0, 0.0, -py, y0)


# --------------------------------------------------------------------------------------------------------------
# World generation (vectors in metres, frame x east, y south, origin at the top-left corner)

@dataclass
class _World:
    wm: float
    hm: float
    landuse: list            # (class, Nx2 metres, colour)
    parcels: list            # (Nx2 metres, colour, angle, spacing)
    hedges: list             # Nx2 metres
    water: list              # Nx2 metres (exteriors)
    roads: list              # (polygon Nx2 metres, centreline Mx2, main)
    buildings: np.ndarray    # (K, 4, 2) metres
    roofs: list              # (colour, gable, height)
    tree_density: list       # (Nx2 metres, density)
    valid: Optional[np.ndarray]  # Nx2 metres of the valid-area polygon, None = whole frame
    shadow_dir: tuple[float, float]


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 72) -> np.ndarray:
    """A smooth irregular closed blob (lake) of mean radius ``r``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in (2, 3, 5):
        rad += rng.uniform(0.05, 0.18) / (k / 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return np.stack([cx + r * rad * np.cos(t), cy + r * rad * np.sin(t)], 1)


def _make_world(rng: np.random.Generator, sc: DemoScene, w: int, h: int, gsd: float, lat: float) -> _World:
    wm, hm = w * gsd, h * gsd
    style = sc.style
    cx, cy = wm / 2, hm / 2
    rad = math.hypot(wm, hm) / 2 + 60
    theta = rng.uniform(-0.5, 0.5)
    e1 = np.array([math.cos(theta), math.sin(theta)])
    e2 = np.array([-math.sin(theta), math.cos(theta)])
    centre = np.array([cx, cy])
    lo, hi = _BLOCK[style]

    def lines(spacing_lo, spacing_hi):
        pos, widths = [], []
        p = -rad + rng.uniform(0, spacing_hi)
        k = int(rng.integers(0, 4))
        while p < rad:
            main = k % 4 == 0
            pos.append(p)
            widths.append(rng.uniform(10, 12) if main else rng.uniform(6, 8.5))
            p += rng.uniform(spacing_lo, spacing_hi)
            k += 1
        return pos, widths

    upos, uw = lines(lo, hi)
    vpos, vw = lines(lo * 1.2, hi * 1.4)
    roads: list = []

    def add_road(pts: np.ndarray, width: float, main: bool) -> None:
        poly = LineString(pts).buffer(width / 2, cap_style="flat", join_style="round", quad_segs=4)
        if poly.geom_type != "Polygon" or not poly.intersects(frame):
            return
        roads.append((np.asarray(poly.exterior.coords), pts, main, poly))

    frame = shapely.box(0, 0, wm, hm)
    keep_u = [rng.random() > (0.25 if style == "rural" else 0.0) for _ in upos]
    keep_v = [rng.random() > (0.35 if style == "rural" else 0.0) for _ in vpos]
    for p, wd, keep in zip(upos, uw, keep_u):
        if keep:
            a, b = centre + p * e1 - rad * e2, centre + p * e1 + rad * e2
            add_road(np.array([a, b]), wd, wd >= 10)
    for p, wd, keep in zip(vpos, vw, keep_v):
        if keep:
            a, b = centre + p * e2 - rad * e1, centre + p * e2 + rad * e1
            add_road(np.array([a, b]), wd, wd >= 10)
    if rng.random() < 0.6:  # a diagonal avenue
        ang = theta + math.pi / 4 + rng.uniform(-0.2, 0.2)
        d = np.array([math.cos(ang), math.sin(ang)])
        o = centre + rng.uniform(-0.3, 0.3, 2) * np.array([wm, hm])
        add_road(np.array([o - 2 * rad * d, o + 2 * rad * d]), rng.uniform(9, 12), True)
    if rng.random() < 0.6:  # a curved road
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        o = centre + rng.uniform(-0.25, 0.25, 2) * np.array([wm, hm])
        t = np.linspace(-rad * 1.2, rad * 1.2, 160)
        amp, lam, ph = rng.uniform(25, 70), rng.uniform(250, 600), rng.uniform(0, 2 * np.pi)
        pts = o + t[:, None] * d + (amp * np.sin(2 * np.pi * t / lam + ph))[:, None] * nrm
        add_road(pts, rng.uniform(6, 9), False)

    # water: a lake and/or a river
    water: list = []
    if rng.random() < (0.55 if style in ("rural", "periurban") else 0.4):
        r = rng.uniform(0.05, 0.12) * min(wm, hm) + 10
        water.append(_blob(rng, rng.uniform(0.2, 0.8) * wm, rng.uniform(0.2, 0.8) * hm, r))
    if rng.random() < 0.35:
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        o = centre + rng.uniform(-0.35, 0.35) * min(wm, hm) * nrm
        t = np.linspace(-rad * 1.2, rad * 1.2, 200)
        amp, lam, ph = rng.uniform(15, 60), rng.uniform(300, 900), rng.uniform(0, 2 * np.pi)
        pts = o + t[:, None] * d + (amp * np.sin(2 * np.pi * t / lam + ph))[:, None] * nrm
        river = LineString(pts).buffer(rng.uniform(8, 22), cap_style="flat", quad_segs=4)
        if river.geom_type == "Polygon":
            water.append(np.asarray(river.exterior.coords))
    water_geom = shapely.union_all([Polygon(p).buffer(0) for p in water]) if water else None

    # blocks
    landuse: list = []
    parcels: list = []
    hedges: list = []
    tree_density: list = []
    cands: list = []  # (corners 4x2, colour, gable, height, driveway or None)
    roofs_pal = _ROOFS[sc.biome]
    edges_u = [(p - wd / 2, p + wd / 2) if k else None for p, wd, k in zip(upos, uw, keep_u)]
    edges_v = [(p - wd / 2, p + wd / 2) if k else None for p, wd, k in zip(vpos, vw, keep_v)]
    # kept streets plus virtual bounds beyond the frame, so land beyond the outermost streets forms blocks too
    ku = [(-rad - 2.0, -rad - 1.5)] + [e for e in edges_u if e is not None] + [(rad + 1.5, rad + 2.0)]
    kv = [(-rad - 2.0, -rad - 1.5)] + [e for e in edges_v if e is not None] + [(rad + 1.5, rad + 2.0)]
    for i in range(len(ku) - 1):
        for j in range(len(kv) - 1):
            u0, u1 = ku[i][1] + 1.5, ku[i + 1][0] - 1.5
            v0, v1 = kv[j][1] + 1.5, kv[j + 1][0] - 1.5
            if u1 - u0 < 20 or v1 - v0 < 20:
                continue
            corners = np.array([centre + u * e1 + v * e2 for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
            if corners[:, 0].max() < -20 or corners[:, 0].min() > wm + 20 or corners[:, 1].max() < -20 \
                    or corners[:, 1].min() > hm + 20:
                continue
            use = _choice(rng, _LANDUSE[style])
            tree_density.append((corners, _TREE_DENSITY[use]))
            lu, lv = u1 - u0, v1 - v0

            def at(u, v):
                return centre + u * e1 + v * e2

            if use in ("urban", "parking"):  # paved up to the kerb (sidewalks included)
                paved = np.array([at(u, v) for u, v in ((u0 - 1.6, v0 - 1.6), (u1 + 1.6, v0 - 1.6),
                                                         (u1 + 1.6, v1 + 1.6), (u0 - 1.6, v1 + 1.6))])
                landuse.append((3, paved, _PAVING[int(rng.integers(len(_PAVING)))]))
            elif use == "bare":
                inset = np.array([at(u, v) for u, v in ((u0 + 2, v0 + 2), (u1 - 2, v0 + 2), (u1 - 2, v1 - 2),
                                                         (u0 + 2, v1 - 2))])
                landuse.append((1, inset, None))
            elif use == "fields":
                # strips across the longer side, some split in two
                along_u = lu >= lv
                length = lu if along_u else lv
                t = 0.0
                while t < length - 8:
                    sw = min(rng.uniform(25, 70), length - t)
                    a0, a1 = t + 1.0, t + sw - 1.0
                    splits = [(0.0, 1.0)] if rng.random() < 0.6 else [(0.0, 0.5), (0.5, 1.0)]
                    for s0, s1 in splits:
                        if along_u:
                            box = ((u0 + a0, v0 + s0 * lv + 1), (u0 + a1, v0 + s1 * lv - 1))
                        else:
                            box = ((u0 + s0 * lu + 1, v0 + a0), (u0 + s1 * lu - 1, v0 + a1))
                        (ua, va), (ub, vb) = box
                        pc = np.array([at(ua, va), at(ub, va), at(ub, vb), at(ua, vb)])
                        r = rng.random()
                        if r < 0.82:
                            ang = theta + (0.0 if rng.random() < 0.5 else math.pi / 2)
                            parcels.append((pc, _CROPS[int(rng.integers(len(_CROPS)))], ang, rng.uniform(1.6, 4.0)))
                        elif r < 0.9:
                            landuse.append((1, pc, None))
                        if rng.random() < 0.25:  # hedgerow along the parcel's first side
                            hw = rng.uniform(3, 6)
                            hedges.append(np.array([pc[0], pc[1], pc[1] + (pc[2] - pc[1]) / np.linalg.norm(
                                pc[2] - pc[1]) * hw, pc[0] + (pc[3] - pc[0]) / np.linalg.norm(pc[3] - pc[0]) * hw]))
                    t += sw
            if use == "park" and rng.random() < 0.3 and min(lu, lv) > 50:
                water.append(_blob(rng, *at((u0 + u1) / 2, (v0 + v1) / 2), min(lu, lv) * 0.2, 48))
            # buildings
            if use in ("urban", "residential", "parking", "farmstead", "bare"):
                if use == "urban":
                    wr, dr, sb, gap, hr, n_edges = (12, 40), (12, 24), (0.5, 3), (0.5, 4), (8, 40), 4
                elif use == "residential":
                    wr, dr, sb, gap, hr, n_edges = (8, 16), (8, 14), (3.5, 8), (3, 9), (3, 8), 4
                elif use == "parking":
                    wr, dr, sb, gap, hr, n_edges = (25, 40), (18, 35), (6, 14), (15, 40), (6, 12), 1
                elif use == "farmstead":
                    wr, dr, sb, gap, hr, n_edges = (8, 30), (8, 18), (6, 20), (6, 30), (4, 9), 2
                else:
                    wr, dr, sb, gap, hr, n_edges = (8, 20), (8, 14), (5, 15), (15, 60), (3, 6), 1
                placed: list = []  # (umin, vmin, umax, vmax) in block coordinates
                sides = [(0, 1), (1, 1), (2, 1), (3, 1)][: n_edges] if n_edges < 4 else [(0, 1), (1, 1), (2, 1),
                                                                                          (3, 1)]
                for side, _ in sides:
                    L = lu if side in (0, 2) else lv
                    t = rng.uniform(*gap)
                    while True:
                        bw, bd, s = rng.uniform(*wr), rng.uniform(*dr), rng.uniform(*sb)
                        if t + bw > L - 1.0:
                            break
                        # block-local box for this side
                        if side == 0:   # along u at v0, inward +v
                            box = (u0 + t, v0 + s, u0 + t + bw, v0 + s + bd)
                        elif side == 2:  # along u at v1
                            box = (u0 + t, v1 - s - bd, u0 + t + bw, v1 - s)
                        elif side == 1:  # along v at u1, inward -u
                            box = (u1 - s - bd, v0 + t, u1 - s, v0 + t + bw)
                        else:            # along v at u0
                            box = (u0 + s, v0 + t, u0 + s + bd, v0 + t + bw)
                        t += bw + rng.uniform(*gap)
                        if box[0] < u0 + 0.3 or box[2] > u1 - 0.3 or box[1] < v0 + 0.3 or box[3] > v1 - 0.3:
                            continue
                        if any(box[0] < p[2] + 1.0 and p[0] < box[2] + 1.0 and box[1] < p[3] + 1.0
                               and p[1] < box[3] + 1.0 for p in placed):
                            continue
                        placed.append(box)
                        ua, va, ub, vb = box
                        rc = np.array([at(ua, va), at(ub, va), at(ub, vb), at(ua, vb)])
                        drive = None
                        if use == "residential" and s > 3:
                            mid = (ua + ub) / 2
                            if side == 0:
                                db = (mid - 1.6, v0 - 1.5, mid + 1.6, va)
                            elif side == 2:
                                db = (mid - 1.6, vb, mid + 1.6, v1 + 1.5)
                            elif side == 1:
                                mv = (va + vb) / 2
                                db = (ub, mv - 1.6, u1 + 1.5, mv + 1.6)
                            else:
                                mv = (va + vb) / 2
                                db = (u0 - 1.5, mv - 1.6, ua, mv + 1.6)
                            drive = np.array([at(db[0], db[1]), at(db[2], db[1]), at(db[2], db[3]), at(db[0], db[3])])
                        cands.append((rc, roofs_pal[int(rng.integers(len(roofs_pal)))],
                                      use in ("residential", "farmstead") and rng.random() < 0.75,
                                      rng.uniform(*hr), drive))
                if use == "urban" and lu > 70 and lv > 70 and rng.random() < 0.6:
                    bw, bd = rng.uniform(15, min(40, lu - 50)), rng.uniform(12, min(30, lv - 50))
                    uc, vc = (u0 + u1) / 2, (v0 + v1) / 2
                    box = (uc - bw / 2, vc - bd / 2, uc + bw / 2, vc + bd / 2)
                    if not any(box[0] < p[2] + 1.0 and p[0] < box[2] + 1.0 and box[1] < p[3] + 1.0
                               and p[1] < box[3] + 1.0 for p in placed):
                        ua, va, ub, vb = box
                        cands.append((np.array([at(ua, va), at(ub, va), at(ub, vb), at(ua, vb)]),
                                      roofs_pal[int(rng.integers(len(roofs_pal)))], False, rng.uniform(*hr), None))

    # valid area (nodata border)
    valid = None
    if sc.nodata != "none":
        ext = min(wm, hm)
        bmin, bmax = max(0.008 * ext, 8 * gsd), max(0.025 * ext, 12 * gsd)
        pts = []
        for (x0, y0), (x1, y1), (nx, ny) in (((0, 0), (wm, 0), (0, 1)), ((wm, 0), (wm, hm), (-1, 0)),
                                               ((wm, hm), (0, hm), (0, -1)), ((0, hm), (0, 0), (1, 0))):
            k = np.linspace(0, 1, 40, endpoint=False)
            ph, fr = rng.uniform(0, 2 * np.pi), rng.uniform(1, 4)
            b = bmin + (bmax - bmin) * (0.5 + 0.5 * np.sin(2 * np.pi * fr * k + ph))
            xs = x0 + (x1 - x0) * k + nx * b
            ys = y0 + (y1 - y0) * k + ny * b
            pts.append(np.stack([xs, ys], 1))
        valid = np.concatenate(pts)
        # keep corners inside: clamp to the inset box
        valid[:, 0] = np.clip(valid[:, 0], bmin, wm - bmin)
        valid[:, 1] = np.clip(valid[:, 1], bmin, hm - bmin)

    # filter building candidates
    buildings = np.zeros((0, 4, 2))
    roofs: list = []
    drives: list = []
    if cands:
        rects = np.stack([c[0] for c in cands])
        inside = ((rects[..., 0].min(1) > gsd * 1.5) & (rects[..., 0].max(1) < wm - gsd * 1.5)
                  & (rects[..., 1].min(1) > gsd * 1.5) & (rects[..., 1].max(1) < hm - gsd * 1.5))
        polys = shapely.polygons(rects)
        obstacles = [r[3].buffer(1.0) for r in roads]
        if water:
            water_geom = shapely.union_all([Polygon(p).buffer(0) for p in water])
            obstacles.append(water_geom.buffer(2.0))
        if obstacles:
            obst = shapely.union_all(obstacles)
            shapely.prepare(obst)
            inside &= ~shapely.intersects(obst, polys)
        if valid is not None:
            vg = Polygon(valid).buffer(-2 * gsd)
            shapely.prepare(vg)
            inside &= shapely.contains(vg, polys)
        for k in np.flatnonzero(inside):
            roofs.append(cands[k][1:4])
            if cands[k][4] is not None:
                drives.append(cands[k][4])
        buildings = rects[inside]
    for d in drives:
        landuse.append((3, d, (150, 148, 142)))
    sun = rng.uniform(-0.6, 0.6) + (-math.pi / 2 if lat >= 0 else math.pi / 2)  # shadows point poleward
    return _World(wm, hm, landuse, parcels, hedges, water, roads, buildings, roofs, tree_density, valid,
                  (math.cos(sun), math.sin(sun)))


# --------------------------------------------------------------------------------------------------------------
# Rendering

_SHIFT = 4


def _pts(m: np.ndarray, gsd: float) -> np.ndarray:
    """Metres -> cv2 fixed-point pixel coordinates (pixel centres at integers, ``_SHIFT`` fractional bits)."""
    return np.round((np.asarray(m, float) / gsd - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _fill(img: np.ndarray, polys: list, value, gsd: float) -> None:
    if polys:
        cv2.fillPoly(img, [_pts(p, gsd) for p in polys], value, lineType=cv2.LINE_8, shift=_SHIFT)


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell_px: float) -> np.ndarray:
    """Unit-variance-ish smooth noise of feature size ``cell_px`` pixels, float32 (h, w)."""
    cw, ch = max(2, int(math.ceil(w / cell_px)) + 1), max(2, int(math.ceil(h / cell_px)) + 1)
    small = rng.standard_normal((ch, cw), dtype=np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out


def _render(rng: np.random.Generator, world: _World, sc: DemoScene, w: int, h: int, gsd: float,
            satellite: bool) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Rasterise ``world``: returns (label uint8 (h,w), image float32 (h,w,3) in 0..255, valid mask or None)."""
    pal = _PALETTES[sc.biome]
    label = np.full((h, w), 2, np.uint8)
    tones: dict[tuple[int, int, int], int] = {}

    def tone(c) -> int:
        """Index of colour ``c`` in the scene's colour table (painting uses 1-byte indices, not RGB)."""
        key = tuple(int(v) for v in c)
        if key not in tones:
            tones[key] = len(tones)
        return tones[key]

    col = np.full((h, w), tone(pal[2]), np.uint8)  # colour-table index per pixel
    # land-use polygons
    for cls, poly, colour in world.landuse:
        c = colour if colour is not None else pal[cls]
        _fill(label, [poly], int(cls), gsd)
        _fill(col, [poly], tone(c), gsd)
    stripes = np.zeros((h, w), np.uint8)
    for poly, colour, ang, spacing in world.parcels:
        _fill(label, [poly], 7, gsd)
        _fill(col, [poly], tone(colour), gsd)
        # row stripes, drawn in the parcel's pixel bounding box only
        px = poly / gsd
        x0, y0 = max(0, int(px[:, 0].min()) - 1), max(0, int(px[:, 1].min()) - 1)
        x1, y1 = min(w, int(px[:, 0].max()) + 2), min(h, int(px[:, 1].max()) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        off = np.array([x0, y0]) * gsd
        c = poly.mean(0) - off
        r = np.linalg.norm(poly - poly.mean(0), axis=1).max()
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        thick = max(1, int(round(spacing * 0.35 / gsd)))
        segs = [_pts(np.array([c + t * nrm - r * d, c + t * nrm + r * d]), gsd) for t in np.arange(-r, r, spacing)]
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill(mask, [poly - off], 1, gsd)
        layer = np.zeros_like(mask)
        cv2.polylines(layer, segs, False, 1, thickness=thick, lineType=cv2.LINE_8, shift=_SHIFT)
        stripes[y0:y1, x0:x1] |= layer & mask
    # bareland patches and trees from thresholded smooth noise
    density = np.zeros((max(2, h // 16), max(2, w // 16)), np.float32)
    scale = density.shape[1] / w
    base_tree = {"temperate": 0.06, "arid": 0.03, "tropical": 0.1}[sc.biome]
    density[:] = base_tree
    for poly, dens in world.tree_density:
        cv2.fillPoly(density, [np.round((poly / gsd) * scale * 16).astype(np.int32)], float(dens),
                     lineType=cv2.LINE_8, shift=4)
    density = cv2.GaussianBlur(density, (0, 0), 1.5)
    thr_small = _upper_quantile(density)
    thr = cv2.resize(thr_small, (w, h), interpolation=cv2.INTER_LINEAR)
    tn = _smooth_noise(rng, w, h, 6.0 / gsd) * 0.8 + _smooth_noise(rng, w, h, 2.5 / gsd) * 0.6
    tn *= np.float32(1.0 / max(float(tn.std()), 1e-6))  # unit variance so thresholds give the wanted fractions
    trees = (tn > thr) & (label == 2)
    bare_frac = {"temperate": 0.03, "arid": 0.2, "tropical": 0.08}[sc.biome]
    bn = _smooth_noise(rng, w, h, 14.0 / gsd)
    bn *= np.float32(1.0 / max(float(bn.std()), 1e-6))
    bthr = float(_upper_quantile(np.array([bare_frac]))[0])
    bare = (bn > bthr) & (label == 2) & ~trees
    label[bare] = 1
    col[bare] = tone(pal[1])
    label[trees] = 5
    col[trees] = tone(pal[5])
    del bn, tn, thr, bare
    _fill(label, world.hedges, 5, gsd)
    _fill(col, world.hedges, tone(pal[5]), gsd)
    _fill(label, world.water, 6, gsd)
    _fill(col, world.water, tone(pal[6]), gsd)
    for poly, _, _, _ in world.roads:
        _fill(label, [poly], 4, gsd)
        _fill(col, [poly], tone(pal[4]), gsd)
    # lane markings on main roads: dashed centre lines
    mark = (222, 222, 214)
    thick = max(1, int(round(0.15 / gsd)))
    for _, line, main, _ in world.roads:
        if not main:
            continue
        ls = LineString(line)
        step = 9.0
        n = int(ls.length // step)
        segs = []
        for k in range(n):
            a, b = ls.interpolate(k * step), ls.interpolate(k * step + 3.0)
            p = np.array([[a.x, a.y], [b.x, b.y]])
            if (p[:, 0].max() < 0 or p[:, 0].min() > world.wm or p[:, 1].max() < 0 or p[:, 1].min() > world.hm):
                continue
            segs.append(_pts(p, gsd))
        if segs:
            cv2.polylines(col, segs, False, tone(mark), thickness=thick, lineType=cv2.LINE_8, shift=_SHIFT)
    # buildings: roofs (gable halves shaded), class 8 exactly the rectangles
    shadow = np.zeros((h, w), np.uint8)
    sdx, sdy = world.shadow_dir
    hulls = []
    for rect, (colour, gable, height) in zip(world.buildings, world.roofs):
        off = np.array([sdx, sdy]) * height * 0.45
        hulls.append(cv2.convexHull(_pts(np.concatenate([rect, rect + off]), gsd)))
    if hulls:
        cv2.fillPoly(shadow, hulls, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    _fill(label, list(world.buildings), 8, gsd)
    for rect, (colour, gable, height) in zip(world.buildings, world.roofs):
        _fill(col, [rect], tone(colour), gsd)
        long01 = np.linalg.norm(rect[1] - rect[0]) >= np.linalg.norm(rect[3] - rect[0])
        if gable:
            half = (np.array([rect[0], rect[1], (rect[1] + rect[2]) / 2, (rect[0] + rect[3]) / 2]) if long01 else
                    np.array([rect[0], (rect[0] + rect[1]) / 2, (rect[3] + rect[2]) / 2, rect[3]]))
            _fill(col, [half], tone([v * 0.8 for v in colour]), gsd)
        elif rng.random() < 0.6:  # rooftop structure
            c = rect.mean(0)
            small = c + (rect - c) * rng.uniform(0.15, 0.35)
            _fill(col, [small], tone([min(255, v * 1.15) for v in colour]), gsd)
    # tree shadows: shifted tree mask
    tsh = max(1, int(round(3.0 / gsd)))
    dx, dy = int(round(sdx * tsh)), int(round(sdy * tsh))
    tshadow = np.zeros_like(trees)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    trees = label == 5  # final tree pixels (hedges included, those covered by water/roads/buildings excluded)
    tshadow[yd, xd] = trees[ys, xs]
    shade = ((shadow > 0) | tshadow) & (label != 8) & ~trees
    del tshadow, shadow
    # texture and illumination: fac = (1 + grain + medium) * illumination * shadow * stripes
    ga = np.array([_TEXTURE.get(k, (0, 0))[0] for k in range(256)], np.float32)
    ma = np.array([_TEXTURE.get(k, (0, 0))[1] for k in range(256)], np.float32)
    fac = cv2.multiply(cv2.LUT(label, ga), rng.standard_normal((h, w), dtype=np.float32))
    fac = cv2.add(fac, cv2.multiply(cv2.LUT(label, ma), _smooth_noise(rng, w, h, 1.2 / gsd)))
    fac += np.float32(1.0)
    illum = _smooth_noise(rng, w, h, 90.0 / gsd)
    illum *= np.float32(0.07)
    illum += np.float32(1.0)
    fac = cv2.multiply(fac, illum)
    del illum
    dim = np.ones(256, np.float32)
    lut_in = shade.view(np.uint8) | (((stripes > 0) & (label == 7)).view(np.uint8) << 1)
    dim[1], dim[2], dim[3] = 0.55, 0.82, 0.55 * 0.82
    fac = cv2.multiply(fac, cv2.LUT(lut_in, dim))
    del lut_in, shade
    np.maximum(fac, np.float32(0.15), out=fac)
    table = np.zeros((256, 1, 3), np.float32)
    for c, k in tones.items():
        table[k, 0] = c
    img = cv2.LUT(cv2.merge([col, col, col]), table)
    del col
    img *= fac[..., None]
    del fac
    if satellite:
        img = cv2.addWeighted(img, 0.88, img, 0.0, 18.0)
    sigma = 1.0 if satellite else 0.6
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    valid = None
    if world.valid is not None:
        vm = np.zeros((h, w), np.uint8)
        _fill(vm, [world.valid], 1, gsd)
        valid = vm.astype(bool)
        label *= vm
        img = cv2.multiply(img, cv2.merge([vm, vm, vm]).astype(np.float32))
    return label, img, valid


_P = np.linspace(0.001, 0.999, 999)
_Q = np.array([NormalDist().inv_cdf(1 - p) for p in _P])


def _upper_quantile(frac: np.ndarray) -> np.ndarray:
    """Threshold t with P(N(0,1) > t) = frac (clipped to 0.001..0.999), float32."""
    return np.interp(np.asarray(frac, np.float64), _P, _Q).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Writers

def _fmt(v: float, nd: int) -> float:
    r = round(float(v), nd)
    return 0.0 if r == 0 else r


def _apply(tf: tuple[float, ...], pts_px: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = tf
    return np.stack([a * pts_px[:, 0] + b * pts_px[:, 1] + c, d * pts_px[:, 0] + e * pts_px[:, 1] + f], 1)


def _write_tif(path: Path, data: np.ndarray, crs: str, tf: tuple[float, ...], nodata=None,
               alpha: bool = False) -> None:
    """Tiled DEFLATE GeoTIFF; ``data`` (bands, h, w)."""
    count, h, w = data.shape
    block = 512 if min(w, h) >= 2048 else 256
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name, crs=crs,
                   transform=rasterio.Affine(*tf), tiled=True, blockxsize=block, blockysize=block,
                   compress="deflate", zlevel=1, interleave="pixel", predictor=2 if count >= 3 else 1)
    if nodata is not None:
        profile["nodata"] = nodata
    if count >= 3:
        profile["photometric"] = "RGB"
    if alpha:
        profile["alpha"] = "YES"
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if alpha:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]


def _write_png(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def _crs_member(crs: str) -> dict:
    code = crs.split(":")[1]
    name = "urn:ogc:def:crs:OGC:1.3:CRS84" if code == "4326" else f"urn:ogc:def:crs:EPSG::{code}"
    return {"type": "name", "properties": {"name": name}}


def _geojson(rings: list[np.ndarray], crs: str, nd: int, props: list[dict]) -> str:
    feats = []
    for ring, p in zip(rings, props):
        coords = [[_fmt(x, nd), _fmt(y, nd)] for x, y in ring]
        coords.append(coords[0])
        feats.append({"type": "Feature", "properties": p, "geometry": {"type": "Polygon", "coordinates": [coords]}})
    return _json({"type": "FeatureCollection", "crs": _crs_member(crs), "features": feats})


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _wkt(ring: np.ndarray, nd: int) -> str:
    pts = [f"{_fmt(x, nd)!r} {_fmt(y, nd)!r}" for x, y in ring] + [f"{_fmt(ring[0][0], nd)!r} {_fmt(ring[0][1], nd)!r}"]
    return "POLYGON ((" + ", ".join(pts) + "))"


# --------------------------------------------------------------------------------------------------------------
# One file

def _rec(written: list[Path], path: Path) -> Path:
    written.append(path)
    return path


def _scene_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())]))


def _generate_file(root: Path, sc: DemoScene, size: str, seed: int, index: int, lon: float, lat: float,
                   w: int, h: int, written: list[Path]) -> dict:
    key = f"{sc.layout}/{sc.region}/{index}"
    rng = _scene_rng(seed, key)
    tf = _transform(sc.crs, lon, lat, sc.gsd, w, h)
    world = None
    for _ in range(20):  # xBD needs >= 5 buildings for its affine fit; other layouts want some too
        world = _make_world(rng, sc, w, h, sc.gsd, lat)
        if len(world.buildings) >= 5:
            break
    satellite = sc.layout in ("xbd", "spacenet")
    label, img, valid = _render(rng, world, sc, w, h, sc.gsd, satellite)
    rects_px = [r / sc.gsd for r in world.buildings]  # continuous pixel coordinates (col, row)
    rel: str
    if sc.layout == "xbd":
        stem = f"{sc.name}_{sc.number + 3 * index:08d}_pre_disaster"
        base = root / "xbd" / "train"
        rgb = cv2.convertScaleAbs(img)
        _write_png(_rec(written, base / "images" / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        _write_png(_rec(written, base / "landcover" / f"{stem}.png"), label)
        lng, xy = [], []
        for r in rects_px:
            uid = _uid(rng)
            props = {"feature_type": "building", "uid": uid}
            xy.append({"wkt": _wkt(r, 6), "properties": dict(props)})
            lng.append({"wkt": _wkt(_apply(tf, r), 10), "properties": dict(props)})
        meta = {"sensor": "DEMO", "provider_asset_type": "DEMO", "gsd": sc.gsd,
                "capture_date": sc.capture_date[:14] + f"{int(rng.integers(0, 60)):02d}" + sc.capture_date[16:],
                "off_nadir_angle": round(float(rng.uniform(5, 25)), 6),
                "pan_resolution": round(sc.gsd / 1.0, 6),
                "sun_azimuth": round(float(rng.uniform(100, 250)), 6),
                "sun_elevation": round(float(rng.uniform(35, 75)), 6),
                "target_azimuth": round(float(rng.uniform(0, 360)), 6),
                "disaster": sc.name, "disaster_type": sc.disaster_type,
                "width": 1024, "height": 1024, "original_width": 1024, "original_height": 1024,
                "img_name": f"{stem}.png", "id": _uid(rng), "catalog_id": rng.bytes(8).hex().upper()}
        write_text(_rec(written, base / "labels" / f"{stem}.json"), _json({"features": {"lng_lat": lng, "xy": xy},
                                                             "metadata": meta}))
        rel = f"xbd/train/images/{stem}.png"
    elif sc.layout == "inria":
        stem = f"{sc.name}{sc.number + index}"
        base = root / "inria" / "train"
        rgb = cv2.convertScaleAbs(img).transpose(2, 0, 1)
        _write_tif(_rec(written, base / "images" / f"{stem}.tif"), rgb, sc.crs, tf)
        _write_tif(_rec(written, base / "gt" / f"{stem}.tif"), ((label == 8) * 255).astype(np.uint8)[None], sc.crs, tf)
        _write_tif(_rec(written, base / "landcover" / f"{stem}.tif"), label[None], sc.crs, tf)
        rel = f"inria/train/images/{stem}.tif"
    elif sc.layout == "spacenet":
        aoi = f"AOI_{sc.aoi}_{sc.name}"
        n = sc.number + index
        base = root / "spacenet" / f"{aoi}_Train"
        v = cv2.multiply(img, (6.6, 7.0, 7.6, 0.0))  # 8-bit radiance -> 11-bit DN
        v += np.float32(35.5)
        np.minimum(v, np.float32(2047), out=v)
        data = v.astype(np.uint16).transpose(2, 0, 1)
        _write_tif(_rec(written, base / "RGB-PanSharpen" / f"RGB-PanSharpen_{aoi}_img{n}.tif"), data, sc.crs, tf)
        _write_tif(_rec(written, base / "landcover" / f"landcover_{aoi}_img{n}.tif"), label[None], sc.crs, tf)
        rings = [_apply(tf, r) for r in rects_px]
        props = [{"building": "yes", "partialBuilding": 0, "partialDec": 0.0} for _ in rings]
        write_text(_rec(written, base / "geojson" / "buildings" / f"buildings_{aoi}_img{n}.geojson"),
                   _geojson(rings, sc.crs, 9, props))
        rel = f"spacenet/{aoi}_Train/RGB-PanSharpen/RGB-PanSharpen_{aoi}_img{n}.tif"
    else:
        stem = f"{sc.name}_{sc.number + index}"
        rgb = cv2.convertScaleAbs(img)
        nodata = None
        if valid is not None:
            np.maximum(rgb, 1, out=rgb, where=valid[..., None])  # 0 is reserved for nodata
            rgb[~valid] = 0
        bands = rgb.transpose(2, 0, 1)
        if sc.nodata == "alpha":
            bands = np.concatenate([bands, (valid * 255).astype(np.uint8)[None]])
        elif sc.nodata == "value":
            nodata = 0
        _write_tif(_rec(written, root / "local" / sc.region / f"{stem}.tif"), np.ascontiguousarray(bands), sc.crs, tf,
                   nodata=nodata, alpha=sc.nodata == "alpha")
        _write_tif(_rec(written, root / "local" / "labels" / sc.region / f"{stem}.tif"), label[None], sc.crs, tf,
                   nodata=None)
        rings = [_apply(tf, r) for r in rects_px]
        nd = 9 if sc.crs == "EPSG:4326" else 3
        props = [{"building": "yes", "id": k + 1} for k in range(len(rings))]
        write_text(_rec(written, root / "local" / "footprints" / sc.region / f"{stem}.geojson"),
                   _geojson(rings, sc.crs, nd, props))
        rel = f"local/{sc.region}/{stem}.tif"
    return {"layout": sc.layout, "region": sc.region, "continent": sc.continent, "country": sc.country,
            "crs": sc.crs, "gsd": sc.gsd, "path": rel, "width": w, "height": h,
            "center_lonlat": [round(lon, 6), round(lat, 6)], "buildings": int(len(world.buildings)),
            "nodata": sc.nodata, "target_gsd": sc.target_gsd,
            "expected_tiles": 0 if sc.target_gsd is None else sc.spec(size)[1] * sc.spec(size)[2]}


def generate_demo(root: Path, seed: int = 0, size: str = "full") -> dict:
    """Write every scene of :data:`DEMO_SCENES` under ``root`` and return ``{"scenes": [...]}``.

    ``size`` is ``"full"`` (about 110 pipeline tiles, >= 7 for most regions) or ``"small"`` (one tile's worth per
    region, for tests).  Each scene record has ``layout, region, continent, country, crs, gsd, path`` (the image,
    relative to ``root``, POSIX separators), ``width, height, center_lonlat, buildings, nodata, target_gsd,
    expected_tiles``; records are sorted by ``(layout, region, path)``.  ``root`` is created if missing; files of a
    previous demo run under ``root`` that this run does not write again are removed, so ``root`` always holds
    exactly one demo (a ``demo.json`` marker records seed and size).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(repr(s) for s in SIZES)}, got {size!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "demo.json"
    had_marker = marker.is_file()
    written: list[Path] = []
    scenes = []
    for sc in DEMO_SCENES:
        w, h = _scene_dims(sc, size)
        for i, (lon, lat) in enumerate(_file_centres(sc, size, w, h)):
            scenes.append(_generate_file(root, sc, size, seed, i, lon, lat, w, h, written))
    scenes.sort(key=lambda s: (s["layout"], s["region"], s["path"]))
    if had_marker:  # root holds an earlier demo: drop its files that this run did not write again
        keep = {p.resolve() for p in written}
        for lay in LAYOUTS:
            for p in sorted((root / lay).rglob("*")):
                if p.is_file() and p.resolve() not in keep:
                    p.unlink()
    write_text(marker, _json({"generator": "pipeline.demo", "seed": int(seed), "size": size,
                              "scenes": len(scenes)}))
    return {"scenes": scenes}
