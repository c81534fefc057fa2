"""The SpaceNet layout: ``spacenet/AOI_<k>_<City>_Train/{RGB-PanSharpen,geojson/buildings,landcover}/`` -- a
3-band uint16 (11-bit, 0..2047) EPSG:4326 GeoTIFF, CRS84 building GeoJSON and the label raster."""
from __future__ import annotations

import cv2
import numpy as np

from oem_demo.writers.common import SceneFile, apply_affine, geojson, track, write_tif
from pipeline.atomic import write_text


def write(f: SceneFile) -> str:
    sc = f.sc
    aoi = f"AOI_{sc.aoi}_{sc.name}"
    n = sc.number + f.index
    base = f.root / "spacenet" / f"{aoi}_Train"
    # 8-bit radiance -> 11-bit DN (a per-channel scalar; older OpenCV stubs do not list this overload, newer
    # ones type the result as an integer array: asarray states the float32 it is, without a copy)
    v = np.asarray(cv2.multiply(f.img, (6.6, 7.0, 7.6, 0.0)),  # type: ignore[call-overload, unused-ignore]
                   dtype=np.float32)
    v += np.float32(35.5)
    np.minimum(v, np.float32(2047), out=v)
    data = v.astype(np.uint16).transpose(2, 0, 1)
    write_tif(track(f.written, base / "RGB-PanSharpen" / f"RGB-PanSharpen_{aoi}_img{n}.tif"), data, sc.crs, f.tf)
    write_tif(track(f.written, base / "landcover" / f"landcover_{aoi}_img{n}.tif"), f.label[None], sc.crs, f.tf)
    rings = [apply_affine(f.tf, r) for r in f.rects_px]
    props = [{"building": "yes", "partialBuilding": 0, "partialDec": 0.0} for _ in rings]
    write_text(track(f.written, base / "geojson" / "buildings" / f"buildings_{aoi}_img{n}.geojson"),
               geojson(rings, sc.crs, 9, props))
    return f"spacenet/{aoi}_Train/RGB-PanSharpen/RGB-PanSharpen_{aoi}_img{n}.tif"
