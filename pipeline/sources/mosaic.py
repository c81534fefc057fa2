"""Chips of one source that lie side by side on one pixel grid, joined into mosaic scenes (``options.mosaic``).

Datasets cut into chips smaller than a release tile (SpaceNet 2's 650 px at 0.3 m: 195 m, where a 1024 px tile
at 0.3 m is 307 m; SpaceNet 1's 438 px at 0.5 m) yield no tile chip by chip: every chip would be a reject
("smaller than one 1024x1024 tile").  Joined with their neighbours, they are tiled like any large scene.

Rules (:func:`mosaic_scenes`):

* candidates: scenes with their own georeference (no ``georef``), no land-cover raster and no building mask
  (their labels would need a mosaic of their own; they stay as they are), north-up (no rotation), readable as a
  GeoTIFF; the others are kept unchanged;
* chips join when they share a region hint, CRS, pixel size (10 significant digits), band count, data type,
  nodata value and colour interpretation, lie on one pixel lattice (origins whole pixels apart, within 1 % of a
  pixel) and touch or overlap; a mosaic spans at most :data:`MOSAIC_BLOCK` pixels of that lattice each way (chips
  are grouped by the block their origin falls in), so that a large area makes several scenes, tiled in parallel;
* a group of one chip stays as it was; a group of several becomes one scene, id ``<first chip id>-mosaic<n>``
  (n chips), whose ``image`` is its first chip (named in its rejects) and whose ``extra["mosaic"]`` records the
  grid and every chip (path, offset, size, footprints): :func:`pipeline.raster.reading.open_scene` reads it as a
  VRT of the chips, uncovered pixels nodata (the chips' masks are its mask), and
  :func:`pipeline.sources.footprints.load_footprints` reads the footprints of every chip.

Where chips overlap, the later chip (in scene-id order) wins.  Nothing is written: the catalog record holds it all.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from pipeline.scene import Scene
from pipeline.sources.localfs import raster_driver

#: The most pixels of the chips' lattice a mosaic spans each way (8192 px: 2.5 km at 0.3 m, 7 tiles of 1024 px).
MOSAIC_BLOCK = 8192
#: The kinds whose chips are joined unless ``options.mosaic: false``: SpaceNet ships 200 m chips.
MOSAIC_KINDS = ("spacenet",)
#: How far from whole pixels two chips' origins may be to join (a share of a pixel).
LATTICE_TOLERANCE = 0.01


@dataclass(frozen=True)
class _Chip:
    scene: Scene
    kind: tuple
    a: float
    e: float
    c: float
    f: float
    width: int
    height: int
    header: dict[str, Any]


def chip_of(scene: Scene) -> _Chip | None:
    """The grid and band layout of a candidate chip (module docstring), or None when it is not one."""
    if scene.georef is not None or scene.landcover or scene.building_mask or raster_driver(scene.image) != "GTiff":
        return None
    try:
        with rasterio.open(scene.image, driver="GTiff") as ds:
            t = ds.transform
            if ds.crs is None or t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
                return None
            header = {"crs": ds.crs.to_wkt(), "count": ds.count, "dtype": ds.dtypes[0],
                      "nodata": None if ds.nodata is None or math.isnan(ds.nodata) else float(ds.nodata),
                      "colorinterp": [ci.name for ci in ds.colorinterp]}
            if len(set(ds.dtypes)) != 1:
                return None
            size = (ds.width, ds.height)
    except (RasterioError, OSError):
        return None  # the raster stage names the problem when it plans the chip
    kind = (scene.region_hint, header["crs"], f"{t.a:.10g}", f"{t.e:.10g}", header["count"], header["dtype"],
            header["nodata"], tuple(header["colorinterp"]))
    return _Chip(scene, kind, t.a, t.e, t.c, t.f, size[0], size[1], header)


def _groups(chips: Sequence[_Chip]) -> list[list[tuple[_Chip, int, int]]]:
    """Chips of one kind in groups that touch or overlap on one lattice, within one block; with their pixel
    offsets from the lattice origin."""
    ref = chips[0]
    x0, y0 = min(ch.c for ch in chips), max(ch.f for ch in chips)
    placed: dict[tuple[int, int], list[tuple[_Chip, int, int]]] = defaultdict(list)
    alone: list[list[tuple[_Chip, int, int]]] = []
    for ch in chips:
        px, py = (ch.c - x0) / ref.a, (ch.f - y0) / ref.e
        if abs(px - round(px)) > LATTICE_TOLERANCE or abs(py - round(py)) > LATTICE_TOLERANCE:
            alone.append([(ch, 0, 0)])
            continue
        placed[(round(px) // MOSAIC_BLOCK, round(py) // MOSAIC_BLOCK)].append((ch, round(px), round(py)))
    out = []
    for block in (placed[k] for k in sorted(placed)):
        out.extend(_touching(block))
    return out + alone


def _touching(block: list[tuple[_Chip, int, int]]) -> list[list[tuple[_Chip, int, int]]]:
    """The chips of one block in groups that touch or overlap (connected components, in block order)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = [(i, j) for i, (a, ax, ay) in enumerate(block) for j, (b, bx, by) in enumerate(block[i + 1:], i + 1)
             if ax <= bx + b.width and bx <= ax + a.width and ay <= by + b.height and by <= ay + a.height]
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    graph = coo_matrix(([1] * len(pairs), (rows, cols)), shape=(len(block), len(block)))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[tuple[_Chip, int, int]]] = defaultdict(list)
    for item, component in zip(block, label):
        members[int(component)].append(item)
    return list(members.values())


def _mosaic(group: list[tuple[_Chip, int, int]]) -> Scene:
    """One scene of a group of several chips (module docstring)."""
    group = sorted(group, key=lambda item: item[0].scene.scene_id)
    first = group[0][0]
    left, top = min(x for _, x, _ in group), min(y for _, _, y in group)
    right = max(x + ch.width for ch, x, _ in group)
    bottom = max(y + ch.height for ch, _, y in group)
    chips = [{"image": ch.scene.image, "scene_id": ch.scene.scene_id, "x": x - left, "y": y - top,
              "width": ch.width, "height": ch.height, "footprints": ch.scene.footprints,
              "footprints_crs": ch.scene.footprints_crs} for ch, x, y in group]
    _, fx, fy = group[0]
    origin = (first.c + (left - fx) * first.a, first.f + (top - fy) * first.e)
    mosaic = {**first.header, "width": right - left, "height": bottom - top,
              "transform": [first.a, 0.0, origin[0], 0.0, first.e, origin[1]], "chips": chips}
    return replace(first.scene, scene_id=f"{first.scene.scene_id}-mosaic{len(group)}",
                   extra={**(first.scene.extra or {}), "mosaic": mosaic})


def mosaic_wanted(kind: str, options: dict[str, Any] | None) -> bool:
    """Whether a source's chips are joined: ``options.mosaic``, else for the kinds in :data:`MOSAIC_KINDS`."""
    value = (options or {}).get("mosaic")
    return kind in MOSAIC_KINDS if value is None else bool(value)


def mosaic_scenes(scenes: Sequence[Scene]) -> list[Scene]:
    """``scenes`` with the chips that lie side by side joined into mosaics (module docstring), sorted by id."""
    return join_chips(scenes, [chip_of(s) for s in scenes])


def join_chips(scenes: Sequence[Scene], chips: Sequence[_Chip | None]) -> list[Scene]:
    """:func:`mosaic_scenes` of ``scenes`` whose headers are read (``chips``: :func:`chip_of` of each)."""
    by_kind: dict[tuple, list[_Chip]] = defaultdict(list)
    kept: list[Scene] = []
    for scene, chip in zip(scenes, chips):
        if chip is None:
            kept.append(scene)
        else:
            by_kind[chip.kind].append(chip)
    for kind in sorted(by_kind, key=repr):
        for group in _groups(sorted(by_kind[kind], key=lambda ch: ch.scene.scene_id)):
            kept.append(group[0][0].scene if len(group) == 1 else _mosaic(group))
    return sorted(kept, key=lambda s: s.scene_id)


def mosaic_contained(scenes: Sequence[Scene], root: str) -> list[Scene]:
    """:func:`mosaic_scenes` with the chips' headers read in a forked child (:func:`pipeline.forked.contained`:
    GDAL decodes files a source controls).  When a chip kills it, the headers are read chip by chip, each in a
    child of its own, and a chip that kills its child stays a scene of its own (its PrepareScene names it): one
    bad chip costs only itself."""
    from pipeline import forked
    from pipeline.errors import SceneRejected

    try:
        return forked.contained(mosaic_scenes, scenes, file=root)
    except SceneRejected:
        pass
    chips: list[_Chip | None] = []
    for scene in scenes:
        try:
            chips.append(forked.contained(chip_of, scene, file=scene.image))
        except SceneRejected:
            chips.append(None)
    return join_chips(scenes, chips)
