"""Checks 4-5: every image and label file (checksum, raster format, grid, pixel counts) and no stray rasters."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.constants import NUM_CLASSES
from pipeline.release.validate.common import check_file_hash, exc_text, safe_rel

TRANSFORM_TOLERANCE = 1e-9
MAX_LABEL_VALUE = NUM_CLASSES


def _crs_str(crs: Any) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _fmt_transform(t: Any) -> str:
    return "[" + ", ".join(repr(float(v)) for v in t) + "]"


def _transform_equal(a: Any, b: Any) -> bool:
    try:
        a, b = [float(v) for v in a], [float(v) for v in b]
    except (TypeError, ValueError):
        return False
    return len(a) == len(b) == 6 and all(math.isclose(x, y, rel_tol=0, abs_tol=TRANSFORM_TOLERANCE)
                                         for x, y in zip(a, b))


def _read_raster(path: Path, read_band: bool) -> dict[str, Any]:
    """Grid, band count, dtypes and (optionally) band 1 of a raster; raises on unreadable files."""
    import rasterio

    with rasterio.open(path) as ds:
        info = {
            "crs": _crs_str(ds.crs),
            "transform": list(ds.transform)[:6],
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": sorted(set(ds.dtypes)),
        }
        if read_band and ds.count >= 1:
            info["band1"] = ds.read(1)
    return info


def _grid_vs_manifest(rel: str, got: dict[str, Any], rec: dict[str, Any], out: list[str]) -> None:
    w, h = rec.get("width"), rec.get("height")
    if (got["width"], got["height"]) != (w, h):
        out.append(f"{rel}: shape {got['width']}x{got['height']}, expected {w}x{h} (width/height in manifest)")
    if got["crs"] != rec.get("crs"):
        out.append(f"{rel}: CRS {got['crs']}, expected {rec.get('crs')} (crs in manifest)")
    if not _transform_equal(got["transform"], rec.get("transform")):
        exp = rec.get("transform")
        exp_s = _fmt_transform(exp) if isinstance(exp, list) and len(exp) == 6 else repr(exp)
        out.append(f"{rel}: transform {_fmt_transform(got['transform'])}, expected {exp_s} (transform in manifest)")


def _grid_vs_image(rel: str, label: dict[str, Any], image: dict[str, Any], out: list[str]) -> None:
    diffs = []
    if label["crs"] != image["crs"]:
        diffs.append(f"CRS {label['crs']} vs {image['crs']}")
    if not _transform_equal(label["transform"], image["transform"]):
        diffs.append(f"transform {_fmt_transform(label['transform'])} vs {_fmt_transform(image['transform'])}")
    if (label["width"], label["height"]) != (image["width"], image["height"]):
        diffs.append(f"shape {label['width']}x{label['height']} vs {image['width']}x{image['height']}")
    if diffs:
        out.append(f"{rel}: grid differs from its image ({'; '.join(diffs)})")


def _check_class_pixels(rel: str, band: np.ndarray, rec: dict[str, Any], out: list[str]) -> None:
    """The label's per-class pixel counts (1..8) and its 0-pixels must equal ``class_pixels`` and
    ``unlabelled_pixels`` of the manifest (skipped when the manifest values are malformed)."""
    cp, unl = rec.get("class_pixels"), rec.get("unlabelled_pixels")
    if not isinstance(cp, dict) or not isinstance(unl, int):
        return
    if band.dtype == np.uint8:
        hist = np.bincount(band.ravel(), minlength=256)
        got = {v: int(hist[v]) for v in range(MAX_LABEL_VALUE + 1)}
    else:
        values, counts = np.unique(band, return_counts=True)
        got = {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist()) if float(v).is_integer()}
    diffs = [f"class {c}: manifest {cp.get(str(c))}, file {got.get(c, 0)}"
             for c in range(1, MAX_LABEL_VALUE + 1) if cp.get(str(c)) != got.get(c, 0)]
    if unl != got.get(0, 0):
        diffs.append(f"unlabelled: manifest {unl}, file {got.get(0, 0)}")
    if diffs:
        out.append(f"{rel}: pixel counts differ from the manifest ({'; '.join(diffs)})")


def check_record_files(root: Path, rec: dict[str, Any], out: list[str]) -> None:
    image_rel, label_rel = safe_rel(rec.get("image")), safe_rel(rec.get("label"))
    image_info = None
    if image_rel and check_file_hash(root, image_rel, rec.get("sha256_image"), out) is not None:
        try:
            image_info = _read_raster(root / image_rel, read_band=False)
        except Exception as exc:  # rasterio raises several types for unreadable files
            out.append(f"{image_rel}: cannot be read as a raster ({exc_text(exc, root)})")
        if image_info is not None:
            if image_info["count"] != 3:
                out.append(f"{image_rel}: {image_info['count']} bands, expected 3")
            bad = [d for d in image_info["dtypes"] if d != "uint8"]
            if bad:
                out.append(f"{image_rel}: dtype {', '.join(bad)}, expected uint8")
            _grid_vs_manifest(image_rel, image_info, rec, out)
    if label_rel and check_file_hash(root, label_rel, rec.get("sha256_label"), out) is not None:
        try:
            label_info = _read_raster(root / label_rel, read_band=True)
        except Exception as exc:
            out.append(f"{label_rel}: cannot be read as a raster ({exc_text(exc, root)})")
            return
        if label_info["count"] != 1:
            out.append(f"{label_rel}: {label_info['count']} bands, expected 1")
        bad = [d for d in label_info["dtypes"] if d != "uint8"]
        if bad:
            out.append(f"{label_rel}: dtype {', '.join(bad)}, expected uint8")
        band = label_info.get("band1")
        if band is not None:
            if band.dtype == np.uint8:
                hist = np.bincount(band.ravel(), minlength=256)
                outside = [int(v) for v in np.nonzero(hist[MAX_LABEL_VALUE + 1:])[0] + MAX_LABEL_VALUE + 1]
            else:
                values = np.unique(band)
                outside = [v.item() for v in values if not (0 <= v <= MAX_LABEL_VALUE and float(v).is_integer())]
            if outside:
                shown = outside[:20] + (["…"] if len(outside) > 20 else [])
                out.append(f"{label_rel}: label values outside 0..{MAX_LABEL_VALUE}: [{', '.join(map(str, shown))}]")
            _check_class_pixels(label_rel, band, rec, out)
        if image_info is not None:
            _grid_vs_image(label_rel, label_info, image_info, out)
        else:
            _grid_vs_manifest(label_rel, label_info, rec, out)
