"""Land use of the scale generator's vector world: the cells between major roads, their blocks,
buildings, trees and field parcels, collected per paint layer in the rotated street frame (u, v).

Split from :mod:`oem_demo.scale.world` (which assembles the layers); everything is a pure function of
the random generator passed in.
"""
from __future__ import annotations

import itertools

import numpy as np

VARIANTS = 8
BUILDING, TREE, ROAD, WATER = 8, 5, 4, 6
#: Land-use probabilities by urbanity band (high to low) and biome adjustments.
_USE_BANDS = (
    (0.62, {"urban": 0.8, "industrial": 0.12, "park": 0.08}),
    (0.35, {"residential": 0.72, "urban": 0.1, "park": 0.1, "industrial": 0.08}),
    (0.15, {"fields": 0.38, "residential": 0.2, "forest": 0.1, "range": 0.16, "bare": 0.1, "farm": 0.06}),
    (-9.0, {"fields": 0.6, "forest": 0.12, "range": 0.12, "bare": 0.06, "farm": 0.1}),
)
_BIOME_USE = {"arid": {"fields": 0.7, "forest": 0.2, "bare": 2.0, "range": 1.4},
              "tropical": {"forest": 1.8, "range": 1.2}, "cold": {"forest": 2.0, "bare": 0.5},
              "temperate": {}}
OVERLAPPING = ("water", "lake", "road", "major", "tree")
_BASE = {"urban": 3, "industrial": 3, "park": 2, "residential": 2, "fields": 2, "forest": TREE,
         "range": 2, "bare": 1, "farm": 2}


class Acc:
    """Collects polygons per layer in the rotated (u, v) street frame."""

    ORDER = ("ground", "base", "inner", "parcel", "road", "paved", "water", "lake", "major", "tree_shadow",
             "building_shadow", "tree", "building", "gable")

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in self.ORDER}
        self.heights: list[np.ndarray] = []    # one array per "building" part: heights (m) for shadows

    def add(self, layer: str, polys: np.ndarray, cols) -> None:
        polys = np.asarray(polys, np.float64)
        if polys.size:
            self.parts[layer].append((polys.reshape(-1, polys.shape[-2], 2),
                                      np.broadcast_to(np.asarray(cols, np.uint8), (len(polys),))))


def rects(u0, v0, u1, v1) -> np.ndarray:
    """Axis-aligned rectangles in (u, v): arrays of corners -> (K, 4, 2)."""
    u0, v0, u1, v1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float64)) for a in (u0, v0, u1, v1)))
    return np.stack([np.stack([u0, v0], -1), np.stack([u1, v0], -1), np.stack([u1, v1], -1),
                     np.stack([u0, v1], -1)], axis=1)


def octagons(cu, cv, r) -> np.ndarray:
    """Regular octagons (tree crowns) -> (K, 8, 2)."""
    t = np.arange(8) * (np.pi / 4) + np.pi / 8
    return np.stack([cu[:, None] + r[:, None] * np.cos(t), cv[:, None] + r[:, None] * np.sin(t)], -1)


def blob(rng: np.random.Generator, cu: float, cv: float, r: float, n: int = 32) -> np.ndarray:
    """A smooth irregular closed blob of mean radius ``r`` -> (n, 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in (2, 3, 5):
        rad += rng.uniform(0.05, 0.2) / (k / 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return np.stack([cu + r * rad * np.cos(t), cv + r * rad * np.sin(t)], 1)


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def use_for(rng: np.random.Generator, urbanity: float, biome: str) -> str:
    probs = next(p for lo, p in _USE_BANDS if urbanity > lo)
    adj = _BIOME_USE.get(biome, {})
    return _choice(rng, {k: v * adj.get(k, 1.0) for k, v in probs.items()})


def grid_lines(rng: np.random.Generator, radius: float, lo: float, hi: float) -> np.ndarray:
    pos = [-radius - rng.uniform(0, hi)]
    while pos[-1] < radius:
        pos.append(pos[-1] + rng.uniform(lo, hi))
    return np.array(pos)


def _houses(rng, acc: Acc, u0, v0, u1, v1, *, width, depth, setback, gap, sides, gable_p) -> None:
    """Rows of buildings along the block's sides: all four (``sides == 4``, corners left to the rows
    along u) or the two long ones; a block too thin for two facing rows gets one."""
    lu, lv = u1 - u0, v1 - v0
    dmax = depth[1] + setback[1]
    four = sides == 4 and min(lu, lv) > 2 * dmax + 12
    order = (0, 2, 1, 3) if four else ((1, 3) if lv > lu else (0, 2))
    for side in order:
        if side in (2, 3) and min(lu, lv) < 2 * dmax + 4:
            continue
        reserve = 2 * dmax + 4 if four and side in (1, 3) else 0.0
        along = (lu if side in (0, 2) else lv) - reserve
        n = int(along / (width[0] + gap[0])) + 1
        w = rng.uniform(*width, n)
        start = np.cumsum(np.r_[rng.uniform(*gap), (w + rng.uniform(*gap, n))[:-1]])
        keep = start + w < along - 1
        w, start = w[keep], start[keep]
        d, s = rng.uniform(*depth, len(w)), rng.uniform(*setback, len(w))
        if side == 0:
            r = rects(u0 + start, v0 + s, u0 + start + w, v0 + s + d)
        elif side == 2:
            r = rects(u0 + start, v1 - s - d, u0 + start + w, v1 - s)
        else:
            a = v0 + reserve / 2 + start
            r = rects(u1 - s - d, a, u1 - s, a + w) if side == 1 else rects(u0 + s, a, u0 + s + d, a + w)
        _add_buildings(rng, acc, r, gable_p)


def _add_buildings(rng, acc: Acc, r: np.ndarray, gable_p: float) -> None:
    if not len(r):
        return
    v = rng.integers(0, 6, len(r))
    acc.add("building", r, BUILDING * VARIANTS + v)
    gab = rng.random(len(r)) < gable_p
    if gab.any():  # the half of the roof facing away from the sun, a darker shade of the same roof
        g = r[gab]
        long_u = (g[:, 1, 0] - g[:, 0, 0]) >= (g[:, 2, 1] - g[:, 1, 1])
        mid_v, mid_u = (g[:, 0, 1] + g[:, 2, 1]) / 2, (g[:, 0, 0] + g[:, 1, 0]) / 2
        half = np.where(long_u[:, None, None], rects(g[:, 0, 0], mid_v, g[:, 1, 0], g[:, 2, 1]),
                        rects(mid_u, g[:, 0, 1], g[:, 1, 0], g[:, 2, 1]))
        acc.add("gable", half, BUILDING * VARIANTS + 6 + (v[gab] % 2))
    acc.heights.append(rng.uniform(4, 12, len(r)) * (1 + 2 * (rng.random(len(r)) < 0.1)))


def _trees(rng, acc: Acc, u0, v0, u1, v1, density: float, rmin=2.0, rmax=5.0) -> None:
    area = max(0.0, (u1 - u0) * (v1 - v0))
    n = rng.poisson(density * area / 40.0)
    if n:
        cu, cv = rng.uniform(u0, u1, n), rng.uniform(v0, v1, n)
        acc.add("tree", octagons(cu, cv, rng.uniform(rmin, rmax, n)), TREE * VARIANTS + rng.integers(0, 4, n))


def _block(rng, acc: Acc, use: str, u0, v0, u1, v1) -> None:
    """One street block (interior, beyond the kerb) of an urban, residential or industrial cell."""
    acc.add("base", rects(u0 - 2, v0 - 2, u1 + 2, v1 + 2), 3 * VARIANTS + rng.integers(0, 2))
    if use == "urban":
        if min(u1 - u0, v1 - v0) > 70:
            acc.add("inner", rects(u0 + 24, v0 + 24, u1 - 24, v1 - 24), 2 * VARIANTS + 1)
        _houses(rng, acc, u0, v0, u1, v1, width=(12, 34), depth=(12, 22), setback=(0.3, 2), gap=(0.5, 4),
                sides=4, gable_p=0.1)
        _trees(rng, acc, u0 + 24, v0 + 24, u1 - 24, v1 - 24, 0.3, 2, 4)
    elif use == "residential":
        acc.add("inner", rects(u0, v0, u1, v1), 2 * VARIANTS + rng.integers(0, 3))
        _houses(rng, acc, u0, v0, u1, v1, width=(8, 15), depth=(8, 13), setback=(4, 9), gap=(4, 10),
                sides=2, gable_p=0.7)
        _trees(rng, acc, u0, v0, u1, v1, 0.15, 2, 5)
    else:  # industrial
        bw, bv = (u1 - u0) * rng.uniform(0.4, 0.8), (v1 - v0) * rng.uniform(0.4, 0.8)
        cu, cv = (u0 + u1) / 2 + rng.uniform(-5, 5), (v0 + v1) / 2 + rng.uniform(-5, 5)
        _add_buildings(rng, acc, rects(cu - bw / 2, cv - bv / 2, cu + bw / 2, cv + bv / 2), 0.0)
        _trees(rng, acc, u0, v0, u1, v1, 0.03)


def _fields(rng, acc: Acc, u0, v0, u1, v1, biome: str) -> None:
    """Strips across the longer side of a rural cell; most agriculture, some fallow / meadow."""
    along_u = (u1 - u0) >= (v1 - v0)
    length, across = (u1 - u0, v1 - v0) if along_u else (v1 - v0, u1 - u0)
    lo, hi = (10, 35) if biome == "tropical" else (20, 70)
    n = int(length / lo) + 1
    w = rng.uniform(lo, hi, n)
    a = np.cumsum(np.r_[0, w[:-1]])
    keep = a < length - 5
    a, w = a[keep], np.minimum(w[keep], length - a[keep])
    split = rng.random(len(a)) < 0.4
    s0 = np.r_[np.zeros(len(a)), np.full(split.sum(), 0.5)]
    s1 = np.r_[np.where(split, 0.5, 1.0), np.ones(split.sum())]
    a, w = np.r_[a, a[split]], np.r_[w, w[split]]
    p0, p1 = a + 1.0, a + w - 1.0
    q0, q1 = s0 * across + 1.0, s1 * across - 1.0
    r = rects(u0 + p0, v0 + q0, u0 + p1, v0 + q1) if along_u else rects(u0 + q0, v0 + p0, u0 + q1, v0 + p1)
    kind = rng.random(len(r))
    cls = np.where(kind < 0.78, 7, np.where(kind < 0.9, 1, 2))
    acc.add("parcel", r, cls * VARIANTS + rng.integers(0, 6, len(r)))


def cell(rng, acc: Acc, use: str, u0, v0, u1, v1, biome: str) -> None:
    """Fill one cell between major roads according to its land use (over a ground fill up to the roads)."""
    acc.add("ground", rects(u0 - 2, v0 - 2, u1 + 2, v1 + 2), _BASE[use] * VARIANTS)
    if use in ("urban", "residential", "industrial"):
        su = {"urban": (70, 115), "residential": (90, 150), "industrial": (120, 220)}[use]
        us, vs = [u0], [v0]
        while us[-1] + su[1] < u1:
            us.append(us[-1] + rng.uniform(*su))
        while vs[-1] + 1.6 * su[1] < v1:
            vs.append(vs[-1] + rng.uniform(1.4 * su[0], 1.6 * su[1]))
        us[-1:], vs[-1:] = [u1], [v1]
        ws = rng.uniform(6, 9)

        def inset(a: float, b: float, lo: float, hi: float) -> tuple[float, float]:
            """A block's extent between two streets (half a street + kerb), or up to the cell's edge."""
            return a + (ws / 2 + 2 if a > lo else 2), b - (ws / 2 + 2 if b < hi else 2)

        acc.add("road", rects(u0, np.array(vs[1:-1]) - ws / 2, u1, np.array(vs[1:-1]) + ws / 2), ROAD * VARIANTS)
        acc.add("road", rects(np.array(us[1:-1]) - ws / 2, v0, np.array(us[1:-1]) + ws / 2, v1), ROAD * VARIANTS)
        for a, b in itertools.pairwise(us):
            for c, d in itertools.pairwise(vs):
                kind = use if rng.random() > 0.05 else "industrial"
                (ba, bb), (bc, bd) = inset(a, b, u0, u1), inset(c, d, v0, v1)
                _block(rng, acc, kind, ba, bc, bb, bd)
        return
    acc.add("base", rects(u0, v0, u1, v1), _BASE[use] * VARIANTS + rng.integers(0, 3))
    if use in ("fields", "farm"):
        _fields(rng, acc, u0 + 3, v0 + 3, u1 - 3, v1 - 3, biome)
    if use == "farm":
        fu, fv = u0 + rng.uniform(10, max(11, u1 - u0 - 90)), v0 + rng.uniform(10, max(11, v1 - v0 - 70))
        acc.add("paved", rects(fu - 4, fv - 4, fu + 70, fv + 55), 3 * VARIANTS + 2)
        _houses(rng, acc, fu, fv, fu + 66, fv + 51, width=(8, 28), depth=(8, 16), setback=(2, 6),
                gap=(5, 14), sides=2, gable_p=0.6)
        _trees(rng, acc, fu - 10, fv - 10, fu + 80, fv + 65, 0.3)
    density = {"park": 0.35, "range": 0.04, "bare": 0.005, "forest": 0.0, "fields": 0.003, "farm": 0.0}[use]
    _trees(rng, acc, u0, v0, u1, v1, density, 1.5, 5)
    if use == "park" and rng.random() < 0.3:
        acc.add("lake", blob(rng, (u0 + u1) / 2, (v0 + v1) / 2, 0.18 * min(u1 - u0, v1 - v0))[None],
                WATER * VARIANTS)
