"""The Inria layout: ``inria/train/{images,gt,landcover}/<city><n>.tif`` -- an RGB uint8 GeoTIFF in a UTM CRS,
the 255/0 building mask and the 8-class label, all on one grid."""
from __future__ import annotations

import cv2
import numpy as np

from oem_demo.writers.common import SceneFile, track, write_tif


def write(f: SceneFile) -> str:
    sc = f.sc
    stem = f"{sc.name}{sc.number + f.index}"
    base = f.root / "inria" / "train"
    rgb = cv2.convertScaleAbs(f.img).transpose(2, 0, 1)
    write_tif(track(f.written, base / "images" / f"{stem}.tif"), rgb, sc.crs, f.tf)
    write_tif(track(f.written, base / "gt" / f"{stem}.tif"), ((f.label == 8) * 255).astype(np.uint8)[None],
              sc.crs, f.tf)
    write_tif(track(f.written, base / "landcover" / f"{stem}.tif"), f.label[None], sc.crs, f.tf)
    return f"inria/train/images/{stem}.tif"
