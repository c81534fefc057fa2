"""Fast block-by-block rendering of a synthetic scene: 8-class label + natural-colour RGB.

:class:`SceneRenderer` paints the vector world of :mod:`oem_demo.scale.world` window by window with OpenCV
(``fillPoly`` with 1/8-pixel vertex precision), so the cost per pixel is a handful of vectorised passes
and memory is bounded by the window, whatever the scene size:

* label and albedo: each layer's polygons that touch the window, grouped by palette index, one
  ``fillPoly`` per group into the label (class id) and into the albedo (the group's colour);
* texture: a multiplicative luminance factor ``1 + G*a_G[class] + C*a_C[class] + S*a_S[class]`` where
  G (grain + mottling), C (tree crowns) and S (crop rows along the street grid) are crops of small
  precomputed noise banks (2048², int8) at the scene's pixel scale and the amplitudes are per class;
* light: building and tree shadows (a shade map), a smooth illumination field, a slight optical blur;
* validity: outside the scene's valid polygon (nodata edges) the label is 0 and the image 0.

Colours are natural colours per biome (temperate, arid, tropical, cold), graded per region and scene.
Everything is a deterministic function of the scene's parameters.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np

from oem_demo.scale.world import VARIANTS, WorldParams, build_world

BANK = 2048
SHIFT = 3                      # fillPoly fractional bits: vertices at 1/8 pixel
#: Natural colours per biome: class -> list of variants (RGB).
_BIOMES: dict[str, dict[int, list[tuple[int, int, int]]]] = {
    "temperate": {1: [(150, 132, 108), (170, 150, 120), (128, 112, 92)],
                  2: [(98, 122, 72), (110, 136, 80), (122, 130, 86)],
                  3: [(152, 150, 145), (132, 130, 128), (170, 160, 148)],
                  4: [(88, 90, 94), (70, 72, 76)],
                  5: [(46, 70, 44), (54, 80, 48), (40, 62, 42), (60, 76, 52)],
                  6: [(44, 64, 80), (62, 76, 72)],
                  7: [(96, 128, 62), (178, 164, 100), (126, 102, 76), (132, 152, 80), (150, 140, 88),
                      (112, 140, 70)],
                  8: [(162, 82, 62), (126, 126, 132), (208, 208, 204), (72, 74, 80), (118, 92, 74),
                      (110, 126, 142), (112, 60, 48), (92, 94, 100)]},
    "arid": {1: [(196, 170, 134), (208, 184, 148), (180, 154, 120)],
             2: [(152, 142, 106), (140, 138, 98), (164, 150, 112)],
             3: [(172, 164, 150), (160, 150, 136), (186, 176, 160)],
             4: [(100, 98, 96), (84, 82, 82)],
             5: [(72, 88, 56), (80, 96, 60), (62, 78, 50), (90, 98, 66)],
             6: [(58, 84, 92), (80, 92, 86)],
             7: [(110, 132, 70), (170, 156, 104), (150, 128, 94), (124, 140, 78), (186, 170, 120),
                 (96, 120, 64)],
             8: [(214, 206, 190), (186, 170, 148), (160, 84, 64), (132, 132, 136), (226, 222, 214),
                 (196, 184, 160), (150, 140, 124), (110, 110, 114)]},
    "tropical": {1: [(172, 122, 88), (186, 136, 98), (150, 108, 80)],
                 2: [(92, 132, 62), (104, 142, 70), (116, 138, 76)],
                 3: [(148, 143, 137), (132, 128, 122), (160, 150, 138)],
                 4: [(82, 82, 85), (66, 66, 70)],
                 5: [(36, 76, 42), (44, 86, 46), (30, 66, 38), (52, 90, 50)],
                 6: [(72, 88, 72), (96, 90, 70)],
                 7: [(104, 142, 66), (86, 130, 74), (140, 140, 84), (120, 150, 70), (98, 120, 60),
                     (130, 156, 90)],
                 8: [(146, 102, 70), (170, 86, 62), (128, 132, 138), (196, 196, 192), (96, 110, 128),
                     (180, 170, 150), (120, 76, 54), (100, 104, 110)]},
    "cold": {1: [(140, 130, 118), (156, 146, 130), (120, 112, 102)],
             2: [(104, 118, 80), (118, 128, 90), (96, 108, 74)],
             3: [(150, 150, 150), (130, 130, 132), (166, 162, 156)],
             4: [(84, 86, 90), (68, 70, 74)],
             5: [(34, 56, 40), (42, 64, 44), (30, 48, 36), (50, 66, 50)],
             6: [(36, 52, 66), (52, 64, 70)],
             7: [(110, 130, 70), (168, 158, 104), (120, 104, 80), (136, 150, 84), (150, 146, 96),
                 (100, 124, 66)],
             8: [(150, 70, 58), (120, 122, 128), (196, 196, 194), (66, 70, 76), (110, 88, 70),
                 (100, 116, 132), (100, 52, 44), (86, 90, 96)]},
}
#: Per-class luminance modulation (fraction, 1 sigma) of the grain, crown and crop-row banks.
_AMP_G = {1: 0.07, 2: 0.09, 3: 0.05, 4: 0.035, 5: 0.08, 6: 0.02, 7: 0.06, 8: 0.035}
_AMP_C = {2: 0.04, 5: 0.22}
_AMP_S = {7: 0.07}
#: Smooth illumination: sample step (px) of the field that is interpolated per window.
_ILLUM_STEP = 16


def palette(biome: str, grade: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """(9 * VARIANTS, 3) uint8 colours: the biome's variants, graded (per-channel gains, brightness),
    with a little per-scene jitter.  Unused variants repeat the class's first colour."""
    table = np.zeros((9 * VARIANTS, 3), np.float64)
    for cls, variants in _BIOMES[biome].items():
        for v in range(VARIANTS):
            table[cls * VARIANTS + v] = variants[v % len(variants)]
    gains = np.asarray(grade[:3], np.float64) * grade[3] * rng.uniform(0.97, 1.03, 3)
    return np.clip(table * gains, 0, 255).astype(np.uint8)


def _norm_int8(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return np.clip(x * (32.0 / (x.std() + 1e-9)), -127, 127).astype(np.int8)


def _periodic_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """White noise blurred by a Gaussian of ``sigma`` px with wrap-around (padded by wrapping, blurred,
    cropped), unit variance: a BANK-periodic field, so windows on a 1024-px lattice read it seamlessly
    at ``X mod BANK``."""
    noise: np.ndarray = rng.standard_normal((BANK, BANK), dtype=np.float32)
    if sigma > 0:
        pad = math.ceil(3.5 * sigma) + 1
        noise = cv2.GaussianBlur(np.pad(noise, pad, mode="wrap"), (0, 0), sigma)[pad:-pad, pad:-pad]
    return noise / (noise.std() + 1e-9)


@functools.lru_cache(maxsize=8)
def texture_banks(gsd_cm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grain/mottling bank G and tree-crown bank C (BANK x BANK int8, sigma 32, BANK-periodic) at
    ``gsd_cm`` cm per pixel."""
    gsd = gsd_cm / 100.0
    rng = np.random.default_rng([seed, gsd_cm])
    fine = _periodic_noise(rng, 0.6)
    g = _norm_int8(0.7 * fine + 0.7 * _periodic_noise(rng, max(1.0, 2.5 / gsd)))
    crowns = np.tanh(_periodic_noise(rng, max(0.8, 1.2 / gsd)) * 1.5)
    return g, _norm_int8(crowns + 0.3 * fine)


def stripe_bank(theta: float, gsd: float, period_m: float) -> tuple[np.ndarray, float]:
    """Crop rows: a sinusoid of period ``period_m`` metres whose crests run along direction ``theta``
    (int8, amplitude 45), and its period in pixels along the rows axis (for seamless window offsets)."""
    y, x = np.mgrid[0:BANK, 0:BANK].astype(np.float32)
    period_px = period_m / gsd
    phase = (x * math.sin(theta) - y * math.cos(theta)) * (2 * np.pi / period_px)
    return np.clip(np.sin(phase) * 45, -127, 127).astype(np.int8), period_px


def _fill_one(img: np.ndarray, poly: np.ndarray, value: int, line_type: int, shift: int) -> None:
    cv2.fillPoly(img, [poly], value, line_type, shift)


def _lut(amps: dict[int, float]) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for cls, a in amps.items():
        lut[cls] = min(255, round(a * 512))
    return lut


class SceneRenderer:
    """Renders windows of one scene (see module doc)."""

    def __init__(self, width: int, height: int, gsd: float, world: WorldParams, grade: Sequence[float],
                 valid: np.ndarray | None = None) -> None:
        self.width, self.height, self.gsd = width, height, gsd
        rng = np.random.default_rng([world.seed, 1])
        self.layers, theta = build_world(world)
        self.palette = palette(world.biome, grade, rng)
        self.g_bank, self.c_bank = texture_banks(round(gsd * 100))
        self.s_bank, self.s_period = stripe_bank(theta, gsd, rng.uniform(1.2, 3.0))
        self.theta = theta
        self.luts = (_lut(_AMP_G), _lut(_AMP_C), _lut(_AMP_S))
        self.class_lut = (np.arange(256) // VARIANTS).clip(0, 255).astype(np.uint8)
        self.colour_lut = np.zeros((256, 1, 3), np.uint8)
        self.colour_lut[: len(self.palette), 0] = self.palette
        self.valid = None if valid is None else np.round(np.asarray(valid) * 2 ** SHIFT).astype(np.int32)
        self.illum = [(rng.uniform(0.0005, 0.004), rng.uniform(0.0005, 0.004), rng.uniform(0, 6.3),
                       rng.uniform(3, 9)) for _ in range(3)]
        self.illum_base = rng.uniform(228, 242)
        self.seed = world.seed

    def _illumination(self, col0: int, row0: int, w: int, h: int) -> np.ndarray:
        s = _ILLUM_STEP
        xs = (col0 + (np.arange(-(-w // s)) + 0.5) * s) * self.gsd
        ys = (row0 + (np.arange(-(-h // s)) + 0.5) * s) * self.gsd
        field = np.full((len(ys), len(xs)), self.illum_base, np.float32)
        for kx, ky, ph, amp in self.illum:
            field += amp * np.sin(kx * xs[None, :] + ky * ys[:, None] + ph).astype(np.float32)
        full = cv2.resize(field, (len(xs) * s, len(ys) * s), interpolation=cv2.INTER_LINEAR)
        return np.clip(full[:h, :w], 0, 255).astype(np.uint8)

    def _paint(self, col0: int, row0: int, w: int, h: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]:
        """Label, albedo and shade map of a window, and the classes painted.  Polygons are painted as
        palette indices into one canvas; label and albedo are lookups of it."""
        index = np.zeros((h, w), np.uint8)
        shade = np.full((h, w), 255, np.uint8)
        g = self.gsd
        x0, y0, x1, y1 = col0 * g, row0 * g, (col0 + w) * g, (row0 + h) * g
        scale = 2 ** SHIFT / g
        origin = np.array([x0, y0], np.float32)
        roofs: list = []
        classes: set = set()
        for layer in self.layers:
            b = layer.bbox
            sel = np.flatnonzero((b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1))
            if not len(sel):
                continue
            pts = np.round((layer.polys[sel] - origin) * scale).astype(np.int32)
            cols = layer.cols[sel]
            canvas = shade if layer.shadow else index
            if not layer.shadow:
                classes.update(int(c) // VARIANTS for c in np.unique(cols))
            if layer.overlap:
                fill = cv2.fillConvexPoly if pts.shape[1] <= 8 else _fill_one
                for p, c in zip(pts, cols.tolist()):
                    fill(canvas, p, c, cv2.LINE_8, SHIFT)
                continue
            for c in np.unique(cols):
                group = pts[cols == c]
                cv2.fillPoly(canvas, group, int(c), cv2.LINE_8, SHIFT)
                if int(c) // VARIANTS == 8:
                    roofs.append(group)
        for group in roofs:  # roofs are lit even where a neighbour's shadow would fall
            cv2.fillPoly(shade, group, 255, cv2.LINE_8, SHIFT)
        label = cv2.LUT(index, self.class_lut)
        albedo = cv2.LUT(cv2.merge([index, index, index]), self.colour_lut)
        return label, albedo, shade, classes

    def _offsets(self, col0: int, row0: int) -> list[tuple[int, int]]:
        """Bank offsets (row, col) of a window: ``X mod BANK`` for the periodic banks; for the stripes a
        row offset that continues the stripe phase of the window's global position."""
        c = math.cos(self.theta)
        d = col0 * math.sin(self.theta) - row0 * c
        oy = round((-d / c) % (self.s_period / c))
        return [(row0 % BANK, col0 % BANK), (row0 % BANK, col0 % BANK), (oy, 0)]

    def _texture(self, label: np.ndarray, classes: set[int], col0: int, row0: int) -> np.ndarray:
        """Luminance factor (uint8, 128 = 1.0) of the window from the banks and per-class amplitudes."""
        h, w = label.shape
        acc = np.full((h, w), 128 << 7, np.int32)
        banks = (self.g_bank, self.c_bank, self.s_bank)
        for bank, lut, (oy, ox) in zip(banks, self.luts, self._offsets(col0, row0)):
            if not any(lut[c] for c in classes):
                continue
            amp = cv2.LUT(label, lut)
            acc += np.multiply(bank[oy:oy + h, ox:ox + w], amp, dtype=np.int16)
        return np.clip(acc >> 7, 0, 255).astype(np.uint8)

    def render(self, col0: int, row0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(label (h, w) uint8, rgb (h, w, 3) uint8, valid (h, w) bool)`` of the window.  Windows must
        start on the 1024-px lattice (``col0 % 1024 == row0 % 1024 == 0``) and be at most 1024 wide."""
        label, albedo, shade, classes = self._paint(col0, row0, w, h)
        factor = self._texture(label, classes, col0, row0)
        light = cv2.multiply(shade, self._illumination(col0, row0, w, h), scale=1 / 255)
        factor = cv2.multiply(factor, light, scale=1 / 255)
        rgb = cv2.multiply(albedo, cv2.merge([factor, factor, factor]), scale=2 / 255)
        rgb = cv2.GaussianBlur(rgb, (3, 3), 0.7)
        valid = np.ones((h, w), bool)
        if self.valid is not None:
            m = np.zeros((h, w), np.uint8)
            off = np.array([col0, row0], np.int32) * 2 ** SHIFT
            cv2.fillPoly(m, [self.valid - off], 1, cv2.LINE_8, SHIFT)
            valid = m.astype(bool)
            label[~valid] = 0
            rgb[~valid] = 0
        return label, rgb, valid
