"""Read only what is needed of a (remote) Cloud-Optimized GeoTIFF, and check a file against its STAC item.

* :func:`window_for_bbox`: the pixel window of a dataset that covers a WGS 84 bbox (edges densified,
  rounded outward, clipped to the image).
* :func:`cog_problems`: why a dataset is not a COG (rio-cogeo's validator), [] when it is.
* :func:`extract_window`: write that window as a local GeoTIFF with the source's georeference, bands,
  data type, nodata, colour interpretation and mask, and the same pixels (lossless DEFLATE, 512x512
  tiles), reading block rows so that memory stays bounded; written atomically.
* :func:`verify_georef`: the item's declared CRS and GSD against the file.  A CRS that differs is a
  reason to reject the item (its footprint and bbox, which chose and windowed it, then describe
  another place than the pixels); a GSD that differs is only recorded (STAC ``gsd`` is often the
  sensor's nominal resolution, e.g. Maxar's 0.5-0.8 m for a 0.3 m pan-sharpened ``visual`` asset, or in
  CRS units, as in some OpenAerialMap items; the pipeline measures the GSD from the file anyway).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.warp import transform_bounds
from rasterio.windows import Window

#: Relative difference up to which a declared GSD counts as agreeing with the file's.
GSD_TOLERANCE = 0.1
#: Rows read (and written) at a time when extracting a window.
CHUNK_ROWS = 512


def window_for_bbox(ds: rasterio.io.DatasetReader, bbox: tuple[float, float, float, float]) -> Window | None:
    """The window of ``ds`` covering ``bbox`` (lon/lat), whole pixels, clipped to the image; None when
    they do not overlap."""
    west, south, east, north = transform_bounds("EPSG:4326", ds.crs, *bbox, densify_pts=21)
    inv = ~ds.transform
    corners = [inv @ (x, y) for x in (west, east) for y in (south, north)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    c0, c1 = max(0, math.floor(min(cols))), min(ds.width, math.ceil(max(cols)))
    r0, r1 = max(0, math.floor(min(rows))), min(ds.height, math.ceil(max(rows)))
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def is_full(ds: rasterio.io.DatasetReader, window: Window) -> bool:
    box = (int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    return box == (0, 0, ds.width, ds.height)


def cog_problems(path: str, config: dict | None = None) -> list[str]:
    """The errors rio-cogeo's validator finds (not a GeoTIFF, not tiled, header not at the start,
    external overviews ...); warnings such as "no overviews" do not count."""
    from rio_cogeo.cogeo import cog_validate

    try:
        _, errors, _ = cog_validate(path, config=config or {}, quiet=True)
    except Exception as exc:  # noqa: BLE001  (anything the validator cannot read is not a COG)
        return [f"{type(exc).__name__}: {exc}"]
    return list(errors)


def _profile(ds: rasterio.io.DatasetReader, window: Window) -> dict[str, Any]:
    predictor = 2 if np.dtype(ds.dtypes[0]).kind in "iu" else 3 if np.dtype(ds.dtypes[0]).kind == "f" else 1
    profile = {
        "driver": "GTiff", "width": int(window.width), "height": int(window.height), "count": ds.count,
        "dtype": ds.dtypes[0], "crs": ds.crs, "transform": ds.window_transform(window), "nodata": ds.nodata,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": predictor,
        "interleave": "pixel", "BIGTIFF": "IF_SAFER",
    }
    if ds.count == 3 and ds.dtypes[0] == "uint8":
        profile["photometric"] = "RGB"
    return profile


def _has_mask(ds: rasterio.io.DatasetReader) -> bool:
    """A dataset-wide mask (internal mask band), not one implied by nodata or alpha."""
    flags = ds.mask_flag_enums[0] if ds.count else []
    return MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and ds.nodata is None


def extract_window(ds: rasterio.io.DatasetReader, window: Window, dest: Path) -> None:
    """Write ``window`` of ``ds`` to ``dest`` (see the module docstring)."""
    from pipeline import atomic

    mask = _has_mask(ds)
    with atomic.atomic_path(dest) as tmp, rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp, "w", **_profile(ds, window)) as out:
            interp = list(ds.colorinterp)
            if interp and not all(c == ColorInterp.undefined for c in interp):
                out.colorinterp = interp
            for row in range(0, int(window.height), CHUNK_ROWS):
                h = min(CHUNK_ROWS, int(window.height) - row)
                src = Window(window.col_off, window.row_off + row, window.width, h)
                dst = Window(0, row, window.width, h)
                out.write(ds.read(window=src), window=dst)
                if mask:
                    out.write_mask(ds.read_masks(1, window=src), window=dst)


def _same_crs(declared: str, actual: CRS) -> bool:
    try:
        want = CRS.from_user_input(declared)
    except Exception:  # noqa: BLE001  (an unparsable declaration cannot agree)
        return False
    if want.to_epsg() is not None and actual.to_epsg() is not None:
        return want.to_epsg() == actual.to_epsg()
    return want == actual


def verify_georef(ds: rasterio.io.DatasetReader, declared_crs: str | None, declared_gsd: float | None
                  ) -> tuple[str | None, dict[str, Any]]:
    """``(reject_reason_or_None, checks)``; ``checks`` records what the item said and what the file has."""
    from pipeline.raster.gsd import crs_label, native_gsd_m

    checks: dict[str, Any] = {}
    if ds.crs is None:
        return "the file has no CRS", {"crs": {"item": declared_crs, "file": None, "agrees": False}}
    file_crs = crs_label(ds.crs)
    if declared_crs is not None:
        agrees = _same_crs(declared_crs, ds.crs)
        checks["crs"] = {"item": declared_crs, "file": file_crs, "agrees": agrees}
        if not agrees:
            return f"the item declares CRS {declared_crs} (proj:code/proj:epsg) but the file is {file_crs}", checks
    else:
        checks["crs"] = {"item": None, "file": file_crs, "agrees": None}
    try:
        gsd_m, _ = native_gsd_m(ds.crs, ds.transform, ds.width, ds.height)
    except ValueError:
        gsd_m = None
    unit = abs(ds.transform.a) if ds.transform.b == 0 else math.hypot(ds.transform.a, ds.transform.d)
    gsd: dict[str, Any] = {"item": declared_gsd, "file_m": round(gsd_m, 4) if gsd_m else None,
                           "file_crs_units": unit}
    if declared_gsd is not None:
        close = lambda a, b: b is not None and b > 0 and abs(a - b) <= GSD_TOLERANCE * b  # noqa: E731
        gsd["agrees"] = close(declared_gsd, gsd_m) or close(declared_gsd, unit)
        if not gsd["agrees"]:
            gsd["note"] = (f"item gsd {declared_gsd:g} differs from the file's {gsd_m:.3f} m pixels "
                           "(kept: the GSD rule uses the file)" if gsd_m else "item gsd differs from the file")
    checks["gsd"] = gsd
    return None, checks
