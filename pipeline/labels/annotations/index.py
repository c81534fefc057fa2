"""Index raster annotations: one band of class ids 0..8 (policies: the package docstring, "Raster annotations")."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.constants import NUM_CLASSES
from pipeline.errors import AnnotationRejected


def index_to_ids(band: np.ndarray, nodata: float | None, f: str) -> np.ndarray:
    if band.dtype.kind not in "uif":
        raise AnnotationRejected(f, f"index raster has data type {band.dtype}, expected integers 0..{NUM_CLASSES}")
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        band = np.where(band == nodata, 0, band)
    uniq, counts = np.unique(band, return_counts=True)
    ok = (uniq >= 0) & (uniq <= NUM_CLASSES) & (np.floor(uniq) == uniq) if band.dtype.kind == "f" else \
        (uniq >= 0) & (uniq <= NUM_CLASSES)
    if not ok.all():
        vals = [(v, int(c)) for v, c in zip(uniq[~ok].tolist(), counts[~ok])]
        vals.sort(key=lambda vc: (-vc[1], str(vc[0])))
        shown = ", ".join(f"{_num(v)} ({c} px)" for v, c in vals[:10])
        more = len(vals) - 10
        raise AnnotationRejected(
            f, f"values outside 0..{NUM_CLASSES}: {shown}" + (f" and {more} more" if more > 0 else ""))
    return band.astype(np.uint8)


def _num(v: Any) -> str:
    return str(int(v)) if float(v) == int(v) else repr(float(v))
