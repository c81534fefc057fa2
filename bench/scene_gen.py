"""Procedural benchmark scene: a textured 3-band uint8 image and an 8-class label raster.

``generate(folder, size=8192, seed=0)`` writes ``scene_<size>.tif`` (3-band uint8, EPSG:3857, 0.15 m ground
GSD near Vienna, DEFLATE, tiled 512) and ``label_<size>.tif`` (1-band uint8, ids 1..8, same grid) and
returns their paths.  Deterministic for a given (size, seed); files that already exist are reused (the
generation time is not benchmarked).

The label is a Voronoi partition of land-cover classes (drawn at 1/4 resolution, its edges displaced by
smooth noise, then upscaled), with roads (class 4) and rotated rectangular buildings (class 8) drawn at
full resolution: a few thousand segments on an 8192x8192 scene.  The image is a per-class colour plus
per-class grain, smooth illumination and a light blur, written strip by strip.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

LON, LAT = 16.37, 48.2          # Vienna, UTM zone 33N (EPSG:32633)
GROUND_GSD = 0.15               # metres on the ground
COLOURS = {1: (150, 120, 90), 2: (120, 150, 80), 3: (165, 162, 155), 4: (95, 95, 100),
           5: (45, 90, 48), 6: (40, 70, 115), 7: (140, 170, 85), 8: (200, 95, 75)}
GRAIN = {1: 10, 2: 12, 3: 6, 4: 4, 5: 22, 6: 3, 7: 9, 8: 5}
STRIP = 1024


def _smooth(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _label(rng: np.random.Generator, size: int) -> np.ndarray:
    low = size // 4
    n_seeds = max(50, int(1500 * (size / 8192) ** 2))
    seeds = np.ones((low, low), np.uint8)
    ys, xs = rng.integers(0, low, n_seeds), rng.integers(0, low, n_seeds)
    seeds[ys, xs] = 0
    _, idx = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    classes = rng.choice([1, 2, 3, 5, 6, 7], size=idx.max() + 1, p=[0.08, 0.3, 0.2, 0.2, 0.05, 0.17]).astype(np.uint8)
    lab = classes[idx]
    # displace the cell edges by smooth noise so boundaries are not straight
    dx = _smooth(rng, low, low, 24) * 6.0
    dy = _smooth(rng, low, low, 24) * 6.0
    gx, gy = np.meshgrid(np.arange(low, dtype=np.float32), np.arange(low, dtype=np.float32))
    lab = cv2.remap(lab, gx + dx, gy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
    # roads: a loose grid of polylines
    n_roads = max(2, size // 700)
    for k in range(n_roads):
        for vertical in (False, True):
            pos = (k + 0.5) * size / n_roads + rng.normal(0, size / n_roads / 6)
            t = np.linspace(-0.05 * size, 1.05 * size, 12)
            wob = pos + np.cumsum(rng.normal(0, size / 200, t.size))
            pts = np.stack([wob, t], 1) if vertical else np.stack([t, wob], 1)
            cv2.polylines(lab, [np.round(pts).astype(np.int32)], False, 4, thickness=int(rng.integers(25, 60)))
    # buildings: rotated rectangles, 6-25 m
    n_b = int(3000 * (size / 8192) ** 2)
    cx, cy = rng.uniform(0, size, n_b), rng.uniform(0, size, n_b)
    for x, y in zip(cx, cy):
        w, h = rng.uniform(30, 110, 2)
        box = cv2.boxPoints(((float(x), float(y)), (float(w), float(h)), float(rng.uniform(0, 90))))
        cv2.fillPoly(lab, [np.round(box * 16).astype(np.int32)], 8, lineType=cv2.LINE_8, shift=4)
    return lab


def generate(folder: Path, size: int = 8192, seed: int = 0) -> tuple[Path, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img_path, lbl_path = folder / f"scene_{size}_{seed}.tif", folder / f"label_{size}_{seed}.tif"
    if img_path.exists() and lbl_path.exists():
        return img_path, lbl_path
    rng = np.random.default_rng(seed)
    cx, cy = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(LON, LAT)
    px = GROUND_GSD / math.cos(math.radians(LAT))   # Web Mercator metres per ground metre
    transform = Affine(px, 0.0, cx - size / 2 * px, 0.0, -px, cy + size / 2 * px)
    lab = _label(rng, size)
    common = dict(driver="GTiff", width=size, height=size, crs="EPSG:3857", transform=transform, tiled=True,
                  blockxsize=512, blockysize=512, compress="deflate", dtype="uint8")
    tmp_l, tmp_i = lbl_path.with_suffix(".tmp.tif"), img_path.with_suffix(".tmp.tif")
    with rasterio.open(tmp_l, "w", count=1, **common) as dst:
        dst.write(lab[np.newaxis])
    lut = np.zeros((256, 3), np.float32)
    grain = np.zeros(256, np.float32)
    for c, rgb in COLOURS.items():
        lut[c] = rgb
        grain[c] = GRAIN[c]
    illum = 1.0 + 0.08 * _smooth(rng, size // 8, size // 8, 40)
    with rasterio.open(tmp_i, "w", count=3, photometric="RGB", predictor=2, **common) as dst:
        for r0 in range(0, size, STRIP):
            pad = 4
            a, b = max(0, r0 - pad), min(size, r0 + STRIP + pad)
            lb = lab[a:b]
            base = lut[lb]                                            # (h, w, 3)
            noise = rng.standard_normal(lb.shape, dtype=np.float32) * grain[lb]
            il = cv2.resize(illum[a // 8: (b + 7) // 8], (size, ((b + 7) // 8 - a // 8) * 8),
                            interpolation=cv2.INTER_LINEAR)[a - (a // 8) * 8: a - (a // 8) * 8 + (b - a)]
            img = (base + noise[..., None]) * il[..., None]
            img = cv2.GaussianBlur(img, (0, 0), 0.7)[r0 - a: r0 - a + min(STRIP, size - r0)]
            out = np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)
            dst.write(out, window=rasterio.windows.Window(0, r0, size, out.shape[1]))
    tmp_l.replace(lbl_path)
    tmp_i.replace(img_path)
    return img_path, lbl_path


if __name__ == "__main__":
    import sys
    import time
    t = time.time()
    print(generate(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8192), time.time() - t)
