"""What the layout writers share: deterministic GeoTIFF / PNG / JSON / GeoJSON / WKT writing (fixed creation
options, no timestamps, sorted keys, rounded coordinates), each file atomically."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from oem_demo.scenes import DemoScene
from pipeline.atomic import atomic_path


@dataclass
class SceneFile:
    """One rendered demo scene file, ready to be written in a layout: the demo ``root``, the table row, the
    file's ``index`` in the row, its geotransform ``tf``, the rendered ``img`` (float32 RGB 0..255), ``label``
    and ``valid`` mask, the buildings as continuous pixel rectangles ``rects_px``, the scene's generator (for
    ids and metadata) and the list of files ``written`` by this run."""

    root: Path
    sc: DemoScene
    index: int
    tf: tuple[float, ...]
    img: np.ndarray
    label: np.ndarray
    valid: np.ndarray | None
    rects_px: list[np.ndarray]
    rng: np.random.Generator
    written: list[Path]


def coord(v: float, nd: int) -> float:
    r = round(float(v), nd)
    return 0.0 if r == 0 else r


def apply_affine(tf: tuple[float, ...], pts_px: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = tf
    return np.stack([a * pts_px[:, 0] + b * pts_px[:, 1] + c, d * pts_px[:, 0] + e * pts_px[:, 1] + f], 1)


def write_tif(path: Path, data: np.ndarray, crs: str, tf: tuple[float, ...], nodata: float | None = None,
               alpha: bool = False) -> None:
    """Tiled DEFLATE GeoTIFF; ``data`` (bands, h, w)."""
    count, h, w = data.shape
    block = 512 if min(w, h) >= 2048 else 256
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name, crs=crs,
                   transform=rasterio.Affine(*tf), tiled=True, blockxsize=block, blockysize=block,
                   compress="deflate", zlevel=1, interleave="pixel", predictor=2 if count >= 3 else 1)
    if nodata is not None:
        profile["nodata"] = nodata
    if count >= 3:
        profile["photometric"] = "RGB"
    if alpha:
        profile["alpha"] = "YES"
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if alpha:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]


def write_png(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def crs_member(crs: str) -> dict:
    code = crs.split(":")[1]
    name = "urn:ogc:def:crs:OGC:1.3:CRS84" if code == "4326" else f"urn:ogc:def:crs:EPSG::{code}"
    return {"type": "name", "properties": {"name": name}}


def geojson(rings: list[np.ndarray], crs: str, nd: int, props: list[dict]) -> str:
    feats = []
    for ring, p in zip(rings, props):
        coords = [[coord(x, nd), coord(y, nd)] for x, y in ring]
        coords.append(coords[0])
        feats.append({"type": "Feature", "properties": p, "geometry": {"type": "Polygon", "coordinates": [coords]}})
    return json_text({"type": "FeatureCollection", "crs": crs_member(crs), "features": feats})


def uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def wkt(ring: np.ndarray, nd: int) -> str:
    first = f"{coord(ring[0][0], nd)!r} {coord(ring[0][1], nd)!r}"
    pts = [f"{coord(x, nd)!r} {coord(y, nd)!r}" for x, y in ring] + [first]
    return "POLYGON ((" + ", ".join(pts) + "))"


def track(written: list[Path], path: Path) -> Path:
    """Record ``path`` in ``written`` (the files of this run) and return it."""
    written.append(path)
    return path
