"""Vector land-cover world of one synthetic scene, in metres, for :mod:`oem_demo.scale.render`.

A scene's world is a list of polygon *layers* painted in order (later layers cover earlier ones):
base fills of the land-use cells and blocks, field parcels, water, roads, paved patches, trees and
buildings, plus *shadow* polygons that only darken the image.  Coordinates are metres in the scene's
pixel frame: pixel ``(col, row)`` covers ``[col*gsd, (col+1)*gsd) x [row*gsd, (row+1)*gsd)``, x to the
right (east), y down (south).  Every polygon carries a colour index ``cls * VARIANTS + variant`` into the
scene palette, so its class is ``index // VARIANTS``.

Layout: a slightly rotated grid of major roads (350-900 m apart) cuts the scene into cells; each cell's
land use follows its *urbanity* (a Gaussian of the distance to the city centre plus smooth noise and a
per-scene bias): urban / residential / industrial blocks cut by minor streets, parks, field strips,
forest, rangeland, bareland, farmsteads; lakes and a river are painted over the land and the streets,
major roads over water (bridges); a cell's land use is :mod:`oem_demo.scale.landuse`.  Buildings and trees
that would stand in water are dropped.  Everything is a pure function of the scene's random generator.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from oem_demo.scale.landuse import OVERLAPPING, ROAD, VARIANTS, WATER, Acc, blob, cell, grid_lines, rects, use_for


@dataclass
class Layer:
    """Polygons of one paint step: ``polys`` (K, n, 2) metres, ``cols`` (K,) palette indices or, for a
    shadow layer, the shade value (0..255, 255 = no shadow).  ``overlap``: polygons of the layer may
    overlap each other, so they are painted one by one (OpenCV fills a batch with the even-odd rule)."""

    polys: np.ndarray
    cols: np.ndarray
    shadow: bool = False
    overlap: bool = False
    bbox: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.cols = np.asarray(self.cols, np.uint8)
        polys = np.asarray(self.polys, np.float32)
        self.polys = polys.reshape(len(self.cols), -1, 2) if len(self.cols) else polys.reshape(0, 4, 2)
        lo, hi = self.polys.min(axis=1), self.polys.max(axis=1)
        self.bbox = np.concatenate([lo, hi], axis=1) if len(self.cols) else np.zeros((0, 4), np.float32)


@dataclass(frozen=True)
class WorldParams:
    """What the world depends on: frame size (m), city centre in the frame (m), city radius (m),
    urbanity bias, biome, seed."""

    width_m: float
    height_m: float
    city_xy: tuple[float, float]
    city_radius: float
    bias: float
    biome: str
    seed: int


def _value_noise(rng: np.random.Generator, width: float, height: float, spacing: float, sigma: float):
    """Smooth random field over the frame (bilinear between grid values ``spacing`` m apart)."""
    gw, gh = int(width / spacing) + 3, int(height / spacing) + 3
    grid = rng.normal(0, sigma, (gh, gw))

    def at(x: float, y: float) -> float:
        fx, fy = min(max(x / spacing + 1, 0), gw - 1.001), min(max(y / spacing + 1, 0), gh - 1.001)
        ix, iy = int(fx), int(fy)
        tx, ty = fx - ix, fy - iy
        top = grid[iy, ix] * (1 - tx) + grid[iy, ix + 1] * tx
        bot = grid[iy + 1, ix] * (1 - tx) + grid[iy + 1, ix + 1] * tx
        return float(top * (1 - ty) + bot * ty)
    return at


def _water(rng: np.random.Generator, acc: Acc, radius: float, rural: bool) -> None:
    """A lake and/or a meandering river in the (u, v) frame."""
    if rng.random() < (0.5 if rural else 0.3):
        r = rng.uniform(60, 0.18 * radius + 80)
        acc.add("lake", blob(rng, rng.uniform(-0.5, 0.5) * radius, rng.uniform(-0.5, 0.5) * radius, r)[None],
                WATER * VARIANTS + 1)
    if rng.random() < 0.3:
        u = np.arange(-radius - 40, radius + 40, 20.0)
        amp, lam, ph = rng.uniform(20, 120), rng.uniform(400, 1500), rng.uniform(0, 2 * np.pi)
        v = rng.uniform(-0.4, 0.4) * radius + amp * np.sin(2 * np.pi * u / lam + ph)
        half = rng.uniform(8, 35)
        d = np.stack([np.diff(u), np.diff(v)], 1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        n = np.stack([-d[:, 1], d[:, 0]], 1) * half
        a = np.stack([u[:-1], v[:-1]], 1) - d * half * 0.3
        b = np.stack([u[1:], v[1:]], 1) + d * half * 0.3
        acc.add("water", np.stack([a - n, b - n, b + n, a + n], 1), WATER * VARIANTS)


def _cells(rng, acc: Acc, p: WorldParams, to_xy, radius: float) -> None:
    """Major road grid and the land use of every cell that touches the frame."""
    noise = _value_noise(rng, p.width_m, p.height_m, 700.0, 0.12)

    def urbanity(x: float, y: float) -> float:
        d = math.hypot(x - p.city_xy[0], y - p.city_xy[1])
        return math.exp(-0.5 * (d / p.city_radius) ** 2) + p.bias + noise(x, y)

    u_mid = urbanity(p.width_m / 2, p.height_m / 2)
    lo, hi = (350, 650) if u_mid > 0.35 else (500, 950)
    us, vs = grid_lines(rng, radius, lo, hi), grid_lines(rng, radius, lo, hi)
    wu, wv = rng.uniform(9, 16, len(us)), rng.uniform(9, 16, len(vs))
    margin = 60.0
    for i in range(len(us) - 1):
        for j in range(len(vs) - 1):
            u0, u1 = us[i] + wu[i] / 2 + 1.5, us[i + 1] - wu[i + 1] / 2 - 1.5
            v0, v1 = vs[j] + wv[j] / 2 + 1.5, vs[j + 1] - wv[j + 1] / 2 - 1.5
            corners = to_xy(rects(u0, v0, u1, v1)[0])
            if (corners[:, 0].max() < -margin or corners[:, 0].min() > p.width_m + margin
                    or corners[:, 1].max() < -margin or corners[:, 1].min() > p.height_m + margin):
                continue
            cx, cy = corners.mean(axis=0)
            cell(rng, acc, use_for(rng, urbanity(cx, cy), p.biome), u0, v0, u1, v1, p.biome)
    acc.add("major", rects(us - wu / 2, -radius, us + wu / 2, radius), ROAD * VARIANTS + 1)
    acc.add("major", rects(-radius, vs - wv / 2, radius, vs + wv / 2), ROAD * VARIANTS + 1)
    _water(rng, acc, radius, u_mid < 0.35)


def _water_mask(layers: Sequence[Layer], width_m: float, height_m: float, res: float = 2.0):
    """Raster of the water polygons at ``res`` m and a test ``wet(points (K, m, 2)) -> (K,) bool``."""
    h, w = int(height_m / res) + 2, int(width_m / res) + 2
    mask = np.zeros((h, w), np.uint8)
    for layer in layers:
        for poly in np.round(layer.polys / res * 8).astype(np.int32):
            cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, 3)

    def wet(points: np.ndarray) -> np.ndarray:
        ix = np.clip((points[..., 0] / res).astype(np.int64), 0, w - 1)
        iy = np.clip((points[..., 1] / res).astype(np.int64), 0, h - 1)
        return np.asarray(mask[iy, ix].any(axis=-1))
    return wet


def _sweep(r: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Convex hexagons swept by rectangles ``r`` (K, 4, 2) moved along ``off`` (K, 2): the 8 corners less
    the original corner furthest along ``off`` and the moved corner furthest against it, by angle."""
    k = np.arange(len(r))
    d = np.einsum("kij,kj->ki", r, off)
    pts = np.concatenate([r, r + off[:, None, :]], axis=1)
    keep = np.ones((len(r), 8), bool)
    keep[k, d.argmax(axis=1)] = False
    keep[k, 4 + d.argmin(axis=1)] = False
    hexa = pts[keep].reshape(len(r), 6, 2)
    c = hexa.mean(axis=1, keepdims=True)
    order = np.argsort(np.arctan2(hexa[..., 1] - c[..., 1], hexa[..., 0] - c[..., 0]), axis=1)
    return np.take_along_axis(hexa, order[..., None], axis=1)


def _shadows(buildings: Layer, heights: np.ndarray, trees: Layer, sun: np.ndarray) -> tuple[Layer, Layer]:
    """Shadow polygons: each building swept along its sun offset, each crown shifted."""
    b = buildings.polys.astype(np.float64)
    bshadow = Layer(_sweep(b, heights[:, None] * 0.8 * sun) if len(b) else np.zeros((0, 6, 2)),
                    np.full(len(b), 120, np.uint8), shadow=True, overlap=True)
    t = trees.polys
    r = np.linalg.norm(t[:, 0] - t.mean(axis=1), axis=1) if len(t) else np.zeros(0)
    tshadow = Layer(t + (r * 1.1)[:, None, None] * sun, np.full(len(t), 135, np.uint8), shadow=True,
                    overlap=True)
    return bshadow, tshadow


def build_world(p: WorldParams) -> tuple[list[Layer], float]:
    """The scene's layers in paint order (see module doc; polygons outside the frame are dropped) and the
    street grid's angle (radians, also the direction of field rows)."""
    rng = np.random.default_rng(p.seed)
    theta = rng.uniform(-0.6, 0.6)
    e1, e2 = np.array([math.cos(theta), math.sin(theta)]), np.array([-math.sin(theta), math.cos(theta)])
    centre = np.array([p.width_m / 2, p.height_m / 2])

    def to_xy(uv: np.ndarray) -> np.ndarray:
        return centre + uv[..., :1] * e1 + uv[..., 1:2] * e2

    radius = math.hypot(p.width_m, p.height_m) / 2 + 80
    acc = Acc()
    _cells(rng, acc, p, to_xy, radius)
    layers: dict[str, Layer] = {}
    for name in acc.ORDER:
        parts = acc.parts[name]
        by_n: dict[int, list] = {}
        for polys, cols in parts:
            by_n.setdefault(polys.shape[1], []).append((polys, cols))
        if len(by_n) > 1:
            raise AssertionError(f"layer {name} mixes vertex counts")
        polys = np.concatenate([q for q, _ in parts]) if parts else np.zeros((0, 4, 2))
        cols = np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.uint8)
        layers[name] = Layer(to_xy(polys) if len(polys) else polys, cols)
    heights = np.concatenate(acc.heights) if acc.heights else np.zeros(0)
    wet = _water_mask((layers["water"], layers["lake"]), p.width_m, p.height_m)
    dry_b = ~wet(layers["building"].polys)
    layers["building"] = Layer(layers["building"].polys[dry_b], layers["building"].cols[dry_b])
    gable = layers["gable"]
    layers["gable"] = Layer(gable.polys[~wet(gable.polys)], gable.cols[~wet(gable.polys)])
    trees = layers["tree"]
    dry_t = ~wet(trees.polys.mean(axis=1, keepdims=True))
    layers["tree"] = Layer(trees.polys[dry_t], trees.cols[dry_t])
    az = rng.uniform(0, 2 * np.pi)
    sun = np.array([math.cos(az), math.sin(az)])
    layers["building_shadow"], layers["tree_shadow"] = _shadows(layers["building"], heights[dry_b],
                                                                layers["tree"], sun)
    inside = [Layer(lay.polys[_in_frame(lay, p)], lay.cols[_in_frame(lay, p)], lay.shadow,
                    lay.shadow or name in OVERLAPPING) for name, lay in ((k, layers[k]) for k in acc.ORDER)]
    return [lay for lay in inside if len(lay.cols)], theta


def _in_frame(layer: Layer, p: WorldParams) -> np.ndarray:
    b = layer.bbox
    return (b[:, 2] >= 0) & (b[:, 0] <= p.width_m) & (b[:, 3] >= 0) & (b[:, 1] <= p.height_m)
