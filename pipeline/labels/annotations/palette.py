"""Palette raster annotations: RGB(A) pixels in the exact class colours, black = unlabelled (policies: the
package docstring, "Raster annotations")."""
from __future__ import annotations

import numpy as np

from pipeline.constants import CLASS_COLORS, UNLABELLED
from pipeline.errors import AnnotationRejected


def _hexes(codes: np.ndarray, counts: np.ndarray, limit: int = 10) -> str:
    order = sorted(range(len(codes)), key=lambda k: (-int(counts[k]), int(codes[k])))
    parts = [f"#{int(codes[k]):06X} ({int(counts[k])} px)" for k in order[:limit]]
    more = len(order) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


#: The class colours as 24-bit codes (:func:`colour_codes`) -> class id, black unlabelled.
PALETTE_IDS: dict[int, int] = {0: UNLABELLED, **{(r << 16) | (g << 8) | b: k for k, (r, g, b) in CLASS_COLORS.items()}}


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    """The 24-bit code ``0xRRGGBB`` of each pixel of a ``(3, h, w)`` uint8 array."""
    return (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2].astype(np.uint32)


def palette_to_ids(rgb: np.ndarray, alpha: np.ndarray | None, f: str) -> np.ndarray:
    """Exact colour match of a ``(3, h, w)`` uint8 array to the class colours (black = 0)."""
    codes = colour_codes(rgb)
    if alpha is not None:
        semi = (alpha != 0) & (alpha != 255)
        if semi.any():
            raise AnnotationRejected(f, f"{int(semi.sum())} semi-transparent pixels (alpha not 0 or 255)")
        codes = np.where(alpha == 0, np.uint32(0), codes)
    known = PALETTE_IDS
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    bad = np.array([int(c) not in known for c in uniq], dtype=bool)
    if bad.any():
        raise AnnotationRejected(f, "unknown colours (not a class colour or black): " + _hexes(uniq[bad], counts[bad]))
    lut = np.array([known[int(c)] for c in uniq], dtype=np.uint8)
    return lut[inverse.reshape(codes.shape)]


def expand_colour_table(band: np.ndarray, colormap: dict[int, tuple[int, ...]]) -> np.ndarray:
    """A one-band palette image expanded through its colour table: ``(4, h, w)`` uint8 RGBA (entries without
    alpha are opaque; indices missing from the table are transparent black)."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for k, rgba in colormap.items():
        lut[k] = rgba[:4] if len(rgba) >= 4 else (*rgba[:3], 255)
    return np.moveaxis(lut[band], -1, 0)
