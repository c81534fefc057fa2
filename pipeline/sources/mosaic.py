"""Chips of one source that lie side by side on one pixel grid, joined into mosaic scenes (``options.mosaic``).

Datasets cut into chips smaller than a release tile (SpaceNet 2's 650 px at 0.3 m: 195 m, where a 1024 px tile
at 0.3 m is 307 m; SpaceNet 1's 438 px at 0.5 m) yield no tile chip by chip: every chip would be a reject
("smaller than one 1024x1024 tile").  Joined with their neighbours, they are tiled like any large scene.

Rules (:func:`mosaic_scenes`):

* candidates: scenes with their own georeference (no ``georef``), no building mask, north-up (no rotation),
  readable as a GeoTIFF, whose land-cover raster, if any, is a GeoTIFF of the image's size (ISPRS Vaihingen's
  labelled patches: :func:`pipeline.labels.landcover.write_label_tiles` reads a mosaic's labels as one too, each
  checked against its chip); the others are kept unchanged;
* chips join when they share a region hint, CRS, pixel size (10 significant digits), band count, data type, nodata
  value, colour interpretation and label layout (none, or its bands and data type), lie on one pixel lattice
  (origins whole pixels apart, within 1 % of a pixel) and touch or overlap. A lattice spanning more than one
  :data:`MOSAIC_BLOCK` (8192 px) each way makes a mosaic per block and group, so that a large area makes several
  scenes, tiled in parallel: its chips within :data:`MOSAIC_HALO` of the block, with the block as its ``core``.
  Every such mosaic is tiled on one lattice anchored at the corner of the chips' area, and makes the tiles whose
  centre is in its core (:func:`pipeline.raster.tiling.tile_jobs`): the tiles of neighbouring blocks meet, with no
  strip lost between them and none made twice;
* a group of one chip stays as it was; a group of several becomes one scene, id ``<first chip id>-mosaic<n>`` (n
  chips; the first whose origin is in the core's block), whose ``image`` is its first chip (named in its rejects)
  and whose ``extra["mosaic"]`` records the grid and every chip (path, offset, size, footprints):
  :func:`pipeline.raster.reading.open_scene` reads it as a VRT of the chips, uncovered pixels nodata (the chips'
  masks are its mask), and :func:`pipeline.sources.footprints.load_footprints` reads the footprints of every chip.

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

from pipeline.scene import Scene, grid_mismatch
from pipeline.sources.localfs import raster_driver

#: The most pixels of the chips' lattice a mosaic spans each way (8192 px: 2.5 km at 0.3 m, 7 tiles of 1024 px).
MOSAIC_BLOCK = 8192
#: How far beyond its block a mosaic of a lattice spanning several blocks reaches (px; at least a chip's size and
#: half a 1024 px tile at 0.5 m): the tiles centred in the block are read whole (a 1024 px tile at 0.5 m from
#: 0.3 m chips spans 1707 chip pixels).
MOSAIC_HALO = 2048
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


def _label_layout(scene: Scene, image: Any) -> tuple | None:
    """``(band count, data type)`` of a chip's land-cover raster, () without one; None when it is not a GeoTIFF of
    the chip's ``image``'s size and place (its own georeference, if any, as the label stage checks it:
    :func:`pipeline.scene.grid_mismatch`), one band or uint8 RGB(A): the chip stays a scene of its own, whose label
    stage names the problem, and costs only itself."""
    if not scene.landcover:
        return ()
    if raster_driver(scene.landcover) != "GTiff":
        return None
    with rasterio.open(scene.landcover, driver="GTiff") as lbl:
        placed = (lbl.crs is None or lbl.crs == image.crs) and grid_mismatch(
            lbl.transform, lbl.width, lbl.height, image.transform) is None
        bands = lbl.count == 1 or (lbl.count in (3, 4) and lbl.dtypes[0] == "uint8")
        ok = (lbl.width, lbl.height) == (image.width, image.height) and len(set(lbl.dtypes)) == 1
        return (lbl.count, lbl.dtypes[0]) if placed and bands and ok else None


def chip_of(scene: Scene) -> _Chip | None:
    """The grid and band layout of a candidate chip (module docstring), or None when it is not one."""
    if scene.georef is not None or scene.building_mask or raster_driver(scene.image) != "GTiff":
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
            labels = _label_layout(scene, ds)
    except (RasterioError, OSError):
        return None  # the raster stage names the problem when it plans the chip
    if labels is None:
        return None
    kind = (scene.region_hint, header["crs"], f"{t.a:.10g}", f"{t.e:.10g}", header["count"], header["dtype"],
            header["nodata"], tuple(header["colorinterp"]), labels)
    return _Chip(scene, kind, t.a, t.e, t.c, t.f, size[0], size[1], header)


_Placed = tuple[_Chip, int, int]


def _groups(chips: Sequence[_Chip]) -> list[tuple[list[_Placed], dict | None, _Chip]]:
    """Chips of one kind in groups that touch or overlap on one lattice, with their pixel offsets from the lattice
    origin; each with its tiling core (None when all of them lie in one block: :func:`_blocks`) and the chip that
    names it (its first, or its first whose origin is in the core's block)."""
    ref = chips[0]
    x0, y0 = min(ch.c for ch in chips), max(ch.f for ch in chips)
    placed: list[_Placed] = []
    alone: list[tuple[list[_Placed], dict | None, _Chip]] = []
    for ch in chips:
        px, py = (ch.c - x0) / ref.a, (ch.f - y0) / ref.e
        if abs(px - round(px)) > LATTICE_TOLERANCE or abs(py - round(py)) > LATTICE_TOLERANCE:
            alone.append(([(ch, 0, 0)], None, ch))
            continue
        placed.append((ch, round(px), round(py)))
    blocks = {(x // MOSAIC_BLOCK, y // MOSAIC_BLOCK) for _, x, y in placed}
    if len(blocks) <= 1:
        return [(group, None, min((ch for ch, _, _ in group), key=_sid)) for group in _touching(placed)] + alone
    return _blocks(placed, sorted(blocks), (x0, y0, ref.a, ref.e)) + alone


def _blocks(placed: list[_Placed], blocks: list[tuple[int, int]], lattice: tuple[float, float, float, float]
            ) -> list[tuple[list[_Placed], dict | None, _Chip]]:
    """The groups of a lattice spanning several blocks: per block, the chips that reach within
    :data:`MOSAIC_HALO` pixels of it (at least a chip's size), in groups that touch, each holding a chip whose
    origin is in the block; its ``core`` is the block's rectangle (in the chips' CRS) and its ``area`` the
    bounds of all the chips: the tiles of every block lie on one lattice anchored at its corner, and each is made by
    the block its
    centre is in (:mod:`pipeline.raster.tiling`), so no strip between blocks is lost and no tile made twice."""
    x0, y0, a, e = lattice
    halo = max([MOSAIC_HALO, _half_tile_px(placed[0][0])] + [max(ch.width, ch.height) for ch, _, _ in placed])
    right, bottom = max(x + ch.width for ch, x, _ in placed), max(y + ch.height for ch, _, y in placed)
    area = [x0, y0 + bottom * e, x0 + right * a, y0]
    out: list[tuple[list[_Placed], dict | None, _Chip]] = []
    for bx, by in blocks:
        left, top = bx * MOSAIC_BLOCK, by * MOSAIC_BLOCK
        near = [(ch, x, y) for ch, x, y in placed if x < left + MOSAIC_BLOCK + halo and x + ch.width > left - halo
                and y < top + MOSAIC_BLOCK + halo and y + ch.height > top - halo]
        core = {"bounds": [x0 + left * a, y0 + (top + MOSAIC_BLOCK) * e, x0 + (left + MOSAIC_BLOCK) * a,
                           y0 + top * e], "area": area}
        for group in _touching(near):
            own = [ch for ch, x, y in group if (x // MOSAIC_BLOCK, y // MOSAIC_BLOCK) == (bx, by)]
            if own:
                out.append((group, core if len(group) > 1 else None, min(own, key=_sid)))
    return out


def _touching(block: list[_Placed]) -> list[list[_Placed]]:
    """The chips of one block in groups that touch or overlap (connected components, in block order)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = [(i, j) for i, (a, ax, ay) in enumerate(block) for j, (b, bx, by) in enumerate(block[i + 1:], i + 1)
             if ax <= bx + b.width and bx <= ax + a.width and ay <= by + b.height and by <= ay + a.height]
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    graph = coo_matrix(([1] * len(pairs), (rows, cols)), shape=(len(block), len(block)))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[_Placed]] = defaultdict(list)
    for item, component in zip(block, label):
        members[int(component)].append(item)
    return list(members.values())


def _half_tile_px(chip: _Chip) -> int:
    """Half a 1024 px tile at 0.5 m (the coarsest output) in the chip's pixels: chips finer than 0.125 m (drone
    imagery) need a halo wider than :data:`MOSAIC_HALO` for the tiles centred at a block's edge to be read whole."""
    from pyproj import CRS as ProjCRS

    size = abs(chip.a)
    if ProjCRS.from_user_input(chip.header["crs"]).is_geographic:  # degrees: the ground size at the chip's latitude
        size *= 111_320 * max(0.1, math.cos(math.radians(chip.f)))
    return math.ceil(512 * 0.5 / max(size, 1e-3))


def _sid(chip: _Chip) -> str:
    return chip.scene.scene_id


def _mosaic(group: list[_Placed], core: dict | None, first: _Chip) -> Scene:
    """One scene of a group of several chips (module docstring) named by ``first``, tiled in ``core`` (if any)."""
    group = sorted(group, key=lambda item: item[0].scene.scene_id)
    left, top = min(x for _, x, _ in group), min(y for _, _, y in group)
    right = max(x + ch.width for ch, x, _ in group)
    bottom = max(y + ch.height for ch, _, y in group)
    chips = [{"image": ch.scene.image, "scene_id": ch.scene.scene_id, "x": x - left, "y": y - top,
              "width": ch.width, "height": ch.height, "footprints": ch.scene.footprints,
              "footprints_crs": ch.scene.footprints_crs,
              **({"landcover": ch.scene.landcover} if ch.scene.landcover else {})} for ch, x, y in group]
    lead, fx, fy = group[0]
    origin = (lead.c + (left - fx) * lead.a, lead.f + (top - fy) * lead.e)
    mosaic = {**first.header, "width": right - left, "height": bottom - top,
              "transform": [first.a, 0.0, origin[0], 0.0, first.e, origin[1]], "chips": chips,
              **({"core": core} if core is not None else {}),
              **({"label": {"count": first.kind[-1][0], "dtype": first.kind[-1][1]}} if first.kind[-1] else {})}
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
        for group, core, first in _groups(sorted(by_kind[kind], key=_sid)):
            kept.append(first.scene if len(group) == 1 else _mosaic(group, core, first))
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
