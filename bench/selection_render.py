"""Fast renderer of synthetic OpenEarthMap-like tiles with true 8-class labels (for the selection pool).

A *region* (:class:`RegionStyle`) fixes what all of its tiles share: biome palette with per-region colour
jitter and colour cast, ground sampling distance (object scale), street-grid orientation, sun direction
and shadow length, how urban the region is on average, the acquisition quality (haze, blur, noise, the
share of "bad" acquisitions) and how confusable some class pairs are (agriculture painted close to
rangeland, bareland close to developed space).  A *tile* (:func:`render_tile`) draws its own urbanness
around the region's mean (city core vs outskirts), lays a rotated street grid whose block size shrinks
with urbanness, fills every block with a land use (dense urban, residential, parking, park, fields,
rangeland, forest, bare, water), then roads, buildings with cast shadows, trees, and applies texture,
illumination, haze, blur, sensor noise and a rare nodata strip (label 0).

Difficulty therefore varies between regions (palette, scale, acquisition) and within them (urbanness,
segment count, thin roads, shadows, bad acquisitions, confusable classes).  All geometry is in metres and
scaled to the requested pixel size, so a 256 px tile is the same scene as the 1024 px one.  Everything is
drawn with OpenCV on uint8/float32 arrays: about 10-20 ms per 1024 px tile on one core.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

#: Class ids (OpenEarthMap): 0 unlabelled, 1 bareland, 2 rangeland, 3 developed, 4 road, 5 tree,
#: 6 water, 7 agriculture, 8 building.
BARE, RANGE, DEVELOPED, ROAD, TREE, WATER, AGRI, BUILDING = range(1, 9)
REFERENCE_PX = 1024

_BIOMES: dict[str, dict[int, tuple[int, int, int]]] = {
    "temperate": {1: (150, 132, 108), 2: (104, 128, 76), 3: (150, 148, 142), 4: (86, 88, 92), 5: (48, 74, 46),
                  6: (42, 62, 80), 7: (118, 140, 70), 8: (140, 128, 124)},
    "arid": {1: (200, 174, 138), 2: (160, 150, 110), 3: (176, 168, 154), 4: (98, 96, 94), 5: (76, 92, 58),
             6: (58, 86, 96), 7: (126, 140, 78), 8: (186, 176, 162)},
    "tropical": {1: (176, 124, 90), 2: (96, 136, 66), 3: (150, 144, 138), 4: (84, 84, 86), 5: (38, 80, 44),
                 6: (70, 92, 74), 7: (110, 150, 70), 8: (150, 112, 92)},
    "boreal": {1: (132, 124, 112), 2: (112, 124, 92), 3: (140, 140, 138), 4: (78, 80, 84), 5: (36, 58, 42),
               6: (30, 46, 62), 7: (132, 136, 86), 8: (120, 112, 110)},
}
_ROOFS = np.array([(162, 82, 62), (126, 126, 132), (208, 208, 204), (72, 74, 80), (118, 92, 74),
                   (110, 126, 142), (214, 206, 190), (186, 170, 148), (170, 86, 62)], np.float32)
_CROPS = np.array([(86, 126, 56), (178, 164, 100), (126, 102, 76), (132, 152, 80), (150, 140, 88),
                   (104, 118, 60)], np.float32)
#: Per-class texture: (fine grain, medium-scale) amplitude as a fraction of the colour.
_TEXTURE = {0: (0, 0), 1: (0.05, 0.10), 2: (0.05, 0.10), 3: (0.03, 0.05), 4: (0.02, 0.03), 5: (0.10, 0.28),
            6: (0.01, 0.04), 7: (0.04, 0.08), 8: (0.03, 0.03)}
_USES = ("dense", "residential", "parking", "park", "fields", "rangeland", "forest", "bare", "water")
_HOMOGENEOUS = ("fields", "forest", "water", "rangeland")


@dataclass(frozen=True)
class RegionStyle:
    """What every tile of one region shares (see the module docstring)."""

    name: str
    biome: str
    palette: np.ndarray          # (9, 3) float32 class colours (row 0 unused)
    cast: np.ndarray             # (3,) per-channel gain
    gsd: float                   # metres per pixel at 1024 px
    grid_angle: float
    sun: tuple[float, float]     # unit vector of the shadow direction
    shadow_len: float            # shadow length per metre of height
    urban_mean: float
    urban_sd: float
    haze: float
    p_bad: float
    noise: float                 # sensor noise std (DN)
    blur: float                  # Gaussian blur sigma (px at 1024)
    confuse_ra: float            # 0..1: agriculture colours pulled to rangeland
    confuse_bd: float            # 0..1: bareland pulled to developed
    p_homogeneous: float = 0.1   # share of tiles dominated by one land cover (easy)
    p_informal: float = 0.0      # share of urban blocks built as dense informal settlement (hard)
    p_cloud: float = 0.5         # share of bad acquisitions with cloud patches


def make_region(rng: np.random.Generator, name: str) -> RegionStyle:
    """Draw a region's style."""
    biome = str(rng.choice(list(_BIOMES)))
    pal = np.zeros((9, 3), np.float32)
    for c, rgb in _BIOMES[biome].items():
        pal[c] = np.clip(np.array(rgb) + rng.normal(0, 10, 3), 10, 245)
    confuse_ra = float(rng.uniform(0, 0.9) if rng.random() < 0.4 else rng.uniform(0, 0.3))
    confuse_bd = float(rng.uniform(0, 0.9) if rng.random() < 0.4 else rng.uniform(0, 0.3))
    pal[BARE] = (1 - confuse_bd) * pal[BARE] + confuse_bd * pal[DEVELOPED]
    sun = rng.uniform(0, 2 * math.pi)
    return RegionStyle(
        name=name, biome=biome, palette=pal, cast=rng.uniform(0.85, 1.15, 3).astype(np.float32),
        gsd=float(rng.uniform(0.3, 0.5)), grid_angle=float(rng.uniform(0, math.pi / 2)),
        sun=(math.cos(sun), math.sin(sun)), shadow_len=float(rng.uniform(0.3, 1.4)),
        urban_mean=float(rng.beta(1.1, 1.1)), urban_sd=float(rng.uniform(0.18, 0.38)),
        haze=float(rng.uniform(0, 0.15)), p_bad=float(rng.uniform(0.0, 0.3)), noise=float(rng.uniform(1, 5)),
        blur=float(rng.uniform(0.3, 1.2)), confuse_ra=confuse_ra, confuse_bd=confuse_bd,
        p_homogeneous=float(rng.uniform(0.04, 0.22)),
        p_informal=float(rng.uniform(0.2, 0.6)) if biome in ("tropical", "arid") and rng.random() < 0.5 else 0.0,
        p_cloud=float(rng.uniform(0.2, 0.8)),
    )


@lru_cache(maxsize=4)
def _noise_bank(px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed noise fields of side ``2 * px`` (grain, medium ~6 px, coarse ~px/6), unit variance, float32.
    Tiles crop them at random offsets: the fields are drawn once per process."""
    rng = np.random.default_rng(12345)
    n = 2 * px
    if px >= 512:  # grain of 2x2 pixels at 1024 px: half the entropy for DEFLATE, invisible at 256 px
        grain = cv2.resize(rng.standard_normal((n // 2, n // 2), dtype=np.float32), (n, n),
                           interpolation=cv2.INTER_NEAREST)
    else:
        grain = rng.standard_normal((n, n), dtype=np.float32)

    def smooth(cell: float) -> np.ndarray:
        k = max(2, int(math.ceil(n / cell)) + 1)
        f = cv2.resize(rng.standard_normal((k, k), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
        return f / max(float(f.std()), 1e-6)

    return grain, smooth(max(6.0 * px / REFERENCE_PX, 2.0)), smooth(px / 6.0)


def _crop(field: np.ndarray, rng: np.random.Generator, px: int) -> np.ndarray:
    y, x = rng.integers(0, field.shape[0] - px, 2)
    return field[y:y + px, x:x + px]


class _Canvas:
    """Label, colour and shadow rasters plus the metre -> fixed-point pixel mapping."""

    SHIFT = 3

    def __init__(self, px: int, m2p: float) -> None:
        self.px, self.m2p = px, m2p
        self.label = np.full((px, px), RANGE, np.uint8)
        self.colour: np.ndarray = np.zeros((px, px, 3), np.uint8)
        self.shadow = np.zeros((px, px), np.uint8)

    def pts(self, metres: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(metres) * self.m2p * (1 << self.SHIFT)).astype(np.int32)

    def poly(self, metres: np.ndarray, cls: int, rgb: np.ndarray) -> None:
        p = [self.pts(metres)]
        cv2.fillPoly(self.label, p, int(cls), lineType=cv2.LINE_8, shift=self.SHIFT)
        cv2.fillPoly(self.colour, p, tuple(float(v) for v in np.clip(rgb, 0, 255)), lineType=cv2.LINE_8,
                     shift=self.SHIFT)

    def line(self, a: np.ndarray, b: np.ndarray, width_m: float, cls: int, rgb: np.ndarray) -> None:
        t = max(1, int(round(width_m * self.m2p)))
        pa, pb = tuple(int(v) for v in self.pts(a)), tuple(int(v) for v in self.pts(b))
        cv2.line(self.label, pa, pb, int(cls), t, cv2.LINE_8, self.SHIFT)
        cv2.line(self.colour, pa, pb, tuple(float(v) for v in np.clip(rgb, 0, 255)), t, cv2.LINE_8, self.SHIFT)


def _jitter(rng: np.random.Generator, rgb: np.ndarray, s: float = 0.07) -> np.ndarray:
    return np.asarray(rgb, np.float32) * (1 + rng.normal(0, s)) * (1 + rng.normal(0, s / 2, 3))


def _land_use(rng: np.random.Generator, u: float) -> str:
    w = np.array([3 * u * u, 2.2 * u * (1 - u) + 0.1, 0.35 * u, 0.15, 2.2 * (1 - u) ** 2, 0.6 * (1 - u),
                  0.45 * (1 - u), 0.15, 0.06])
    return _USES[int(rng.choice(len(_USES), p=w / w.sum()))]


def _rect(o: np.ndarray, e1: np.ndarray, e2: np.ndarray, a0: float, b0: float, a1: float, b1: float) -> np.ndarray:
    return np.array([o + a0 * e1 + b0 * e2, o + a1 * e1 + b0 * e2, o + a1 * e1 + b1 * e2, o + a0 * e1 + b1 * e2])


def _buildings(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, o, e1, e2, la: float, lb: float,
               use: str, out: list) -> None:
    """Rows of rectangular buildings along the block's four sides (and a courtyard block when dense)."""
    spec = {"dense": ((12, 35), (10, 22), (0.5, 3), (0.5, 4), (10, 40)),
            "residential": ((8, 15), (7, 13), (3, 8), (3, 10), (3, 8)),
            "parking": ((25, 45), (18, 35), (6, 14), (15, 40), (5, 12)),
            "bare": ((8, 18), (8, 14), (5, 15), (20, 60), (3, 6))}[use]
    (w0, w1), (d0, d1), (s0, s1), (g0, g1), (h0, h1) = spec
    for side in range(4):
        length = la if side % 2 == 0 else lb
        t = rng.uniform(g0, g1) + d1
        while True:
            bw, bd, sb = rng.uniform(w0, w1), rng.uniform(d0, d1), rng.uniform(s0, s1)
            if t + bw > length - d1 or 2 * (sb + bd) > min(la, lb):
                break
            if side == 0:
                r = (t, sb, t + bw, sb + bd)
            elif side == 2:
                r = (t, lb - sb - bd, t + bw, lb - sb)
            elif side == 1:
                r = (la - sb - bd, t, la - sb, t + bw)
            else:
                r = (sb, t, sb + bd, t + bw)
            out.append((_rect(o, e1, e2, *r), _jitter(rng, _ROOFS[rng.integers(len(_ROOFS))], 0.05),
                        rng.uniform(h0, h1)))
            t += bw + rng.uniform(g0, g1)
    if use == "dense" and min(la, lb) > 60 and rng.random() < 0.7:
        m = rng.uniform(22, 28)
        out.append((_rect(o, e1, e2, m, m, la - m, lb - m), _jitter(rng, _ROOFS[rng.integers(len(_ROOFS))]),
                    rng.uniform(h0, h1)))


def _informal(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, o, e1, e2, la: float, lb: float,
              out: list) -> None:
    """Dense informal settlement: a jittered lattice of small, slightly rotated roofs on bare ground with
    narrow alleys (many small segments, shadows, bareland vs developed confusion)."""
    cell = rng.uniform(7, 11)
    for a in np.arange(1.0, la - cell, cell):
        for b in np.arange(1.0, lb - cell, cell):
            if rng.random() < 0.15:
                continue
            w, d = cell * rng.uniform(0.55, 0.9), cell * rng.uniform(0.55, 0.9)
            c = o + (a + cell / 2) * e1 + (b + cell / 2) * e2
            t = rng.normal(0, 0.15)
            f1, f2 = e1 * math.cos(t) + e2 * math.sin(t), -e1 * math.sin(t) + e2 * math.cos(t)
            rect = np.array([c - w / 2 * f1 - d / 2 * f2, c + w / 2 * f1 - d / 2 * f2, c + w / 2 * f1 + d / 2 * f2,
                             c - w / 2 * f1 + d / 2 * f2])
            roof = _ROOFS[rng.integers(len(_ROOFS))] if rng.random() < 0.6 else st.palette[BARE] * rng.uniform(0.8, 1.2)
            out.append((rect, _jitter(rng, roof, 0.08), rng.uniform(2.5, 4)))


def _fill_block(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, corners: tuple, use: str,
                bld: list, trees: list) -> None:
    """Paint one block's land use; append its buildings and trees to ``bld`` / ``trees``."""
    o, e1, e2, la, lb = corners
    pal = st.palette
    quad = _rect(o, e1, e2, 0, 0, la, lb)
    if use == "informal":
        cv.poly(quad, BARE, _jitter(rng, pal[BARE]))
        _informal(cv, st, rng, o, e1, e2, la, lb, bld)
        return
    if use in ("dense", "parking"):
        cv.poly(quad, DEVELOPED, _jitter(rng, pal[DEVELOPED]))
    elif use == "bare":
        cv.poly(quad, BARE, _jitter(rng, pal[BARE]))
    elif use == "forest":
        cv.poly(quad, TREE, _jitter(rng, pal[TREE], 0.05))
    elif use == "water":
        cv.poly(quad, RANGE, _jitter(rng, pal[RANGE]))
        c, r = o + la / 2 * e1 + lb / 2 * e2, 0.45 * min(la, lb)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        rad = r * (1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6)) + 0.08 * np.cos(5 * t + rng.uniform(0, 6)))
        cv.poly(c + np.stack([rad * np.cos(t), rad * np.sin(t)], 1), WATER, _jitter(rng, pal[WATER], 0.04))
    elif use == "fields":
        along = la >= lb
        length, width = (la, lb) if along else (lb, la)
        pos = 0.0
        while pos < length - 5:
            sw = min(rng.uniform(20, 80), length - pos)
            r = rng.random()
            cls, rgb = ((AGRI, _CROPS[rng.integers(len(_CROPS))]) if r < 0.78 else
                        (BARE, pal[BARE]) if r < 0.88 else (RANGE, pal[RANGE]))
            if cls == AGRI:
                rgb = (1 - st.confuse_ra) * rgb + st.confuse_ra * pal[RANGE]
            box = (pos, 0, pos + sw, width) if along else (0, pos, width, pos + sw)
            cv.poly(_rect(o, e1, e2, *box), cls, _jitter(rng, rgb))
            pos += sw
    else:  # residential, park, rangeland: grass with trees
        cv.poly(quad, RANGE, _jitter(rng, pal[RANGE]))
        if use == "rangeland" and rng.random() < 0.5:
            a, b = rng.uniform(0, la * 0.6), rng.uniform(0, lb * 0.6)
            cv.poly(_rect(o, e1, e2, a, b, a + la * 0.4, b + lb * 0.4), BARE, _jitter(rng, pal[BARE]))
    density = {"residential": 0.22, "park": 0.4, "rangeland": 0.06, "dense": 0.03, "parking": 0.03,
               "bare": 0.02, "forest": 0.0, "fields": 0.01, "water": 0.1}[use]
    if density > 0:
        trees.append((quad, density * rng.uniform(0.5, 1.5)))
    if use in ("dense", "residential", "parking", "bare"):
        _buildings(cv, st, rng, o, e1, e2, la, lb, use, bld)


def _trees(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, blocks: list) -> None:
    """Tree crowns where thresholded smooth noise exceeds the local density (blocks' tree cover); trees
    grow on grass and bare ground only."""
    low = max(8, cv.px // 16)
    dens = np.zeros((low, low), np.float32)
    scale = low / cv.px
    for quad, d in blocks:
        cv2.fillPoly(dens, [np.round(quad * cv.m2p * scale * 8).astype(np.int32)], float(d), cv2.LINE_8, 3)
    dens = np.clip(cv2.GaussianBlur(dens, (0, 0), 1.0), 1e-3, 1 - 1e-3)
    # P(N(0,1) > t) = density  <=>  t = Phi^-1(1 - density); a logistic approximation is plenty here
    thr = cv2.resize(-np.log(dens / (1 - dens)) * np.float32(0.6), (cv.px, cv.px), interpolation=cv2.INTER_LINEAR)
    _, medium, _ = _noise_bank(cv.px)
    grass = cv2.compare(cv.label, BARE, cv2.CMP_EQ) | cv2.compare(cv.label, RANGE, cv2.CMP_EQ)  # type: ignore
    mask = cv2.compare(_crop(medium, rng, cv.px), thr, cv2.CMP_GT) & grass
    cv.label[mask > 0] = TREE
    rgb = tuple(float(v) for v in np.clip(_jitter(rng, st.palette[TREE], 0.05), 0, 255))
    cv.colour = cv2.add(np.zeros_like(cv.colour), rgb + (0.0,), dst=cv.colour, mask=mask)  # type: ignore


def _layout(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, u: float, extent: float,
            homogeneous: bool) -> None:
    """Street grid, blocks, water, roads, trees, buildings and their shadows.  A ``homogeneous`` tile is
    one block of a single land cover (field, forest, lake, rangeland) with at most one track."""
    theta = st.grid_angle + rng.normal(0, 0.08)
    e1, e2 = np.array([math.cos(theta), math.sin(theta)]), np.array([-math.sin(theta), math.cos(theta)])
    block = extent * 2.5 if homogeneous else (300 - 230 * u) * rng.uniform(0.8, 1.25)
    centre, rad = np.array([extent / 2, extent / 2]), extent * 0.75
    a_lines = np.arange(-rad + rng.uniform(0, block), rad, block * rng.uniform(0.9, 1.1))
    b_lines = np.arange(-rad + rng.uniform(0, block), rad, block * rng.uniform(1.0, 1.5))
    widths_a = rng.uniform(5, 12, len(a_lines)) * (0.5 + 0.5 * u)
    widths_b = rng.uniform(5, 12, len(b_lines)) * (0.5 + 0.5 * u)
    keep_a, keep_b = rng.random(len(a_lines)) < 0.5 + 0.5 * u, rng.random(len(b_lines)) < 0.4 + 0.6 * u
    if homogeneous:
        keep_a[:] = False
        keep_b[:] = rng.random(len(b_lines)) < 0.2
        fixed = _HOMOGENEOUS[int(rng.integers(len(_HOMOGENEOUS)))]
    bld: list = []
    trees: list = []
    for i in range(len(a_lines) - 1):
        for j in range(len(b_lines) - 1):
            a0, a1 = a_lines[i] + widths_a[i] / 2 + 1.5, a_lines[i + 1] - widths_a[i + 1] / 2 - 1.5
            b0, b1 = b_lines[j] + widths_b[j] / 2 + 1.5, b_lines[j + 1] - widths_b[j + 1] / 2 - 1.5
            o = centre + a0 * e1 + b0 * e2
            mid = o + (a1 - a0) / 2 * e1 + (b1 - b0) / 2 * e2
            if a1 - a0 < 15 or b1 - b0 < 15 or np.abs(mid - centre).max() > extent / 2 + block:
                continue
            use = fixed if homogeneous else _land_use(rng, u)
            if use in ("dense", "residential") and rng.random() < st.p_informal:
                use = "informal"
            _fill_block(cv, st, rng, (o, e1, e2, a1 - a0, b1 - b0), use, bld, trees)
    if not homogeneous and rng.random() < 0.15:  # a river across the tile
        p = centre + rng.normal(0, extent / 5, 2)
        d = np.array([math.cos(ang := rng.uniform(0, math.pi)), math.sin(ang)])
        cv.line(p - 2 * extent * d, p + 2 * extent * d, rng.uniform(12, 40), WATER, _jitter(rng, st.palette[WATER]))
    _trees(cv, st, rng, trees)
    road = st.palette[ROAD]
    for lines, widths, keep, ea, eb in ((a_lines, widths_a, keep_a, e1, e2), (b_lines, widths_b, keep_b, e2, e1)):
        for at, w, k in zip(lines, widths, keep):
            if k:
                colour = road if w > 6 or rng.random() < 0.5 else st.palette[BARE] * 0.9  # dirt tracks
                cv.line(centre + at * ea - rad * eb, centre + at * ea + rad * eb, w, ROAD, _jitter(rng, colour, 0.04))
    sun = np.array(st.sun) * st.shadow_len
    for rect, _, h in bld:
        hull = cv2.convexHull(cv.pts(np.concatenate([rect, rect + sun * h])))
        cv2.fillPoly(cv.shadow, [hull], 1, cv2.LINE_8, cv.SHIFT)
    tree = cv.label == TREE
    d = np.round(sun * 5.0 * cv.m2p).astype(int)
    src = tree[max(0, -d[1]):cv.px - max(0, d[1]), max(0, -d[0]):cv.px - max(0, d[0])]
    cv.shadow[max(0, d[1]):cv.px - max(0, -d[1]), max(0, d[0]):cv.px - max(0, -d[0])] |= src.view(np.uint8)
    for rect, rgb, _ in bld:
        cv.poly(rect, BUILDING, rgb)


def _photometry(cv: _Canvas, st: RegionStyle, rng: np.random.Generator, bad: bool) -> np.ndarray:
    """Texture, illumination, shadows, colour cast, haze, blur and sensor noise -> uint8 RGB.

    ``out = blur(colour * cast * gain * (1 + grain + medium) * illumination * shadow + haze)`` + noise,
    with per-class grain/medium amplitudes (:data:`_TEXTURE`)."""
    px = cv.px
    grain, medium, coarse = _noise_bank(px)
    lab = cv.label
    ga = np.array([_TEXTURE.get(k, (0, 0))[0] for k in range(256)], np.float32)
    ma = np.array([_TEXTURE.get(k, (0, 0))[1] for k in range(256)], np.float32)
    fac = cv2.multiply(cv2.LUT(lab, ga), _crop(grain, rng, px))
    fac = cv2.add(fac, cv2.multiply(cv2.LUT(lab, ma), _crop(medium, rng, px)))
    haze = st.haze + (rng.uniform(0.25, 0.55) if bad else rng.uniform(0, 0.05))
    gain = float((1 - haze) * rng.uniform(0.9, 1.1))
    fac = cv2.multiply(fac + np.float32(1.0), cv2.addWeighted(_crop(coarse, rng, px), 0.06 * gain, fac, 0.0, gain))
    shade = (cv.shadow > 0) & (lab != BUILDING)
    fac[shade] *= np.float32(rng.uniform(0.4, 0.6))
    img = cv2.multiply(cv.colour, cv2.merge([fac * np.float32(c) for c in st.cast]), dtype=cv2.CV_32F)
    if bad and rng.random() < st.p_cloud:  # cloud patches: smooth, partly opaque, over 10-40 % of the tile
        field = _crop(coarse, rng, px)
        thr = float(np.quantile(field[::8, ::8], 1 - rng.uniform(0.1, 0.4)))
        alpha = np.clip((field - np.float32(thr)) * np.float32(1.5), 0, rng.uniform(0.6, 0.95)).astype(np.float32)
        img = cv2.multiply(img, cv2.merge([1 - alpha] * 3))
        img = cv2.add(img, cv2.merge([alpha * np.float32(235)] * 3))
    out = cv2.add(img, tuple(float(haze * v) for v in (205, 210, 220)) + (0.0,), dtype=cv2.CV_8U)  # type: ignore
    blur = (st.blur + (rng.uniform(1.0, 2.5) if bad else 0.0)) * px / REFERENCE_PX
    if blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    noise = np.float32(st.noise + (rng.uniform(3, 8) if bad else 0.0))
    n = _crop(grain, rng, px) * noise
    return cv2.add(out, cv2.merge([n, n, n]), dtype=cv2.CV_8U)


def render_tile(st: RegionStyle, rng: np.random.Generator,
                px: int = REFERENCE_PX) -> tuple[np.ndarray, np.ndarray, dict]:
    """One tile of region ``st``: ``(image (px, px, 3) uint8, label (px, px) uint8 ids 0..8, info)``.

    ``info`` holds the tile's latent difficulty drivers (urbanness, bad acquisition, nodata fraction); they
    are for analysis only and never given to the selection."""
    extent = REFERENCE_PX * st.gsd
    u = float(np.clip(st.urban_mean + st.urban_sd * rng.standard_normal(), 0, 1))
    bad = bool(rng.random() < st.p_bad)
    homogeneous = bool(rng.random() < st.p_homogeneous)
    cv = _Canvas(px, px / extent)
    cv.colour = cv2.merge([np.full((px, px), int(v), np.uint8) for v in np.clip(st.palette[RANGE], 0, 255)])
    _layout(cv, st, rng, u, extent, homogeneous)
    img = _photometry(cv, st, rng, bad)
    label = cv.label
    nodata = 0.0
    if rng.random() < 0.03:  # an image edge: nodata strip (image 0, label 0)
        w = int(px * rng.uniform(0.05, 0.3))
        side = int(rng.integers(4))
        sl = [(slice(None), slice(0, w)), (slice(None), slice(px - w, px)), (slice(0, w), slice(None)),
              (slice(px - w, px), slice(None))][side]
        img[sl] = 0
        label[sl] = 0
        nodata = w / px
    return img, label, {"urban": round(u, 4), "bad": bad, "homogeneous": homogeneous, "nodata": round(nodata, 4)}
