"""Cloud-Optimized GeoTIFFs for release tiles (GDAL's ``COG`` driver through rasterio; no Luigi here).

Policies
--------
* Images: DEFLATE level 3 with the horizontal predictor (``PREDICTOR=STANDARD``, i.e. TIFF predictor 2),
  512x512 internal tiles, overviews down to one tile (``OVERVIEWS=AUTO``) resampled by ``AVERAGE``.  Level 3
  instead of the default 6: about 3x faster to write (the conversion of every release tile is on the build's
  critical path) for files about 2-3 % larger.
* Labels: DEFLATE without predictor (class ids are categorical), 512x512 tiles, overviews resampled by
  ``MODE`` (the most frequent class id; labels are never interpolated).  Every label COG carries the
  OpenEarthMap colour table (:func:`label_colormap`: 0 black, 1..8 the palette of
  :data:`pipeline.constants.CLASS_COLORS`, colour interpretation *palette*) and the class names as band
  metadata items ``CLASS_0=unlabelled`` .. ``CLASS_8=building`` (:func:`label_tags`), so QGIS and ``gdalinfo``
  show classes; the pixel values (class ids) are unchanged.  GDAL's own *category names* are not used:
  the GeoTIFF driver keeps them only in a ``.aux.xml`` side-car, which a release must not need.
  :func:`apply_label_metadata` is the one place that writes both, for every writer of label tiles.
* **Written once.**  Work tiles are written in this final layout when they are made
  (:func:`write_tile_cog`): the pixels go into a GDAL ``MEM`` dataset (no encoding), its overviews are built
  there (``AVERAGE`` / ``MODE``, the internal mask's too) and the ``COG`` driver copies it with
  ``OVERVIEWS=FORCE_USE_EXISTING``, so every pixel is DEFLATE-encoded exactly once, and the release only links
  them (:func:`place_cog`).  Work image tiles use DEFLATE level :data:`LEVELS` ``["image"]`` = 3 as the release
  policy; labels GDAL's default 6 (cheap on labels).  :func:`follows_policy` does not look at the level.
* The grid (CRS, transform, size), data type, nodata and an internal mask, when the source has one, are
  kept.  Files are written atomically (temporary name, then rename) and are byte-identical for identical
  inputs and GDAL version (single-threaded, no timestamps).
* :func:`validate_cog` uses ``rio_cogeo.cogeo.cog_validate`` when rio-cogeo is installed, else a smaller
  rasterio check (tiled, GDAL's ``LAYOUT=COG`` marker, overviews when larger than one block).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# rasterio.shutil is imported here, never first inside a tile thread: two threads importing a submodule at once
# can see it half-bound ("module 'rasterio' has no attribute 'shutil'", seen in a build of 6 scenes)
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import MemoryFile

from pipeline import atomic
from pipeline.constants import CLASS_COLORS, CLASS_NAMES, UNLABELLED

BLOCKSIZE = 512
#: DEFLATE level per kind of tile written by :func:`write_tile_cog` (libdeflate; image 3 as the release
#: policy, labels 6 = GDAL's default).
LEVELS: dict[str, int] = {"image": 3, "label": 6}
_OVERVIEW_RESAMPLING = {"image": "average", "label": "mode"}
#: Creation options of the COG driver per kind of raster.
COG_OPTIONS: dict[str, dict[str, str]] = {
    "image": {"COMPRESS": "DEFLATE", "LEVEL": "3", "PREDICTOR": "STANDARD", "BLOCKSIZE": str(BLOCKSIZE),
              "OVERVIEWS": "AUTO", "OVERVIEW_RESAMPLING": "AVERAGE", "NUM_THREADS": "1"},
    "label": {"COMPRESS": "DEFLATE", "PREDICTOR": "NO", "BLOCKSIZE": str(BLOCKSIZE), "OVERVIEWS": "AUTO",
              "OVERVIEW_RESAMPLING": "MODE", "NUM_THREADS": "1"},
}


#: Band description of label rasters.
LABEL_DESCRIPTION = "land-cover class id (0 = unlabelled)"


def label_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The label colour table: 0 (unlabelled) black, 1..8 the OpenEarthMap palette, all opaque (GDAL pads
    the other entries of an 8-bit table with black)."""
    cmap = {UNLABELLED: (0, 0, 0, 255)}
    cmap.update({c: (r, g, b, 255) for c, (r, g, b) in sorted(CLASS_COLORS.items())})
    return cmap


def label_tags() -> dict[str, str]:
    """Band metadata items naming the classes: ``{"CLASS_0": "unlabelled", "CLASS_1": "bareland", ...}``."""
    return {f"CLASS_{UNLABELLED}": "unlabelled", **{f"CLASS_{c}": name for c, name in sorted(CLASS_NAMES.items())}}


def apply_label_metadata(dataset: Any) -> None:
    """Write the colour table, class names and band description to band 1 of an open, writable rasterio
    dataset (a label tile being written: by the release conversion here, or by a writer of work tiles)."""
    dataset.write_colormap(1, label_colormap())
    dataset.update_tags(1, **label_tags())
    dataset.set_band_description(1, LABEL_DESCRIPTION)


def has_label_metadata(dataset: Any) -> bool:
    """Whether band 1 of an open rasterio dataset carries :func:`label_colormap` and :func:`label_tags`."""
    try:
        cmap = dataset.colormap(1)
    except ValueError:  # no colour table
        return False
    tags = dataset.tags(1)
    return (all(tuple(cmap.get(k, ())) == v for k, v in label_colormap().items())
            and all(tags.get(k) == v for k, v in label_tags().items()))


def _options(kind: str) -> dict[str, str]:
    if kind not in COG_OPTIONS:
        raise ValueError(f"kind must be one of {sorted(COG_OPTIONS)}, got {kind!r}")
    return dict(COG_OPTIONS[kind])


def to_cog(src_tif: str | Path, dst_tif: str | Path, *, kind: str = "image") -> Path:
    """Copy the GeoTIFF ``src_tif`` to a COG at ``dst_tif`` (``kind`` ``"image"`` or ``"label"`` picks the
    options in :data:`COG_OPTIONS`).  ``dst_tif`` must differ from ``src_tif``.  Returns ``dst_tif``."""

    src, dst = Path(src_tif), Path(dst_tif)
    if src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: the COG must not overwrite its source")
    opts = _options(kind)
    with rasterio.Env(GDAL_NUM_THREADS="1"), atomic.atomic_path(dst) as tmp:
        if kind == "label":
            with MemoryFile() as mem:  # the tile with its label metadata, then the COG of that
                rasterio.shutil.copy(str(src), mem.name, driver="GTiff")
                with rasterio.open(mem.name, "r+") as ds:
                    apply_label_metadata(ds)
                rasterio.shutil.copy(mem.name, str(tmp), driver="COG", **opts)
        else:
            rasterio.shutil.copy(str(src), str(tmp), driver="COG", **opts)
    return dst


def follows_policy(path: str | Path, *, kind: str = "image") -> bool:
    """Whether ``path`` is already a COG written with the ``kind`` policy (COG driver layout, DEFLATE,
    ``BLOCKSIZE`` blocks, the policy's predictor, overviews when larger than one block; labels: the colour
    table and class names), so it can be published as is.  Unreadable files are not."""

    opts = _options(kind)
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags(ns="IMAGE_STRUCTURE")
            return (
                ds.driver == "GTiff" and tags.get("LAYOUT") == "COG" and tags.get("COMPRESSION") == opts["COMPRESS"]
                and (tags.get("PREDICTOR") == "2") == (opts["PREDICTOR"] == "STANDARD")
                and ds.block_shapes[0] == (BLOCKSIZE, BLOCKSIZE)
                and (max(ds.width, ds.height) <= BLOCKSIZE or bool(ds.overviews(1)))
                and (kind != "label" or has_label_metadata(ds))
            )
    except Exception:  # noqa: BLE001  (anything unreadable gets converted, which then reports the error)
        return False


def place_cog(src_tif: str | Path, dst_tif: str | Path, *, kind: str = "image") -> Path:
    """Put a COG of ``src_tif`` at ``dst_tif``: a hard link (a copy across file systems) when ``src_tif``
    already :func:`follows_policy`, else :func:`to_cog`.  Source files must only ever be replaced by
    rename, never rewritten in place (true of every pipeline output), so a link stays intact."""
    import os
    import shutil

    src, dst = Path(src_tif), Path(dst_tif)
    if not follows_policy(src, kind=kind):
        return to_cog(src, dst, kind=kind)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dst


def overview_factors(width: int, height: int, blocksize: int = BLOCKSIZE) -> list[int]:
    """Factors 2, 4, ... until the overview fits in one block (what the COG driver's ``OVERVIEWS=AUTO`` makes)."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > blocksize:
        factors.append(f)
        f *= 2
    return factors


def write_tile_cog(path: str | Path, data: np.ndarray, *, crs: Any, transform: Sequence[float] | Any,
                   kind: str = "image", mask: np.ndarray | None = None, nodata: float | None = None) -> Path:
    """Write ``data`` (``(bands, rows, cols)``) as a COG of the ``kind`` policy at ``path`` atomically, encoding
    each pixel once (module docstring, "Written once").

    ``mask`` (``(rows, cols)``, non-zero = valid) becomes an internal mask with its own overview; label tiles
    get :func:`apply_label_metadata`.  Byte-identical for identical inputs.  Returns ``path``."""

    opts = _options(kind)
    if data.ndim != 3 or 0 in data.shape:
        raise ValueError(f"data must be (bands, rows, cols), got shape {data.shape}")
    affine = transform if isinstance(transform, rasterio.Affine) else rasterio.Affine(*list(transform)[:6])
    count, height, width = data.shape
    profile: dict[str, Any] = {"driver": "MEM", "width": width, "height": height, "count": count,
                               "dtype": data.dtype.name, "crs": crs, "transform": affine, "nodata": nodata}
    rgb = kind == "image" and count == 3 and data.dtype == np.uint8
    opts.update(LEVEL=str(LEVELS[kind]), OVERVIEWS="FORCE_USE_EXISTING")
    opts.pop("OVERVIEW_RESAMPLING", None)
    with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open("", "w", **profile) as mem:
        mem.write(data)
        if rgb:  # the COG driver then writes PHOTOMETRIC=RGB
            mem.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if mask is not None:
            m = np.asarray(mask)
            if m.shape != data.shape[1:]:
                raise ValueError(f"mask shape {m.shape} differs from the raster's {data.shape[1:]}")
            mem.write_mask(np.where(m != 0, 255, 0).astype(np.uint8))
        if kind == "label":
            apply_label_metadata(mem)
        factors = overview_factors(width, height)
        if factors:
            mem.build_overviews(factors, Resampling[_OVERVIEW_RESAMPLING[kind]])
        with atomic.atomic_path(path) as tmp:
            rasterio.shutil.copy(mem, str(tmp), driver="COG", **opts)
    return Path(path)


def write_cog(
    array: np.ndarray,
    path: str | Path,
    *,
    crs: Any,
    transform: Sequence[float] | Any,
    kind: str = "image",
    nodata: float | None = None,
    mask: np.ndarray | None = None,
) -> Path:
    """:func:`write_tile_cog` of ``array`` (``(bands, rows, cols)`` or ``(rows, cols)``).

    ``crs`` is anything rasterio accepts (``"EPSG:32633"``); ``transform`` an ``Affine`` or its first six
    coefficients ``[a, b, c, d, e, f]``; ``mask`` (``(rows, cols)``, non-zero = valid) becomes an internal
    mask.  Returns ``path``."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"array must be (bands, rows, cols) or (rows, cols), got shape {np.shape(array)}")
    return write_tile_cog(path, np.ascontiguousarray(arr), crs=crs, transform=transform, kind=kind, mask=mask,
                          nodata=nodata)


def _rio_cogeo_validate() -> Callable[..., Any] | None:
    """``rio_cogeo.cogeo.cog_validate`` when rio-cogeo can be imported, else None."""
    try:
        from rio_cogeo.cogeo import cog_validate
    except ImportError:
        return None
    return cog_validate


def validate_cog(path: str | Path) -> list[str]:
    """Problems that keep ``path`` from being a valid COG (``[]`` = valid), each ``"<file name>: ..."``.

    With rio-cogeo: its errors, then its warnings prefixed ``warning:``; without: not tiled, no
    ``LAYOUT=COG`` marker, or no overviews although larger than one block."""
    p = Path(path)
    name = p.name
    if not p.is_file():
        return [f"{name}: missing"]
    cog_validate = _rio_cogeo_validate()
    if cog_validate is not None:
        try:
            _, errors, warnings = cog_validate(str(p), quiet=True)
        except Exception as exc:  # unreadable file
            return [f"{name}: cannot be read ({exc})"]
        return [f"{name}: {e}" for e in errors] + [f"{name}: warning: {w}" for w in warnings]

    out = []
    try:
        with rasterio.open(p) as ds:
            if ds.driver != "GTiff":
                out.append(f"{name}: driver {ds.driver}, not GTiff")
            if not ds.profile.get("tiled"):
                out.append(f"{name}: not internally tiled")
            if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
                out.append(f"{name}: no LAYOUT=COG marker (not written by the COG driver)")
            if max(ds.width, ds.height) > BLOCKSIZE and not ds.overviews(1):
                out.append(f"{name}: {ds.width}x{ds.height} without overviews")
    except Exception as exc:
        return [f"{name}: cannot be read ({exc})"]
    return out
