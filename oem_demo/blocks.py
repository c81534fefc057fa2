"""City blocks of a demo world: the land use of each block between the streets, field parcels and hedgerows,
park lakes, and building candidates along the block edges (vectors in metres, see :mod:`oem_demo.world`).

Every random draw comes from the scene's generator in a fixed order, so a block layout is a pure function
of the generator's state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Colours of crops and paving (natural colours, not the label palette).
CROPS = [(86, 126, 56), (178, 164, 100), (126, 102, 76), (132, 152, 80), (150, 140, 88)]
PAVING = [(160, 158, 152), (96, 96, 98), (172, 152, 132), (140, 140, 138)]

#: Block land-use probabilities per style.
LANDUSE = {
    "dense": {"urban": 0.55, "parking": 0.1, "park": 0.1, "residential": 0.17, "bare": 0.05, "forest": 0.03},
    "suburban": {"residential": 0.55, "urban": 0.1, "park": 0.1, "parking": 0.05, "bare": 0.07, "forest": 0.06,
                 "fields": 0.07},
    "periurban": {"residential": 0.32, "fields": 0.28, "bare": 0.1, "park": 0.1, "forest": 0.08, "urban": 0.07,
                  "parking": 0.05},
    "rural": {"fields": 0.55, "forest": 0.1, "farmstead": 0.22, "bare": 0.05, "park": 0.08},
}
#: Tree cover density per land use.
TREE_DENSITY = {"urban": 0.05, "parking": 0.03, "park": 0.35, "residential": 0.2, "bare": 0.03, "forest": 0.9,
                "fields": 0.0, "farmstead": 0.25}
#: Building rules per land use: width, depth, setback, gap and height ranges (m), number of block edges built.
BUILDING_RULES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float],
                                tuple[float, float], tuple[float, float], int]] = {
    "urban": ((12, 40), (12, 24), (0.5, 3), (0.5, 4), (8, 40), 4),
    "residential": ((8, 16), (8, 14), (3.5, 8), (3, 9), (3, 8), 4),
    "parking": ((25, 40), (18, 35), (6, 14), (15, 40), (6, 12), 1),
    "farmstead": ((8, 30), (8, 18), (6, 20), (6, 30), (4, 9), 2),
    "bare": ((8, 20), (8, 14), (5, 15), (15, 60), (3, 6), 1),
}

Box = tuple[float, float, float, float]  # (umin, vmin, umax, vmax) in block (street) coordinates
#: A building candidate: (corners 4x2, roof colour, gable, height, driveway corners or None).
Candidate = tuple[np.ndarray, tuple[int, int, int], bool, float, np.ndarray | None]


@dataclass(frozen=True)
class Frame:
    """A scene's street-aligned frame: ``at(u, v)`` is the point ``u`` metres along the first street direction
    ``e1`` and ``v`` along the second ``e2`` from the scene centre; streets extend to ``rad`` either side."""

    wm: float
    hm: float
    centre: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    theta: float
    rad: float

    def at(self, u: float, v: float) -> np.ndarray:
        return self.centre + u * self.e1 + v * self.e2

    def rect(self, box: Box) -> np.ndarray:
        """The four corners of a block-coordinate box, in metres."""
        ua, va, ub, vb = box
        return np.array([self.at(ua, va), self.at(ub, va), self.at(ub, vb), self.at(ua, vb)])


@dataclass
class BlockLayers:
    """What the blocks contribute to the world (see :class:`oem_demo.world.World`)."""

    landuse: list = field(default_factory=list)
    parcels: list = field(default_factory=list)
    hedges: list = field(default_factory=list)
    tree_density: list = field(default_factory=list)
    cands: list[Candidate] = field(default_factory=list)


def choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 72) -> np.ndarray:
    """A smooth irregular closed blob (lake) of mean radius ``r``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in (2, 3, 5):
        rad += rng.uniform(0.05, 0.18) / (k / 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return np.stack([cx + r * rad * np.cos(t), cy + r * rad * np.sin(t)], 1)


def _fields(rng: np.random.Generator, frame: Frame, u0: float, u1: float, v0: float, v1: float,
            layers: BlockLayers) -> None:
    """Crop strips across the longer side of a block, some split in two, some bare, some with a hedgerow."""
    lu, lv = u1 - u0, v1 - v0
    along_u = lu >= lv
    length = lu if along_u else lv
    t = 0.0
    while t < length - 8:
        sw = min(rng.uniform(25, 70), length - t)
        a0, a1 = t + 1.0, t + sw - 1.0
        splits = [(0.0, 1.0)] if rng.random() < 0.6 else [(0.0, 0.5), (0.5, 1.0)]
        for s0, s1 in splits:
            if along_u:
                box = (u0 + a0, v0 + s0 * lv + 1, u0 + a1, v0 + s1 * lv - 1)
            else:
                box = (u0 + s0 * lu + 1, v0 + a0, u0 + s1 * lu - 1, v0 + a1)
            pc = frame.rect(box)
            r = rng.random()
            if r < 0.82:
                ang = frame.theta + (0.0 if rng.random() < 0.5 else math.pi / 2)
                layers.parcels.append((pc, CROPS[int(rng.integers(len(CROPS)))], ang, rng.uniform(1.6, 4.0)))
            elif r < 0.9:
                layers.landuse.append((1, pc, None))
            if rng.random() < 0.25:  # hedgerow along the parcel's first side
                hw = rng.uniform(3, 6)
                layers.hedges.append(np.array([pc[0], pc[1], pc[1] + (pc[2] - pc[1]) / np.linalg.norm(
                    pc[2] - pc[1]) * hw, pc[0] + (pc[3] - pc[0]) / np.linalg.norm(pc[3] - pc[0]) * hw]))
        t += sw


def _ground(rng: np.random.Generator, frame: Frame, use: str, u0: float, u1: float, v0: float, v1: float,
            layers: BlockLayers) -> None:
    """The block's ground cover: paved up to the kerb (urban, parking), bare inset, or fields."""
    if use in ("urban", "parking"):  # paved up to the kerb (sidewalks included)
        paved = frame.rect((u0 - 1.6, v0 - 1.6, u1 + 1.6, v1 + 1.6))
        layers.landuse.append((3, paved, PAVING[int(rng.integers(len(PAVING)))]))
    elif use == "bare":
        layers.landuse.append((1, frame.rect((u0 + 2, v0 + 2, u1 - 2, v1 - 2)), None))
    elif use == "fields":
        _fields(rng, frame, u0, u1, v0, v1, layers)


def _overlaps(box: Box, placed: list[Box]) -> bool:
    return any(box[0] < p[2] + 1.0 and p[0] < box[2] + 1.0 and box[1] < p[3] + 1.0 and p[1] < box[3] + 1.0
               for p in placed)


def _edge_box(side: int, t: float, bw: float, bd: float, s: float, u0: float, u1: float, v0: float,
              v1: float) -> Box:
    """The block-local box of a building ``t`` metres along block edge ``side`` (0: along u at v0, inward
    +v; 2: along u at v1; 1: along v at u1, inward -u; 3: along v at u0), set back ``s``."""
    if side == 0:
        return (u0 + t, v0 + s, u0 + t + bw, v0 + s + bd)
    if side == 2:
        return (u0 + t, v1 - s - bd, u0 + t + bw, v1 - s)
    if side == 1:
        return (u1 - s - bd, v0 + t, u1 - s, v0 + t + bw)
    return (u0 + s, v0 + t, u0 + s + bd, v0 + t + bw)


def _driveway(frame: Frame, side: int, box: Box, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """A 3.2 m wide driveway from the street to the middle of the building's street side."""
    ua, va, ub, vb = box
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
    return frame.rect(db)


def _buildings(rng: np.random.Generator, frame: Frame, use: str, roofs: list, u0: float, u1: float, v0: float,
               v1: float, cands: list[Candidate]) -> None:
    """Building candidates along the block's edges (and one in the middle of large urban blocks)."""
    wr, dr, sb, gap, hr, n_edges = BUILDING_RULES[use]
    lu, lv = u1 - u0, v1 - v0
    placed: list[Box] = []
    for side in range(min(n_edges, 4)):
        length = lu if side in (0, 2) else lv
        t = rng.uniform(*gap)
        while True:
            bw, bd, s = rng.uniform(*wr), rng.uniform(*dr), rng.uniform(*sb)
            if t + bw > length - 1.0:
                break
            box = _edge_box(side, t, bw, bd, s, u0, u1, v0, v1)
            t += bw + rng.uniform(*gap)
            if box[0] < u0 + 0.3 or box[2] > u1 - 0.3 or box[1] < v0 + 0.3 or box[3] > v1 - 0.3:
                continue
            if _overlaps(box, placed):
                continue
            placed.append(box)
            drive = _driveway(frame, side, box, u0, u1, v0, v1) if use == "residential" and s > 3 else None
            cands.append((frame.rect(box), roofs[int(rng.integers(len(roofs)))],
                          use in ("residential", "farmstead") and rng.random() < 0.75,
                          rng.uniform(*hr), drive))
    if use == "urban" and lu > 70 and lv > 70 and rng.random() < 0.6:
        bw, bd = rng.uniform(15, min(40, lu - 50)), rng.uniform(12, min(30, lv - 50))
        uc, vc = (u0 + u1) / 2, (v0 + v1) / 2
        box = (uc - bw / 2, vc - bd / 2, uc + bw / 2, vc + bd / 2)
        if not _overlaps(box, placed):
            cands.append((frame.rect(box), roofs[int(rng.integers(len(roofs)))], False, rng.uniform(*hr), None))


def lay_out_blocks(rng: np.random.Generator, frame: Frame, style: str, roofs: list,
                   edges_u: list[tuple[float, float] | None], edges_v: list[tuple[float, float] | None],
                   water: list) -> BlockLayers:
    """Every block between the kept streets (``edges_*``: the kerb lines of each street, None = not kept), plus
    the land beyond the outermost streets; park lakes are appended to ``water``."""
    rad = frame.rad
    ku = [(-rad - 2.0, -rad - 1.5)] + [e for e in edges_u if e is not None] + [(rad + 1.5, rad + 2.0)]
    kv = [(-rad - 2.0, -rad - 1.5)] + [e for e in edges_v if e is not None] + [(rad + 1.5, rad + 2.0)]
    layers = BlockLayers()
    for i in range(len(ku) - 1):
        for j in range(len(kv) - 1):
            u0, u1 = ku[i][1] + 1.5, ku[i + 1][0] - 1.5
            v0, v1 = kv[j][1] + 1.5, kv[j + 1][0] - 1.5
            if u1 - u0 < 20 or v1 - v0 < 20:
                continue
            corners = np.array([frame.centre + u * frame.e1 + v * frame.e2
                                for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
            if corners[:, 0].max() < -20 or corners[:, 0].min() > frame.wm + 20 or corners[:, 1].max() < -20 \
                    or corners[:, 1].min() > frame.hm + 20:
                continue
            use = choice(rng, LANDUSE[style])
            layers.tree_density.append((corners, TREE_DENSITY[use]))
            lu, lv = u1 - u0, v1 - v0
            _ground(rng, frame, use, u0, u1, v0, v1, layers)
            if use == "park" and rng.random() < 0.3 and min(lu, lv) > 50:
                cx, cy = frame.at((u0 + u1) / 2, (v0 + v1) / 2)
                water.append(blob(rng, cx, cy, min(lu, lv) * 0.2, 48))
            if use in BUILDING_RULES:
                _buildings(rng, frame, use, roofs, u0, u1, v0, v1, layers.cands)
    return layers
