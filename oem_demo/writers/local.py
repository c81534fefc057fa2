"""The local (plain GeoTIFF folder) layout: ``local/<region>/<name>.tif``, ``local/labels/<region>/<name>.tif``
and ``local/footprints/<region>/<name>.geojson`` -- RGB (or RGBA) uint8 GeoTIFFs in EPSG:3857 or UTM (some with
a nodata value or an alpha border), the label raster and building polygons in the image CRS (GeoJSON with a
``crs`` member)."""
from __future__ import annotations

import cv2
import numpy as np

from oem_demo.writers.common import SceneFile, apply_affine, geojson, track, write_tif
from pipeline.atomic import write_text


def write(f: SceneFile) -> str:
    sc = f.sc
    stem = f"{sc.name}_{sc.number + f.index}"
    rgb = cv2.convertScaleAbs(f.img)
    nodata: float | None = None
    valid = f.valid
    if valid is not None:
        np.maximum(rgb, 1, out=rgb, where=valid[..., None])  # 0 is reserved for nodata
        rgb[~valid] = 0
    bands = rgb.transpose(2, 0, 1)
    if sc.nodata == "alpha":
        assert valid is not None  # a scene with a nodata border has a valid-area mask
        bands = np.concatenate([bands, (valid * 255).astype(np.uint8)[None]])
    elif sc.nodata == "value":
        nodata = 0
    write_tif(track(f.written, f.root / "local" / sc.region / f"{stem}.tif"), np.ascontiguousarray(bands), sc.crs,
              f.tf, nodata=nodata, alpha=sc.nodata == "alpha")
    write_tif(track(f.written, f.root / "local" / "labels" / sc.region / f"{stem}.tif"), f.label[None], sc.crs,
              f.tf, nodata=None)
    rings = [apply_affine(f.tf, r) for r in f.rects_px]
    nd = 9 if sc.crs == "EPSG:4326" else 3
    props = [{"building": "yes", "id": k + 1} for k in range(len(rings))]
    write_text(track(f.written, f.root / "local" / "footprints" / sc.region / f"{stem}.geojson"),
               geojson(rings, sc.crs, nd, props))
    return f"local/{sc.region}/{stem}.tif"
