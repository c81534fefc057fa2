"""The source's own 8-class landcover raster (``Scene.landcover``), warped onto every image tile's grid.

Policies (see docs/ARCHITECTURE.md, "Tiling policy", "Label records"):

* The label raster must have the image's width and height, one band, values 0..8 (or, with the source's
  ``options.classes``, ``scene.extra["classes"]``, values that mapping names: each decoded window is mapped to
  class ids before it is warped, so ``mode`` votes among the classes, not the source's values) or three or four
  uint8 bands, a colour label (RGB(A): each colour through the ``#rrggbb`` keys of ``options.classes``, else
  the OpenEarthMap palette with black unlabelled; a transparent pixel is unlabelled), and a georeference
  that agrees with the image's (or none: it then takes the image's); anything else rejects the whole
  label raster with :class:`~pipeline.errors.AnnotationRejected` (the scene's tiles become *pending*).
* Labels are warped with ``nearest`` or ``mode`` only (never interpolated) and with no source nodata, so
  0 (unlabelled) votes like any class and every output value is an input value.  The label raster uses
  the image's georeference (it must be on the image's pixel grid).
* Pixels where the image tile is nodata (its internal mask) are 0 (unlabelled).
* Each tile job reads the label window under its tile and warps it from memory
  (:func:`pipeline.raster.warp.warp_window`); the values are checked on those decoded windows (no separate
  scan of the whole raster): a value outside 0..8 met under any tile rejects the label raster, naming the
  bad values met (sorted, first 10).
* Label tiles are written once in their final COG layout (:func:`pipeline.raster.cog.write_tile_cog`):
  1-band uint8, 512x512 blocks, DEFLATE without predictor, one ``MODE`` overview, the OpenEarthMap colour
  table and ``CLASS_n`` names (:func:`pipeline.raster.cog.apply_label_metadata`), the image tile's CRS /
  transform / shape, nodata unset; atomically, byte-identical for identical inputs,
  :data:`pipeline.raster.tiling.TILE_THREADS` tiles at a time.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from pipeline.constants import NUM_CLASSES, UNLABELLED
from pipeline.errors import AnnotationRejected
from pipeline.labels.annotations.palette import PALETTE_IDS, colour_codes
from pipeline.labels.labelling import MAX_UNLABELLED_SHARE, unlabelled_share
from pipeline.raster.cog import write_tile_cog
from pipeline.raster.reading import mosaic_label_xml, open_raster, open_scene
from pipeline.raster.tiling import downsampling, map_tiles
from pipeline.raster.warp import TILE_GDAL_ENV, TileGrid, release_memory, warp_window
from pipeline.scene import Georef, Scene, grid_mismatch

_LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def _check_label_georef(file: str, label: rasterio.io.DatasetReader, ref_crs: CRS,
                        ref_transform: Affine) -> None:
    """Reject a label whose own georeference disagrees with the image's: its CRS (when set) must equal the image's,
    its grid the image's (:func:`pipeline.scene.grid_mismatch`; a label with no georeference takes the image's)."""
    if label.crs is not None and ref_crs is not None and label.crs != ref_crs:
        raise AnnotationRejected(file, f"label CRS {label.crs} differs from the image's {ref_crs}")
    problem = grid_mismatch(label.transform, label.width, label.height, ref_transform)
    if problem is not None:
        raise AnnotationRejected(file, problem)


@dataclass
class _BadValues:
    """Values outside 0..NUM_CLASSES met in the decoded label windows (shared by the tile threads); with
    ``classes`` (the source's ``options.classes``: source value -> class id), values it does not map, and each
    window comes back mapped."""

    file: str
    classes: dict[int, int] | None = None
    bad: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, block: np.ndarray) -> np.ndarray | None:
        """Collect the bad values of one decoded window (uint8: a cheap ``max`` first); the window mapped by
        ``classes`` (None without); a colour window (3 or 4 bands) as one band of class ids."""
        if block.shape[0] > 1:
            return self._colours(block)
        if self.classes is not None:
            return self._mapped(block)
        if block.dtype == np.uint8:
            if block.size == 0 or int(block.max()) <= NUM_CLASSES:
                return None
            counts = np.bincount(block.ravel(), minlength=256)
            found = {int(v) for v in np.nonzero(counts[NUM_CLASSES + 1:])[0] + NUM_CLASSES + 1}
        else:
            values = np.unique(block)
            ok = (values >= 0) & (values <= NUM_CLASSES)
            if np.issubdtype(values.dtype, np.floating):
                ok &= np.isfinite(values) & (values == np.round(values))
            found = {v.item() for v in values[~ok][:50]}
        if found:
            with self.lock:
                self.bad.update(found)
        return None

    def _mapped(self, block: np.ndarray) -> np.ndarray:
        """``block`` through ``classes`` (uint8 class ids; an unmapped value is collected and becomes 0)."""
        assert self.classes is not None
        return self._through(block, self.classes, lambda v: v)

    def _through(self, block: np.ndarray, table: dict, shown) -> np.ndarray:
        """``block``'s values through ``table`` as uint8 class ids, ``block``'s shape; a value the table lacks
        becomes 0 and is collected as ``shown(value)`` (NaN is no key of any table)."""
        values, inverse = np.unique(block, return_inverse=True)
        keys = [v.item() for v in values]
        missing = [shown(k) for k in keys if k not in table]
        if missing:
            with self.lock:
                self.bad.update(missing[:50])
        return np.array([table.get(k, 0) for k in keys], dtype=np.uint8)[inverse].reshape(block.shape)

    def _colours(self, block: np.ndarray) -> np.ndarray:
        """A ``(3 | 4, h, w)`` colour window as ``(1, h, w)`` class ids: each colour through ``classes`` (keys
        ``#rrggbb``), else the OpenEarthMap palette (black: unlabelled); a transparent pixel is unlabelled; an
        unknown colour is collected (as ``#RRGGBB``) and becomes 0."""
        codes = colour_codes(block[:3])
        if block.shape[0] > 3:
            codes = np.where(block[3] == 0, np.uint32(1 << 24), codes)  # transparent: no colour
        table = {**(self.classes if self.classes is not None else PALETTE_IDS), 1 << 24: UNLABELLED}
        return self._through(codes[np.newaxis], table, lambda v: f"#{v:06X}")

    def error(self) -> AnnotationRejected | None:
        if not self.bad:
            return None
        if any(isinstance(v, str) for v in self.bad):
            known = "the source's options.classes" if self.classes is not None else "the OpenEarthMap palette"
            return AnnotationRejected(self.file, f"label colours not in {known}: {sorted(map(str, self.bad))[:10]}")
        shown = sorted(self.bad, key=lambda v: (isinstance(v, float) and math.isnan(v), v))[:10]
        if self.classes is not None:
            return AnnotationRejected(self.file, f"label values not in the source's options.classes: {shown}")
        return AnnotationRejected(self.file, f"label values outside 0..{NUM_CLASSES}: {shown}")


def _check_label_header(scene: Scene, file: str) -> tuple[Georef, list[int]]:
    """Check the label raster ``file``'s header against the image's (AnnotationRejected); the georef to read
    it with and its bands to read (``[1]``, or ``[1, 2, 3(, 4)]`` for a uint8 colour label, RGB(A))."""
    with open_scene(scene) as img:
        ref_crs, ref_transform, width, height = img.crs, img.transform, img.width, img.height
    with open_raster(file, error=AnnotationRejected) as raw:
        if (raw.width, raw.height) != (width, height):
            raise AnnotationRejected(file, f"label shape {raw.width}x{raw.height} differs from image {width}x{height}")
        bands = _label_bands(file, raw)
        _check_label_georef(file, raw, ref_crs, ref_transform)
    return Georef(crs=ref_crs.to_wkt(), transform=tuple(ref_transform)[:6]), bands


def _label_bands(file: str, raw: Any) -> list[int]:
    """The bands to read of the label raster ``raw`` (``[1]``, or ``[1, 2, 3(, 4)]`` for a uint8 colour label)."""
    colour = raw.count in (3, 4) and set(raw.dtypes) == {"uint8"}
    if raw.count != 1 and not colour:
        raise AnnotationRejected(file, f"expects a single-band class-index raster or a uint8 RGB(A) colour "
                                       f"label, got {raw.count} bands of {raw.dtypes[0]}")
    if raw.dtypes[0] not in _LABEL_DTYPES:
        raise AnnotationRejected(file, f"unsupported label data type {raw.dtypes[0]}")
    return list(range(1, raw.count + 1)) if colour else [1]


def _label_source(scene: Scene, file: str) -> tuple[list[int], Callable[[], Any]]:
    """The bands of the scene's land-cover raster and how to open it on the image's grid: the file (its header
    checked: :func:`_check_label_header`), or for a mosaic of chips (:mod:`pipeline.sources.mosaic`) a VRT of every
    chip's label at the chip's place, each label checked against its chip as a scene's is against its image."""
    mosaic = (scene.extra or {}).get("mosaic")
    if not (mosaic and mosaic.get("label")):
        georef, bands = _check_label_header(scene, file)
        return bands, lambda: open_raster(file, georef=georef, bands=bands, keep_nodata=False,
                                          error=AnnotationRejected)
    a, _, c, _, e, f = (float(v) for v in mosaic["transform"])
    crs = CRS.from_user_input(mosaic["crs"])
    layouts = set()
    for chip in mosaic["chips"]:
        with open_raster(chip["landcover"], error=AnnotationRejected) as raw:
            if (raw.width, raw.height) != (chip["width"], chip["height"]):
                raise AnnotationRejected(chip["landcover"], f"label shape {raw.width}x{raw.height} differs from "
                                                            f"image {chip['width']}x{chip['height']}")
            layouts.add((tuple(_label_bands(chip["landcover"], raw)), raw.dtypes[0]))
            _check_label_georef(chip["landcover"], raw, crs,
                                Affine(a, 0.0, c + chip["x"] * a, 0.0, e, f + chip["y"] * e))
    if len(layouts) != 1:
        raise AnnotationRejected(file, f"the labels of the mosaic's {len(mosaic['chips'])} chips differ in bands or "
                                       f"data type: {sorted(layouts)}")
    bands = list(next(iter(layouts))[0])
    return bands, lambda: _open_xml(mosaic_label_xml(mosaic, bands), file)


@contextlib.contextmanager
def _open_xml(xml: str, file: str) -> Iterator[Any]:
    try:  # one thread: see pipeline.raster.reading.open_scene (forked children)
        ds = rasterio.open(xml, NUM_THREADS="1")
    except (RasterioError, ValueError) as exc:
        raise AnnotationRejected(file, f"cannot read the labels of the mosaic: {exc}") from exc
    with ds:
        yield ds


def _label_classes(scene: Scene, *, colour: bool) -> dict[int, int] | None:
    """The source's ``options.classes`` (``scene.extra["classes"]``, ``[[key, class id], ...]``) for a label of
    this kind: its integer keys for a class-index label, its ``#rrggbb`` keys as 24-bit colour codes for a colour
    label; None without the option."""
    pairs = (scene.extra or {}).get("classes")
    if not pairs:
        return None
    if colour:
        return {int(str(k)[1:], 16): int(v) for k, v in pairs if isinstance(k, str)}
    return {int(k): int(v) for k, v in pairs if not isinstance(k, str)}


def _pending(tiles: list[dict]) -> list[dict]:
    return [{"tile_id": t["tile_id"], "status": "pending", "label": None, "class_pixels": {},
             "unlabelled_pixels": 0} for t in sorted(tiles, key=lambda t: t["tile_id"])]


def partial_reason(file: str, share: float) -> str:
    """Why a tile whose source label leaves ``share`` of it unlabelled is pending (``pending.csv``'s reason)."""
    return (f"awaiting annotation: the source's label {Path(file).name} leaves {100 * share:.1f} % of the tile "
            f"unlabelled (more than {100 * MAX_UNLABELLED_SHARE:.0f} %); its classes are the pre-annotation")


def write_label_tiles(scene: Scene, plan: dict, tiles: list[dict], out_dir: Path) -> list[dict]:
    """Warp ``scene.landcover`` onto every image tile's grid and write ``out_dir/labels/<tile_id>.tif``.

    With no landcover every record is ``pending``.  Otherwise the label raster is validated (same
    width / height as the image, one band, values 0..8 under the tiles (or those ``scene.extra["classes"]``
    maps, which it maps), georeference consistent with the
    image's; else ``AnnotationRejected``, and no label file is left), warped with the plan's label
    resampling (nearest / mode, no source nodata) using the image's georeference, set to 0 where the image
    tile is nodata (its internal mask), and written with the image tile's CRS / transform / shape.
    Returns "Label records" sorted by tile id.  A tile the label leaves more than
    :data:`~pipeline.labels.labelling.MAX_UNLABELLED_SHARE` unlabelled (of its valid pixels: a source that maps
    only some classes, e.g. LandCover.ai's buildings, woodland, water and roads) is *pending*: its record has the
    label file as ``partial`` (the tile's pre-annotation, :func:`pipeline.labels.labelling.export_todo`) and the
    ``reason`` (:func:`partial_reason`).
    """
    if scene.landcover is None:
        return _pending(tiles)
    out_dir = Path(out_dir)
    file = scene.landcover
    method = plan["resampling"]["label"]
    if method not in ("nearest", "mode"):
        raise ValueError(f"labels must not be interpolated (resampling {method})")

    def one_tile(lbl: Any, t: dict) -> dict:
        tid = t["tile_id"]
        with rasterio.open(out_dir / t["image"]) as image_tile:
            grid = TileGrid(image_tile.crs, image_tile.transform, image_tile.width, image_tile.height)
            valid = image_tile.dataset_mask() > 0
        try:
            data, _ = warp_window(lbl, bands, grid, method, downsampling(plan), alpha=False, check=checker.check,
                                  out_bands=1)
        except RasterioError as exc:
            raise AnnotationRejected(file, f"cannot read: {exc}") from exc
        finally:
            release_memory()
        label = data[0].astype(np.uint8)
        label[~valid] = 0
        label_rel = f"labels/{tid}.tif"
        write_tile_cog(out_dir / label_rel, label[np.newaxis], crs=grid.crs, transform=grid.transform, kind="label")
        share = unlabelled_share(label, valid)
        if share > MAX_UNLABELLED_SHARE:  # a starting point for annotators, not a label to release
            return {"tile_id": tid, "status": "pending", "label": None, "class_pixels": {}, "unlabelled_pixels": 0,
                    "partial": label_rel, "reason": partial_reason(file, share)}
        counts = np.bincount(label.ravel(), minlength=NUM_CLASSES + 1)
        return {
            "tile_id": tid, "status": "labelled", "label": label_rel,
            "class_pixels": {str(k): int(counts[k]) for k in range(1, NUM_CLASSES + 1)},
            "unlabelled_pixels": int(counts[0]),
        }

    with rasterio.Env(**TILE_GDAL_ENV):
        bands, opener = _label_source(scene, file)
        checker = _BadValues(file, _label_classes(scene, colour=len(bands) > 1))
        records = map_tiles(opener, one_tile, sorted(tiles, key=lambda t: t["tile_id"]))
    error = checker.error()
    if error is not None:
        for rec in records:
            (out_dir / (rec["label"] or rec["partial"])).unlink(missing_ok=True)
        raise error
    return records
