"""Reading candidate tiles at the model's size, and the hand-crafted colour / texture features of a tile."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling

from pipeline.constants import NUM_CLASSES

#: Side length on which :func:`image_features` computes its statistics (larger inputs are downsampled).
FEATURE_SIZE = 256

_PERCENTILES = (5, 25, 50, 75, 95)
_HUE_BINS = 8
_ORIENT_BINS = 8


def _image_feature_names() -> list[str]:
    names: list[str] = []
    for ch in ("r", "g", "b"):
        names += [f"{ch}_mean", f"{ch}_std"] + [f"{ch}_p{p}" for p in _PERCENTILES]
    names += ["hue_cos", "hue_sin", "hue_concentration", "sat_mean", "sat_std", "val_mean", "val_std"]
    names += [f"hue_hist_{i}" for i in range(_HUE_BINS)]
    names += ["grad_mean", "grad_std", "grad_p90", "sobel_edge_frac", "canny_edge_frac",
              "log_laplacian_var", "log_laplacian_var_half", "local_std_mean", "local_std_std"]
    names += [f"orient_hist_{i}" for i in range(_ORIENT_BINS)]
    names += ["colour_entropy", "colour_change_frac", "nodata_frac"]
    return names


#: Names of the values returned by :func:`image_features`, in order.
IMAGE_FEATURE_NAMES: tuple[str, ...] = tuple(_image_feature_names())


def _colour_features(img: np.ndarray) -> list[float]:
    """Per RGB channel mean, std and percentiles; HSV circular hue, saturation and value statistics and the
    saturation-weighted hue histogram."""
    values: list[float] = []
    rgb = img.reshape(-1, 3).astype(np.float32)
    pct = np.percentile(rgb, _PERCENTILES, axis=0)  # (5, 3)
    for c in range(3):
        values += [float(rgb[:, c].mean()), float(rgb[:, c].std())] + [float(v) for v in pct[:, c]]

    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float64)
    hue = hsv[:, 0] * (2.0 * math.pi / 180.0)
    sat = hsv[:, 1] / 255.0
    wsum = float(sat.sum()) + 1e-9
    hc = float((np.cos(hue) * sat).sum() / wsum)
    hs = float((np.sin(hue) * sat).sum() / wsum)
    values += [hc, hs, math.hypot(hc, hs), float(sat.mean()), float(sat.std()),
               float(hsv[:, 2].mean() / 255.0), float(hsv[:, 2].std() / 255.0)]
    hue_hist = np.bincount(np.minimum((hsv[:, 0] * _HUE_BINS / 180.0).astype(np.int64), _HUE_BINS - 1),
                           weights=sat, minlength=_HUE_BINS) / len(sat)
    values += [float(v) for v in hue_hist]
    return values


def _texture_features(img: np.ndarray) -> list[float]:
    """Gradient, edge, Laplacian and local-contrast statistics of the grey image, and the orientation
    histogram."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    gf = grey.astype(np.float32)
    gx = cv2.Sobel(gf, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gf, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    lap = cv2.Laplacian(gf, cv2.CV_32F, ksize=3)
    half = cv2.pyrDown(gf) if min(gf.shape) >= 2 else gf
    lap_half = cv2.Laplacian(half, cv2.CV_32F, ksize=3)
    mean = cv2.blur(gf, (7, 7))
    sq = cv2.blur(gf * gf, (7, 7))
    local_std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    canny = cv2.Canny(grey, 50, 150)
    values = [float(mag.mean()), float(mag.std()), float(np.percentile(mag, 90)), float((mag > 64).mean()),
              float((canny > 0).mean()), math.log1p(float(lap.var())), math.log1p(float(lap_half.var())),
              float(local_std.mean()), float(local_std.std())]
    orient = np.mod(np.arctan2(gy, gx), np.pi)
    obins = np.minimum((orient * (_ORIENT_BINS / np.pi)).astype(np.int64), _ORIENT_BINS - 1)
    ohist = np.bincount(obins.ravel(), weights=mag.ravel().astype(np.float64), minlength=_ORIENT_BINS)
    ohist = ohist / (ohist.sum() + 1e-9)
    return values + [float(v) for v in ohist]


def _pattern_features(img: np.ndarray) -> list[float]:
    """Colour entropy of the 3-bit-per-channel colours, the share of neighbouring pixels whose quantised
    colour differs, and the nodata fraction."""
    q = (img >> 5).astype(np.int64)
    code = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]
    p = np.bincount(code.ravel(), minlength=512).astype(np.float64)
    p = p[p > 0] / code.size
    entropy = float(-(p * np.log2(p)).sum())
    changes = (np.count_nonzero(code[:, 1:] != code[:, :-1]) + np.count_nonzero(code[1:, :] != code[:-1, :]))
    pairs = code[:, 1:].size + code[1:, :].size
    nodata = float((img.max(axis=2) == 0).mean())
    return [entropy, changes / max(pairs, 1), nodata]


def image_features(image: np.ndarray, *, size: int = FEATURE_SIZE) -> np.ndarray:
    """Fixed-length feature vector (``len(IMAGE_FEATURE_NAMES)`` float64 values) of an RGB tile.

    ``image`` is ``(H, W, >=3)`` uint8 (only the first 3 bands are used).  When it is larger than
    ``size`` x ``size`` it is first downsampled to that size with ``cv2.INTER_AREA`` (pixel-area
    averaging); smaller inputs are used as they are (no upsampling).  Features (no model embedding
    here; the model features are added by :func:`~pipeline.dataset.selection.model.cross_fit`):

    * per RGB channel: mean, std and the 5/25/50/75/95th percentiles (21);
    * HSV (OpenCV, hue 0..179): saturation-weighted circular hue mean (cos, sin) and concentration,
      saturation mean/std, value mean/std, 8-bin saturation-weighted hue histogram (15);
    * texture/edges on the grey image: Sobel (3x3) gradient magnitude mean/std/90th percentile, the
      fraction of pixels with magnitude > 64, the Canny (50, 150) edge fraction, log(1 + variance of
      the Laplacian) at full and half resolution, mean/std of the local (7x7) standard deviation and an
      8-bin magnitude-weighted, unsigned gradient-orientation histogram (17);
    * colour entropy (bits) of the 3-bit-per-channel quantised colours (512 bins), the fraction of
      horizontally/vertically adjacent pixel pairs whose quantised colour differs, and the nodata
      fraction (pixels 0 in all bands, the tiling policy's nodata fill) (3).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"image must be (H, W, >=3), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {img.dtype}")
    img = np.ascontiguousarray(img[..., :3])
    h, w = img.shape[:2]
    if h > size or w > size:
        img = cv2.resize(img, (min(w, size), min(h, size)), interpolation=cv2.INTER_AREA)

    values = _colour_features(img) + _texture_features(img) + _pattern_features(img)

    out = np.asarray(values, dtype=np.float64)
    assert out.shape == (len(IMAGE_FEATURE_NAMES),)
    return out


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Bands 1-3 of a uint8 GeoTIFF as ``(size, size, 3)`` uint8, read with GDAL average resampling."""
    with rasterio.open(path) as src:
        if src.count < 3:
            raise ValueError(f"{path}: needs 3 bands, has {src.count}")
        if src.dtypes[0] != "uint8":
            raise ValueError(f"{path}: image must be uint8, is {src.dtypes[0]}")
        arr = src.read([1, 2, 3], out_shape=(3, size, size), resampling=Resampling.average)
    return np.ascontiguousarray(np.moveaxis(arr, 0, -1))


def read_label(path: str | Path, size: int) -> np.ndarray:
    """Band 1 of a label GeoTIFF as ``(size, size)`` uint8 ids 0..8, read with GDAL mode resampling."""
    with rasterio.open(path) as src:
        arr = src.read(1, out_shape=(size, size), resampling=Resampling.mode)
    if arr.size and (arr.min() < 0 or arr.max() > NUM_CLASSES):
        raise ValueError(f"{path}: label ids must be in 0..{NUM_CLASSES}, found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)
