"""Scene inspection and the per-scene grid plan: native GSD, UTM zone, GSD rule, radiometry policy.

Everything here is pure (no Luigi) and reads pixels only through bounded, decimated reads, so the
memory used does not grow with the size of the scene; a ``uint8`` scene whose bands are all valid is planned
from its header (plus its first and last block) without decoding its pixels.

Policies implemented here (see docs/ARCHITECTURE.md, "Prepared plan", "GSD rule", "Resampling"):

* **Georeference.** A scene needs a CRS and an affine geotransform, either in the image file or in
  ``scene.georef`` (which then overrides the file's).  Rotated / skewed affines are accepted: the warper
  (GDAL, :mod:`pipeline.raster.warp`) handles any affine.  Images georeferenced only by GCPs
  or RPCs are rejected ("georeferenced by GCPs only (no affine transform)").  A CRS that cannot be
  transformed is named briefly (EPSG code or name, never its whole definition).  A scene across the
  antimeridian is read in a CRS centred on it (:mod:`pipeline.raster.reading`).
* **Native GSD** is measured in metres in the local UTM zone of the scene centre, as the mean of the
  ground length of one pixel step along columns and along rows at the centre pixel (so EPSG:3857 pixels
  shrink by cos(lat) and EPSG:4326 degrees are converted properly).
* **GSD rule** (:func:`choose_target_gsd`): coarser than 0.5 m (+2 % tolerance) -> rejected; 0.25-0.5 m
  (2 % tolerance either side) -> kept at the native GSD rounded to 1 cm; finer -> 0.3 m or 0.5 m, whichever
  makes the downsampling factor closest to an integer (ties to the finer).
* **Grid.** Output CRS is the WGS 84 UTM zone of the scene centre (Norway / Svalbard exceptions
  included; UPS beyond 84°N / 80°S).  The source footprint (all four edges densified) is transformed to it
  and its bounds are snapped outward to multiples of the output GSD, so grids of overlapping scenes share
  one lattice.  The grid is checked before any pixel is read: at most :data:`MAX_GRID_PIXELS` per axis and
  ``max_grid_pixels`` in all (a processing parameter, default :data:`MAX_GRID_TOTAL`; a sparse
  200000x200000 TIFF is rejected in milliseconds, not tiled into 600k blank tiles).  A source block larger
  than :data:`MAX_BLOCK_BYTES` (one strip or tile that must be decoded whole) and a source over
  :data:`MAX_SOURCE_PIXELS` are rejected too.
* **Resampling.** Images :data:`IMAGE_AREA_METHOD` (``box+bilinear``: an integer box pre-reduction in
  GDAL's read, then bilinear, see :mod:`pipeline.raster.warp`) when downsampling by more than 1.2x
  (native < gsd / 1.2), else ``bilinear``; labels ``mode`` resp. ``nearest`` (labels never interpolate).
* **Bands.** The source's ``options.bands`` (``scene.extra["bands"]``: the numbers of the red, green and blue
  bands, e.g. ``[3, 2, 1]`` for blue-green-red-NIR, a band the file lacks is a reject), else the bands whose
  colour interpretation is red, green and blue (in whatever order the file has them), else by count: 1 band
  -> grey replicated to RGB; 2 bands with band 2 alpha -> grey + alpha; 3 bands -> RGB; 4 bands -> the first
  three; anything else is rejected, naming ``options.bands``.  A band marked alpha (colour interpretation,
  or ``scene.extra["alpha_band"]``) and not used as a colour is the nodata mask.
* **Radiometry.** ``uint8`` is used as is.  Any other data type is stretched linearly per band from its
  2nd to its 98th percentile of valid pixels to 0..255; the percentiles come from a decimated read of at
  most about 1024x1024 samples and are recorded in the plan (``low`` / ``high``).
* **Validity.** A ``uint8`` scene whose bands are all valid (no nodata value, alpha or mask: GDAL's
  ``ALL_VALID`` mask flag) cannot be all nodata and needs no statistics: its first and last block are decoded
  (a truncated or unreadable file fails here as ``cannot read``; a corrupt block in between is reported by
  the tiling, stage ``tile``), and when they hold more than one value the scene is not blank either, so no
  other pixel is read.  Otherwise a decimated read of all bands and the dataset mask must succeed (else
  ``cannot read``) and must find at least one valid pixel (else ``all pixels are nodata``) and more than one
  value among the valid ones (else ``blank: every valid pixel is (0, 0, 0)``: a constant scene has nothing
  to label).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from pipeline.errors import SceneRejected
from pipeline.limits import MAX_GRID_TOTAL
from pipeline.raster.blocks import area_utm, mosaic_tiling
from pipeline.raster.gsd import choose_target_gsd, crs_label, crs_short, native_gsd_m, utm_crs_for
from pipeline.raster.reading import GDAL_ENV, GDAL_TYPES, native_crs, open_scene
from pipeline.scene import Scene

#: Decimated reads (statistics, validity) use at most this many samples along the longer axis.
STATS_SAMPLES = 1024

#: Largest output grid (pixels along either axis) a scene may produce; beyond it the georeference is
#: taken to be broken rather than the scene to be huge (200 000 px = 60 km at 0.3 m).
MAX_GRID_PIXELS = 200_000

#: Largest source block (bytes of one decoded tile or strip, all bands) a scene may have.
MAX_BLOCK_BYTES = 256 * 1024 * 1024

#: Most source pixels a scene may have (316k x 316k): what tiling it reads grows with the source, whatever
#: the output grid (a 1e12-pixel TIFF at 1 mm would fit a small grid).
MAX_SOURCE_PIXELS = 100_000_000_000

#: Downsampling factors above this use area-based resampling (average / mode).
AREA_RESAMPLING_FACTOR = 1.2

#: Image resampling when downsampling by more than :data:`AREA_RESAMPLING_FACTOR`: an integer box
#: pre-reduction, then bilinear (:mod:`pipeline.raster.warp`; a third of the CPU of GDAL ``average`` at full
#: resolution, MAD ~1 DN from it).
IMAGE_AREA_METHOD = "box+bilinear"


def _band_policy(ds: rasterio.io.DatasetReader, file: str, chosen: Sequence[int] | None = None
                 ) -> tuple[list[int], int | None]:
    """(bands used as R, G, B; alpha band or None) following the band policy of the module doc; ``chosen``:
    the source's ``options.bands`` (``scene.extra["bands"]``)."""
    n = ds.count
    ci = list(ds.colorinterp)
    if chosen:
        missing = [b for b in chosen if not 1 <= int(b) <= n]
        if missing:
            raise SceneRejected(file, f"options.bands {list(chosen)} names band {missing[0]}, the file has {n}")
        return [int(b) for b in chosen], _alpha_beside(ci, chosen)
    named = [ci.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) if ci.count(c) == 1]
    if len(named) == 3:  # the file says which bands are red, green and blue (in any order)
        return named, _alpha_beside(ci, named)
    if n == 1:
        return [1, 1, 1], None
    if n == 2 and ci[1] == ColorInterp.alpha:
        return [1, 1, 1], 2
    if n == 3:
        return [1, 2, 3], None
    if n == 4:
        return [1, 2, 3], (4 if ci[3] == ColorInterp.alpha else None)
    raise SceneRejected(file, f"expects 1, 3 or 4 bands, got {n} (no band is marked red, green and blue: set the "
                              f"source's options.bands to their numbers, e.g. [5, 3, 2])")


def _alpha_beside(ci: list[ColorInterp], rgb: Sequence[int]) -> int | None:
    """The first band marked alpha that is not one of ``rgb``, or None."""
    return next((i + 1 for i, c in enumerate(ci) if c == ColorInterp.alpha and i + 1 not in rgb), None)


def _decimated_shape(width: int, height: int, samples: int = STATS_SAMPLES) -> tuple[int, int]:
    step = max(1, math.ceil(max(width, height) / samples))
    return max(1, math.ceil(height / step)), max(1, math.ceil(width / step))


def _footprint_bounds(crs: CRS, transform: Affine, width: int, height: int, dst_crs: str,
                      densify: int = 64) -> tuple[float, float, float, float]:
    """Bounds in ``dst_crs`` of the raster's footprint, with every edge densified to ``densify`` steps."""
    t = np.linspace(0.0, 1.0, densify + 1)
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    xs = transform.c + transform.a * cols + transform.b * rows
    ys = transform.f + transform.d * cols + transform.e * rows
    ux, uy = warp_transform(crs, dst_crs, xs.tolist(), ys.tolist())
    ux, uy = np.asarray(ux), np.asarray(uy)
    if not (np.all(np.isfinite(ux)) and np.all(np.isfinite(uy))):
        raise ValueError("footprint does not transform to UTM")
    return float(ux.min()), float(uy.min()), float(ux.max()), float(uy.max())


def snap_grid(bounds: tuple[float, float, float, float], gsd: float) -> tuple[list[float], int, int]:
    """Snap ``bounds`` outward to multiples of ``gsd``: (transform as 6 floats, width, height).

    A bound within 1e-6 pixel of a multiple counts as on it (float noise does not add a pixel).  The
    origin is ``k * gsd`` rounded to 1e-6 m, so grids of overlapping scenes coincide.
    """
    minx, miny, maxx, maxy = bounds
    eps = 1e-6
    kx0 = math.floor(minx / gsd + eps)
    kx1 = math.ceil(maxx / gsd - eps)
    ky0 = math.floor(miny / gsd + eps)
    ky1 = math.ceil(maxy / gsd - eps)
    width, height = max(1, kx1 - kx0), max(1, ky1 - ky0)
    x0 = round(kx0 * gsd, 6) + 0.0
    y0 = round(ky1 * gsd, 6) + 0.0
    return [float(gsd), 0.0, x0, 0.0, -float(gsd), y0], width, height


#: The decimated read goes through windows of at most this many source rows / columns at full resolution.
STATS_WINDOW = 2048


def _sample_index(n_src: int, n_out: int) -> np.ndarray:
    """Source rows (columns) that a nearest-neighbour decimation of ``n_src`` to ``n_out`` picks, as
    GDAL's ``RasterIO`` does: ``floor((i + 0.5) * n_src / n_out + 1e-10)``, clipped to the raster."""
    idx = ((np.arange(n_out, dtype=np.float64) + 0.5) * (n_src / n_out) + 1e-10).astype(np.int64)
    return np.minimum(idx, n_src - 1)


def _chunks(index: np.ndarray, n_src: int, block: int) -> Iterator[tuple[int, int]]:
    """``(first, stop)`` positions in the sorted ``index`` grouped by source windows of about
    :data:`STATS_WINDOW` pixels (a multiple of the block size when a block is smaller)."""
    step = (STATS_WINDOW // block) * block if block <= STATS_WINDOW else STATS_WINDOW
    bounds = np.searchsorted(index, np.arange(0, n_src + step, step))
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            yield int(a), int(b)


def _decimated_read(ds: rasterio.io.DatasetReader, bands: list[int], shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(ds.read(bands, out_shape=...), ds.dataset_mask(out_shape=shape))`` with nearest-neighbour
    decimation, decoding every source block once.

    GDAL decimates band by band, so a multi-band (pixel-interleaved) file whose decoded pixels do not
    fit in the block cache (:data:`GDAL_ENV`) is decoded once per band (3x for RGB).  For such a file,
    when every block holds at least one sampled row and column (block size >= sampling step, e.g.
    512x512 tiles and any scene up to ~500k px), the source is instead read at full resolution through
    bounded windows (all bands at once: one decode per block) and sampled at the very pixels GDAL picks.
    Otherwise (small scenes, single bands, thin strips far apart) GDAL's own decimated read is used.
    """
    h_out, w_out = shape
    block_h, block_w = ds.block_shapes[bands[0] - 1]
    decoded = ds.width * ds.height * ds.count * np.dtype(ds.dtypes[bands[0] - 1]).itemsize
    if ((h_out, w_out) == (ds.height, ds.width) or ds.count == 1 or decoded <= GDAL_ENV["GDAL_CACHEMAX"]
            or block_h < ds.height / h_out or block_w < ds.width / w_out):
        return ds.read(bands, out_shape=(len(bands),) + shape), ds.dataset_mask(out_shape=shape)
    rows, cols = _sample_index(ds.height, h_out), _sample_index(ds.width, w_out)
    data = np.empty((len(bands), h_out, w_out), dtype=ds.dtypes[bands[0] - 1])
    mask = np.empty((h_out, w_out), dtype=np.uint8)
    for ra, rb in _chunks(rows, ds.height, block_h):
        r_src = rows[ra:rb] - rows[ra]
        for ca, cb in _chunks(cols, ds.width, block_w):
            c_src = cols[ca:cb] - cols[ca]
            win = Window(int(cols[ca]), int(rows[ra]), int(c_src[-1]) + 1, int(r_src[-1]) + 1)
            sel = np.ix_(r_src, c_src)
            full = ds.read(bands, window=win)
            data[:, ra:rb, ca:cb] = full[(slice(None),) + sel]
            mask[ra:rb, ca:cb] = ds.dataset_mask(window=win)[sel]
    return data, mask


def _stretch_stats(ds: rasterio.io.DatasetReader, bands: list[int], file: str
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Decimated read of ``bands`` and the dataset mask: (data, valid mask, number of valid samples)."""
    shape = _decimated_shape(ds.width, ds.height)
    uniq = sorted(set(bands))
    try:
        data, mask = _decimated_read(ds, uniq, shape)
        mask = mask > 0
    except (RasterioError, OSError) as exc:
        raise SceneRejected(file, f"cannot read: {exc}") from exc
    if np.issubdtype(data.dtype, np.floating):
        mask &= np.all(np.isfinite(data), axis=0)
    return data, mask, int(mask.sum())


def _check_blank(data: np.ndarray, mask: np.ndarray, file: str) -> None:
    """Reject a scene whose valid samples all have one value per band (a blank or constant image)."""
    valid = data[:, mask]
    lo, hi = valid.min(axis=1), valid.max(axis=1)
    if np.all(lo == hi):
        shown = ", ".join(f"{v:g}" for v in lo.astype(np.float64))
        raise SceneRejected(file, f"blank: every valid pixel is ({shown})")


def _check_georeference(ds: rasterio.io.DatasetReader, file: str) -> str:
    """Reject a dataset without a usable CRS + affine, or with mixed / unsupported data types; returns
    the data type of its bands."""
    if ds.transform.is_identity:
        gcps, _ = ds.gcps
        if gcps:
            raise SceneRejected(file, "georeferenced by GCPs only (no affine transform)")
        if ds.rpcs:
            raise SceneRejected(file, "georeferenced by RPCs only (no affine transform)")
    if ds.crs is None:
        raise SceneRejected(file, "no CRS (and no georef supplied)")
    if ds.transform.is_identity:
        raise SceneRejected(file, "no geotransform (and no georef supplied): an affine geotransform is required")
    if ds.transform.determinant == 0:
        raise SceneRejected(file, "degenerate geotransform (zero determinant)")
    if ds.width * ds.height > MAX_SOURCE_PIXELS:
        raise SceneRejected(file, f"source of {ds.width}x{ds.height} px is over {MAX_SOURCE_PIXELS:.0e} px")
    block_h, block_w = ds.block_shapes[0]
    block_bytes = block_h * block_w * ds.count * np.dtype(ds.dtypes[0]).itemsize if ds.dtypes[0] in GDAL_TYPES else 0
    if block_bytes > MAX_BLOCK_BYTES:
        raise SceneRejected(file, f"block of {block_w}x{block_h} px x {ds.count} bands is over "
                                  f"{MAX_BLOCK_BYTES >> 20} MiB: it would be decoded whole")
    dtype = ds.dtypes[0]
    if len(set(ds.dtypes)) != 1:
        raise SceneRejected(file, f"mixed band data types {sorted(set(ds.dtypes))}")
    if dtype not in GDAL_TYPES:
        raise SceneRejected(file, f"unsupported data type {dtype}")
    return dtype


def _probe_blocks(ds: rasterio.io.DatasetReader, bands: list[int], file: str) -> bool:
    """Decode the first and the last block of ``bands`` (catches unreadable and truncated files); whether
    some band holds more than one value in them (then the scene is not blank)."""
    bh, bw = ds.block_shapes[bands[0] - 1]
    c1, r1 = (ds.width - 1) // bw * bw, (ds.height - 1) // bh * bh
    try:
        blocks = [ds.read(bands, window=win) for win in (Window(0, 0, min(bw, ds.width), min(bh, ds.height)),
                                                          Window(c1, r1, ds.width - c1, ds.height - r1))]
    except (RasterioError, OSError) as exc:
        raise SceneRejected(file, f"cannot read: {exc}") from exc
    lo = np.minimum(*(b.min(axis=(1, 2)) for b in blocks))
    hi = np.maximum(*(b.max(axis=(1, 2)) for b in blocks))
    return bool(np.any(lo != hi))


def _radiometry(ds: rasterio.io.DatasetReader, bands: list[int], dtype: str, alpha: int | None, file: str
                ) -> tuple[str, list[float], list[float]]:
    """``(scale, low, high)`` of the plan: uint8 as is, else a linear stretch between the 2nd and 98th
    percentiles of the valid pixels of a decimated read (per band).  Rejects a scene with no valid pixel.
    A uint8 scene whose bands are all valid is judged from its header and two blocks (module docstring)."""
    uniq = sorted(set(bands))
    all_valid = alpha is None and all(MaskFlags.all_valid in ds.mask_flag_enums[b - 1] for b in uniq)
    if dtype == "uint8" and all_valid and _probe_blocks(ds, uniq, file):
        return "none", [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    data, mask, n_valid = _stretch_stats(ds, bands, file)
    if n_valid == 0:
        raise SceneRejected(file, "all pixels are nodata")
    _check_blank(data, mask, file)
    if dtype == "uint8":
        return "none", [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    per_band = {}
    for i, b in enumerate(sorted(set(bands))):
        values = data[i][mask].astype(np.float64)
        lo_v, hi_v = (float(v) for v in np.percentile(values, [2.0, 98.0]))
        if not hi_v > lo_v:
            hi_v = lo_v + 1.0
        per_band[b] = (round(lo_v, 6), round(hi_v, 6))
    return "linear", [per_band[b][0] for b in bands], [per_band[b][1] for b in bands]


def _utm_grid(ds: rasterio.io.DatasetReader, utm: str, gsd: float, file: str, max_total: int = MAX_GRID_TOTAL
              ) -> tuple[list[float], int, int]:
    """The scene's output grid in ``utm`` at ``gsd``: its footprint's bounds snapped outward (:func:`snap_grid`),
    within :data:`MAX_GRID_PIXELS` per axis and ``max_total`` pixels."""
    try:
        bounds = _footprint_bounds(ds.crs, ds.transform, ds.width, ds.height, utm)
    except Exception as exc:  # noqa: BLE001
        raise SceneRejected(file, f"cannot map footprint from {crs_short(ds.crs)} to {utm} "
                                  f"({type(exc).__name__})") from exc
    transform, width, height = snap_grid(bounds, gsd)
    if max(width, height) > MAX_GRID_PIXELS:
        raise SceneRejected(file, f"output grid {width}x{height} px exceeds {MAX_GRID_PIXELS} px per axis")
    if width * height > max_total:
        raise SceneRejected(file, f"output grid {width}x{height} px ({width * height:.3g} px) at {gsd:g} m exceeds "
                                  f"max_grid_pixels ({max_total:.3g})")
    return transform, width, height


def plan_scene(scene: Scene, *, targets: Sequence[float] = (0.3, 0.5), tile_size: int = 1024,
               max_grid_pixels: int = MAX_GRID_TOTAL) -> dict:
    """Inspect ``scene.image`` and return its "Prepared plan" record (``status == "ok"``).

    Raises ``SceneRejected(scene.image, reason)`` for: unreadable / corrupt / truncated files, no CRS,
    no geotransform (and no ``scene.georef``; GCPs / RPCs only), unsupported band counts, data types or
    block sizes, all pixels nodata, a blank (constant) image, a GSD coarser than 0.5 m, or a footprint that
    does not map to a sane grid (over ``max_grid_pixels`` or :data:`MAX_GRID_PIXELS` per axis; checked
    before any pixel is read).
    ``tile_size`` is accepted for the record's parameters and does not change the grid (the lattice is
    made by :func:`pipeline.raster.tiling.tile_jobs`; a mosaic's ``tiling`` anchors it: :mod:`pipeline.raster.blocks`).
    """
    file = scene.image
    with rasterio.Env(**GDAL_ENV), open_scene(scene) as ds:
        dtype = _check_georeference(ds, file)
        bands, alpha = _band_policy(ds, file, (scene.extra or {}).get("bands"))
        try:
            gsd_native, (lon, lat) = native_gsd_m(ds.crs, ds.transform, ds.width, ds.height)
        except Exception as exc:  # noqa: BLE001 - any projection failure is a bad georeference
            raise SceneRejected(file, f"cannot measure GSD: CRS {crs_short(native_crs(scene) or ds.crs)} does not "
                                      f"transform to WGS 84 ({type(exc).__name__})") from exc
        gsd = choose_target_gsd(gsd_native, targets=targets, file=file)
        utm = area_utm(scene, ds.crs) or utm_crs_for(lon, lat)
        transform, width, height = _utm_grid(ds, utm, gsd, file, max_grid_pixels)
        scale, low, high = _radiometry(ds, bands, dtype, alpha, file)
        downsampling = gsd_native < gsd / AREA_RESAMPLING_FACTOR
        nodata = ds.nodata
        return {
            "status": "ok",
            "reason": None,
            "file": str(file),
            "native": {
                "crs": crs_label(native_crs(scene) or ds.crs),
                "gsd": round(gsd_native, 4),
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtype": dtype,
                "nodata": None if nodata is None or (isinstance(nodata, float) and math.isnan(nodata))
                else float(nodata),
            },
            "grid": {"crs": utm, "transform": transform, "width": width, "height": height, "gsd": gsd},
            "resampling": {"image": IMAGE_AREA_METHOD if downsampling else "bilinear",
                           "label": "mode" if downsampling else "nearest"},
            "radiometry": {"bands": bands, "alpha_band": alpha, "scale": scale, "low": low, "high": high},
            "center_lonlat": [round(lon, 7), round(lat, 7)],
            **mosaic_tiling(scene, ds.crs, utm, gsd),
        }
