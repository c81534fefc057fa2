"""A demo scene as vectors in metres: a rotated street grid with avenues, water, city blocks (:mod:`.blocks`),
buildings that keep clear of roads and water, and an optional nodata border.

The frame is x east, y south, origin at the scene's top-left corner; :mod:`oem_demo.render` rasterises it.
Every random draw comes from the scene's generator in a fixed order (the world is a pure function of it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from oem_demo.blocks import Frame, blob, lay_out_blocks
from oem_demo.scenes import DemoScene

#: Roof colours per biome (natural colours, not the label palette).
ROOFS = {
    "temperate": [(162, 82, 62), (126, 126, 132), (208, 208, 204), (72, 74, 80), (118, 92, 74), (110, 126, 142)],
    "arid": [(214, 206, 190), (186, 170, 148), (160, 84, 64), (132, 132, 136), (226, 222, 214)],
    "tropical": [(146, 102, 70), (170, 86, 62), (128, 132, 138), (196, 196, 192), (96, 110, 128)],
}
#: Street spacing range (m) per style.
BLOCK = {"dense": (60, 100), "suburban": (85, 140), "periurban": (110, 190), "rural": (150, 260)}


@dataclass
class World:
    wm: float
    hm: float
    landuse: list            # (class, Nx2 metres, colour)
    parcels: list            # (Nx2 metres, colour, angle, spacing)
    hedges: list             # Nx2 metres
    water: list              # Nx2 metres (exteriors)
    roads: list              # (polygon Nx2 metres, centreline Mx2, main, shapely polygon)
    buildings: np.ndarray    # (K, 4, 2) metres
    roofs: list              # (colour, gable, height)
    tree_density: list       # (Nx2 metres, density)
    valid: np.ndarray | None  # Nx2 metres of the valid-area polygon, None = whole frame
    shadow_dir: tuple[float, float]


def _street_lines(rng: np.random.Generator, rad: float, spacing_lo: float, spacing_hi: float
                  ) -> tuple[list[float], list[float]]:
    """Positions and widths of parallel streets across ``[-rad, rad]``; every 4th is a main street."""
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


def _sine_line(rng: np.random.Generator, o: np.ndarray, d: np.ndarray, nrm: np.ndarray, rad: float, n: int,
               amp: tuple[float, float], lam: tuple[float, float]) -> np.ndarray:
    """``n`` points of a sinuous line through ``o`` along ``d`` (random amplitude, wavelength and phase)."""
    t = np.linspace(-rad * 1.2, rad * 1.2, n)
    a, wl, ph = rng.uniform(*amp), rng.uniform(*lam), rng.uniform(0, 2 * np.pi)
    return o + t[:, None] * d + (a * np.sin(2 * np.pi * t / wl + ph))[:, None] * nrm


def _roads(rng: np.random.Generator, frame: Frame, style: str, streets_u: tuple[list[float], list[float]],
           streets_v: tuple[list[float], list[float]]) -> tuple[list, list[bool], list[bool]]:
    """The road polygons (the kept streets, a diagonal avenue, a curved road) and which streets were kept."""
    wm, hm, centre, e1, e2, rad = frame.wm, frame.hm, frame.centre, frame.e1, frame.e2, frame.rad
    roads: list = []
    frame_box = shapely.box(0, 0, wm, hm)

    def add_road(pts: np.ndarray, width: float, main: bool) -> None:
        poly = LineString(pts).buffer(width / 2, cap_style="flat", join_style="round", quad_segs=4)
        if poly.geom_type != "Polygon" or not poly.intersects(frame_box):
            return
        roads.append((np.asarray(poly.exterior.coords), pts, main, poly))

    (upos, uw), (vpos, vw) = streets_u, streets_v
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
        ang = frame.theta + math.pi / 4 + rng.uniform(-0.2, 0.2)
        d = np.array([math.cos(ang), math.sin(ang)])
        o = centre + rng.uniform(-0.3, 0.3, 2) * np.array([wm, hm])
        add_road(np.array([o - 2 * rad * d, o + 2 * rad * d]), rng.uniform(9, 12), True)
    if rng.random() < 0.6:  # a curved road
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        o = centre + rng.uniform(-0.25, 0.25, 2) * np.array([wm, hm])
        pts = _sine_line(rng, o, d, nrm, rad, 160, (25, 70), (250, 600))
        add_road(pts, rng.uniform(6, 9), False)
    return roads, keep_u, keep_v


def _water(rng: np.random.Generator, frame: Frame, style: str) -> list:
    """A lake and/or a river (exterior rings in metres)."""
    wm, hm = frame.wm, frame.hm
    water: list = []
    if rng.random() < (0.55 if style in ("rural", "periurban") else 0.4):
        r = rng.uniform(0.05, 0.12) * min(wm, hm) + 10
        water.append(blob(rng, rng.uniform(0.2, 0.8) * wm, rng.uniform(0.2, 0.8) * hm, r))
    if rng.random() < 0.35:
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        o = frame.centre + rng.uniform(-0.35, 0.35) * min(wm, hm) * nrm
        pts = _sine_line(rng, o, d, nrm, frame.rad, 200, (15, 60), (300, 900))
        river = LineString(pts).buffer(rng.uniform(8, 22), cap_style="flat", quad_segs=4)
        if river.geom_type == "Polygon":
            water.append(np.asarray(river.exterior.coords))
    return water


def _valid_area(rng: np.random.Generator, wm: float, hm: float, gsd: float) -> np.ndarray:
    """A wavy inset polygon: the valid (non-nodata) part of a scene with a nodata border."""
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
    return valid


def _keep_buildings(cands: list, roads: list, water: list, valid: np.ndarray | None, wm: float, hm: float,
                    gsd: float) -> tuple[np.ndarray, list, list]:
    """``(buildings, roofs, driveways)`` of the candidates wholly inside the image and its valid area and
    clear of roads (1 m) and water (2 m)."""
    buildings = np.zeros((0, 4, 2))
    roofs: list = []
    drives: list = []
    if not cands:
        return buildings, roofs, drives
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
    return rects[inside], roofs, drives


def make_world(rng: np.random.Generator, sc: DemoScene, w: int, h: int, gsd: float, lat: float) -> World:
    """The vector world of one ``w`` x ``h`` pixel scene file at ``gsd`` (m) and latitude ``lat``."""
    wm, hm = w * gsd, h * gsd
    style = sc.style
    theta = rng.uniform(-0.5, 0.5)
    frame = Frame(wm=wm, hm=hm, centre=np.array([wm / 2, hm / 2]), e1=np.array([math.cos(theta), math.sin(theta)]),
                  e2=np.array([-math.sin(theta), math.cos(theta)]), theta=theta, rad=math.hypot(wm, hm) / 2 + 60)
    lo, hi = BLOCK[style]
    upos, uw = _street_lines(rng, frame.rad, lo, hi)
    vpos, vw = _street_lines(rng, frame.rad, lo * 1.2, hi * 1.4)
    roads, keep_u, keep_v = _roads(rng, frame, style, (upos, uw), (vpos, vw))
    water = _water(rng, frame, style)
    edges_u = [(p - wd / 2, p + wd / 2) if k else None for p, wd, k in zip(upos, uw, keep_u)]
    edges_v = [(p - wd / 2, p + wd / 2) if k else None for p, wd, k in zip(vpos, vw, keep_v)]
    blocks = lay_out_blocks(rng, frame, style, ROOFS[sc.biome], edges_u, edges_v, water)
    valid = _valid_area(rng, wm, hm, gsd) if sc.nodata != "none" else None
    buildings, roofs, drives = _keep_buildings(blocks.cands, roads, water, valid, wm, hm, gsd)
    landuse = blocks.landuse
    for d in drives:
        landuse.append((3, d, (150, 148, 142)))
    sun = rng.uniform(-0.6, 0.6) + (-math.pi / 2 if lat >= 0 else math.pi / 2)  # shadows point poleward
    return World(wm, hm, landuse, blocks.parcels, blocks.hedges, water, roads, buildings, roofs,
                 blocks.tree_density, valid, (math.cos(sun), math.sin(sun)))
