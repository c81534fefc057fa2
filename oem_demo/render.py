"""Rasterising a demo world (:mod:`oem_demo.world`): the 8-class label and a natural-colour image on the
scene's pixel grid, plus the valid-area mask of scenes with a nodata border.

Painting works on a colour-table index per pixel (1 byte, not RGB); texture, illumination and shadows
multiply the looked-up colours at the end.  Every random draw comes from the scene's generator in a fixed
order, so the rasters are a pure function of the generator's state and the world.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, cast

import cv2
import numpy as np
from shapely.geometry import LineString

from oem_demo.scenes import DemoScene
from oem_demo.world import World

#: Natural colours per biome and class (not the label palette).
PALETTES: dict[str, dict[int, tuple[int, int, int]]] = {
    "temperate": {1: (150, 132, 108), 2: (98, 122, 72), 3: (152, 150, 145), 4: (84, 86, 90), 5: (46, 70, 44),
                  6: (42, 62, 78), 7: (96, 128, 62), 8: (130, 130, 132)},
    "arid": {1: (196, 170, 134), 2: (152, 142, 106), 3: (172, 164, 150), 4: (96, 94, 92), 5: (72, 88, 56),
             6: (58, 84, 92), 7: (110, 132, 70), 8: (180, 172, 160)},
    "tropical": {1: (172, 122, 88), 2: (92, 132, 62), 3: (148, 143, 137), 4: (82, 82, 85), 5: (36, 76, 42),
                 6: (72, 88, 72), 7: (104, 142, 66), 8: (140, 110, 90)},
}
#: Per-class texture: (grain amplitude, medium-scale amplitude) as fractions of the base colour.
TEXTURE = {0: (0, 0), 1: (0.07, 0.10), 2: (0.06, 0.12), 3: (0.04, 0.05), 4: (0.03, 0.03), 5: (0.08, 0.30),
           6: (0.015, 0.04), 7: (0.05, 0.06), 8: (0.03, 0.02)}

_SHIFT = 4
_P = np.linspace(0.001, 0.999, 999)
_Q = np.array([NormalDist().inv_cdf(1 - p) for p in _P])


def _pts(m: np.ndarray, gsd: float) -> np.ndarray:
    """Metres -> cv2 fixed-point pixel coordinates (pixel centres at integers, ``_SHIFT`` fractional bits)."""
    return np.round((np.asarray(m, float) / gsd - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _fill(img: np.ndarray, polys: list, value: Any, gsd: float) -> None:
    if polys:
        cv2.fillPoly(img, [_pts(p, gsd) for p in polys], value, lineType=cv2.LINE_8, shift=_SHIFT)


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell_px: float) -> np.ndarray:
    """Unit-variance-ish smooth noise of feature size ``cell_px`` pixels, float32 (h, w)."""
    cw, ch = max(2, int(math.ceil(w / cell_px)) + 1), max(2, int(math.ceil(h / cell_px)) + 1)
    small = rng.standard_normal((ch, cw), dtype=np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out


def _upper_quantile(frac: np.ndarray) -> np.ndarray:
    """Threshold t with P(N(0,1) > t) = frac (clipped to 0.001..0.999), float32."""
    return np.interp(np.asarray(frac, np.float64), _P, _Q).astype(np.float32)


class _Canvas:
    """The label raster and the colour-table index raster being painted, with the colour table."""

    def __init__(self, w: int, h: int, gsd: float, background: tuple[int, int, int]) -> None:
        self.w, self.h, self.gsd = w, h, gsd
        self.label = np.full((h, w), 2, np.uint8)
        self.tones: dict[tuple[int, ...], int] = {}
        self.col = np.full((h, w), self.tone(background), np.uint8)  # colour-table index per pixel

    def tone(self, c: Any) -> int:
        """Index of colour ``c`` in the scene's colour table (painting uses 1-byte indices, not RGB)."""
        key = tuple(int(v) for v in c)
        if key not in self.tones:
            self.tones[key] = len(self.tones)
        return self.tones[key]

    def paint(self, polys: list, cls: int, colour: Any) -> None:
        """Class ``cls`` and colour ``colour`` inside ``polys`` (metres)."""
        _fill(self.label, polys, cls, self.gsd)
        _fill(self.col, polys, self.tone(colour), self.gsd)


def _paint_parcels(cv: _Canvas, world: World) -> np.ndarray:
    """Agriculture parcels (class 7) with crop-row stripes; returns the stripe mask."""
    w, h, gsd = cv.w, cv.h, cv.gsd
    stripes = np.zeros((h, w), np.uint8)
    for poly, colour, ang, spacing in world.parcels:
        cv.paint([poly], 7, colour)
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
    return stripes


def _paint_vegetation(rng: np.random.Generator, cv: _Canvas, world: World, sc: DemoScene) -> np.ndarray:
    """Bareland patches and trees on rangeland from thresholded smooth noise (tree density per block);
    returns the tree mask."""
    w, h, gsd = cv.w, cv.h, cv.gsd
    pal = PALETTES[sc.biome]
    label, col = cv.label, cv.col
    density = np.zeros((max(2, h // 16), max(2, w // 16)), np.float32)
    scale = density.shape[1] / w
    density[:] = {"temperate": 0.06, "arid": 0.03, "tropical": 0.1}[sc.biome]
    for poly, dens in world.tree_density:
        cv2.fillPoly(density, [np.round((poly / gsd) * scale * 16).astype(np.int32)], float(dens),
                     lineType=cv2.LINE_8, shift=4)
    blurred = cv2.GaussianBlur(density, (0, 0), 1.5)
    thr = cv2.resize(_upper_quantile(blurred), (w, h), interpolation=cv2.INTER_LINEAR)
    tn = _smooth_noise(rng, w, h, 6.0 / gsd) * 0.8 + _smooth_noise(rng, w, h, 2.5 / gsd) * 0.6
    tn *= np.float32(1.0 / max(float(tn.std()), 1e-6))  # unit variance so thresholds give the wanted fractions
    trees = (tn > thr) & (label == 2)
    bare_frac = {"temperate": 0.03, "arid": 0.2, "tropical": 0.08}[sc.biome]
    bn = _smooth_noise(rng, w, h, 14.0 / gsd)
    bn *= np.float32(1.0 / max(float(bn.std()), 1e-6))
    bthr = float(_upper_quantile(np.array([bare_frac]))[0])
    bare = (bn > bthr) & (label == 2) & ~trees
    label[bare] = 1
    col[bare] = cv.tone(pal[1])
    label[trees] = 5
    col[trees] = cv.tone(pal[5])
    return trees


def _paint_network(cv: _Canvas, world: World, pal: dict[int, tuple[int, int, int]]) -> None:
    """Hedges, water and roads, then dashed centre lines on main roads."""
    cv.paint(world.hedges, 5, pal[5])
    cv.paint(world.water, 6, pal[6])
    for poly, _, _, _ in world.roads:
        cv.paint([poly], 4, pal[4])
    mark = (222, 222, 214)
    thick = max(1, int(round(0.15 / cv.gsd)))
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
            segs.append(_pts(p, cv.gsd))
        if segs:
            cv2.polylines(cv.col, segs, False, cv.tone(mark), thickness=thick, lineType=cv2.LINE_8, shift=_SHIFT)


def _paint_buildings(rng: np.random.Generator, cv: _Canvas, world: World) -> np.ndarray:
    """Roofs (gable halves shaded, some rooftop structures); class 8 is exactly the rectangles.  Returns the
    mask of the buildings' cast shadows."""
    gsd = cv.gsd
    shadow = np.zeros((cv.h, cv.w), np.uint8)
    sdx, sdy = world.shadow_dir
    hulls = []
    for rect, (_colour, _gable, height) in zip(world.buildings, world.roofs):
        off = np.array([sdx, sdy]) * height * 0.45
        hulls.append(cv2.convexHull(_pts(np.concatenate([rect, rect + off]), gsd)))
    if hulls:
        cv2.fillPoly(shadow, hulls, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    _fill(cv.label, list(world.buildings), 8, gsd)
    for rect, (colour, gable, _height) in zip(world.buildings, world.roofs):
        _fill(cv.col, [rect], cv.tone(colour), gsd)
        long01 = np.linalg.norm(rect[1] - rect[0]) >= np.linalg.norm(rect[3] - rect[0])
        if gable:
            half = (np.array([rect[0], rect[1], (rect[1] + rect[2]) / 2, (rect[0] + rect[3]) / 2]) if long01 else
                    np.array([rect[0], (rect[0] + rect[1]) / 2, (rect[3] + rect[2]) / 2, rect[3]]))
            _fill(cv.col, [half], cv.tone([v * 0.8 for v in colour]), gsd)
        elif rng.random() < 0.6:  # rooftop structure
            c = rect.mean(0)
            small = c + (rect - c) * rng.uniform(0.15, 0.35)
            _fill(cv.col, [small], cv.tone([min(255, v * 1.15) for v in colour]), gsd)
    return shadow


def _shade(cv: _Canvas, world: World, trees: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Shaded pixels: building shadows and tree shadows (the final tree mask shifted away from the sun),
    never on buildings or trees themselves."""
    w, h = cv.w, cv.h
    sdx, sdy = world.shadow_dir
    tsh = max(1, int(round(3.0 / cv.gsd)))
    dx, dy = int(round(sdx * tsh)), int(round(sdy * tsh))
    tshadow = np.zeros_like(trees)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    label = cv.label
    trees = label == 5  # final tree pixels (hedges included, those covered by water/roads/buildings excluded)
    tshadow[yd, xd] = trees[ys, xs]
    return ((shadow > 0) | tshadow) & (label != 8) & ~trees


def _brightness(rng: np.random.Generator, cv: _Canvas, shade: np.ndarray, stripes: np.ndarray) -> np.ndarray:
    """Per-pixel factor ``(1 + grain + medium texture) * illumination * shadow * crop stripes``, >= 0.15."""
    w, h, gsd, label = cv.w, cv.h, cv.gsd, cv.label
    ga = np.array([TEXTURE.get(k, (0, 0))[0] for k in range(256)], np.float32)
    ma = np.array([TEXTURE.get(k, (0, 0))[1] for k in range(256)], np.float32)
    fac: np.ndarray = cv2.multiply(cv2.LUT(label, ga), rng.standard_normal((h, w), dtype=np.float32))
    fac = cast(np.ndarray, cv2.add(fac, cv2.multiply(cv2.LUT(label, ma), _smooth_noise(rng, w, h, 1.2 / gsd))))
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
    np.maximum(fac, np.float32(0.15), out=fac)
    return fac


def _image(cv: _Canvas, fac: np.ndarray, satellite: bool) -> np.ndarray:
    """The colour table looked up per pixel, times ``fac``; satellite haze; a slight blur."""
    table = np.zeros((256, 1, 3), np.float32)
    for c, k in cv.tones.items():
        table[k, 0] = c
    img = cv2.LUT(cv2.merge([cv.col, cv.col, cv.col]), table)
    img *= fac[..., None]
    if satellite:
        img = cv2.addWeighted(img, 0.88, img, 0.0, 18.0)
    sigma = 1.0 if satellite else 0.6
    return cv2.GaussianBlur(img, (0, 0), sigma)


def render(rng: np.random.Generator, world: World, sc: DemoScene, w: int, h: int, gsd: float,
           satellite: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rasterise ``world``: returns (label uint8 (h,w), image float32 (h,w,3) in 0..255, valid mask or None)."""
    pal = PALETTES[sc.biome]
    cv = _Canvas(w, h, gsd, pal[2])
    for cls, poly, colour in world.landuse:
        cv.paint([poly], int(cls), colour if colour is not None else pal[cls])
    stripes = _paint_parcels(cv, world)
    trees = _paint_vegetation(rng, cv, world, sc)
    _paint_network(cv, world, pal)
    shadow = _paint_buildings(rng, cv, world)
    shade = _shade(cv, world, trees, shadow)
    del shadow, trees
    fac = _brightness(rng, cv, shade, stripes)
    del shade
    img = _image(cv, fac, satellite)
    del fac
    label = cv.label
    valid = None
    if world.valid is not None:
        vm = np.zeros((h, w), np.uint8)
        _fill(vm, [world.valid], 1, gsd)
        valid = vm.astype(bool)
        label *= vm
        img = cv2.multiply(img, cv2.merge([vm, vm, vm]).astype(np.float32))
    return label, img, valid
