"""Choose which tiles of a region enter the release: OpenEarthMap's loss-driven ("hard image") sampling.

OpenEarthMap keeps 50-70 images of 1024x1024 per region.  Where a source offers many more images of a
region, the paper labels images sequentially (every 10th), trains a segmentation model on them, fits a
regression model that estimates each image's loss and adds the images with the highest predicted loss.
This module implements that procedure as pure functions (no Luigi).

Method of :func:`select_hard_images`
------------------------------------
1. **Labelled subset.**  The candidates at positions ``0, k, 2k, ...`` of the caller's (stable) order that
   have a label.  Labels with no labelled pixel (all 0) stay in the subset but give no loss.
2. **Reading.**  Every image is read once, downsampled to ``size`` x ``size`` with GDAL ``average``
   resampling (box averaging for 1024 -> 256); labels with ``mode`` resampling (labels never interpolate).
3. **Cross-fitted segmentation model.**  A small U-Net (:class:`SmallUNet`: 3 levels, 16-32-64 channels,
   no normalisation layers, 9 output classes, class 0 = ``ignore_index``) is trained ``folds`` times (default 3; fewer
   when the subset is small, so that every held-out part has >= 2 images): the trainable labelled images
   are dealt into folds by a seeded permutation and fold model *f* is trained on all other folds
   (i.e. a 2/3 : 1/3 train/held-out split for 3 folds).  Training: Adam (lr ``lr``, 3e-3), batch 1, ``epochs``
   passes over the fold's training images, random rot90/flip augmentation, cross-entropy with
   ``ignore_index=0``.  Every fold model starts from the same seeded initialisation.
4. **Honest loss targets.**  Each labelled image's loss (mean per-pixel cross-entropy over its labelled
   pixels) is measured with the fold model that did *not* see it, so every target is a held-out loss.
   The regressor is fitted on these held-out losses only (training losses would be biased low).
5. **Features** per image (``FEATURE_NAMES``): the hand-crafted :func:`image_features` (colour, HSV,
   edge/texture statistics on the ``size`` copy) plus model features from one fold model: the U-Net
   bottleneck embedding (64 channels, global average pooled), mean predictive entropy, mean max
   probability, predicted class fractions and the predicted-label boundary density.  A labelled image
   uses its held-out fold model; any other candidate uses fold model ``index % folds`` (round robin), so
   both see a model that was not trained on them.
6. **Loss regressor.**  ``RandomForestRegressor`` (fixed ``random_state``) on those features; its quality
   is reported as the Spearman rho between the held-out losses and ``cross_val_predict`` predictions
   (``KFold``, up to 5 folds, shuffled with a fixed seed).  The regressor fitted on all labelled images
   then predicts the loss of every candidate.
7. **Filling the quota.**  The labelled subset is always selected (reason ``"labelled"``) when it fits;
   of the remaining quota, ``round(random_fraction * remaining)`` candidates are drawn by seeded random
   sampling (``"random"``) and the rest are the unselected candidates with the highest predicted loss
   (``"hard"``, ties by position).  When the labelled subset alone exceeds the quota, the same split is
   applied within it (random share, then highest measured loss).

Fallbacks: ``len(candidates) <= quota`` -> everything, reason ``"all"``, no model; fewer than 4 trainable
labelled images -> labelled images plus seeded random filling, no model.  Both record why in
``"fallback"``.

Determinism: seeds are derived from ``seed`` with SHA-256 (never Python's ``hash()``); torch runs with
``torch.manual_seed`` inside a forked RNG state, ``torch.use_deterministic_algorithms(True)`` and a
fixed thread count (default 1: the reference machine's 2 cores are shared; more threads oversubscribe), all restored afterwards.  The same inputs, seed and machine give an
identical result dict (float reductions may differ between CPU instruction sets or torch builds).
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling
from torch import nn

from pipeline.scene import NUM_CLASSES, UNLABELLED

#: Output classes of the segmentation model: 0 (unlabelled, ignored in the loss) + the 8 classes.
MODEL_CLASSES = NUM_CLASSES + 1
#: Fewest trainable labelled images with which a model is trained (else random fallback).
MIN_LABELLED = 4
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


# --------------------------------------------------------------------------------------------------
# Hand-crafted image features
# --------------------------------------------------------------------------------------------------

def image_features(image: np.ndarray, *, size: int = FEATURE_SIZE) -> np.ndarray:
    """Fixed-length feature vector (``len(IMAGE_FEATURE_NAMES)`` float64 values) of an RGB tile.

    ``image`` is ``(H, W, >=3)`` uint8 (only the first 3 bands are used).  When it is larger than
    ``size`` x ``size`` it is first downsampled to that size with ``cv2.INTER_AREA`` (pixel-area
    averaging); smaller inputs are used as they are (no upsampling).  Features (no model embedding
    here; the model features are added by :func:`select_hard_images`):

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
    values += [float(mag.mean()), float(mag.std()), float(np.percentile(mag, 90)), float((mag > 64).mean()),
               float((canny > 0).mean()), math.log1p(float(lap.var())), math.log1p(float(lap_half.var())),
               float(local_std.mean()), float(local_std.std())]
    orient = np.mod(np.arctan2(gy, gx), np.pi)
    obins = np.minimum((orient * (_ORIENT_BINS / np.pi)).astype(np.int64), _ORIENT_BINS - 1)
    ohist = np.bincount(obins.ravel(), weights=mag.ravel().astype(np.float64), minlength=_ORIENT_BINS)
    ohist = ohist / (ohist.sum() + 1e-9)
    values += [float(v) for v in ohist]

    q = (img >> 5).astype(np.int64)
    code = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]
    p = np.bincount(code.ravel(), minlength=512).astype(np.float64)
    p = p[p > 0] / code.size
    entropy = float(-(p * np.log2(p)).sum())
    changes = (np.count_nonzero(code[:, 1:] != code[:, :-1]) + np.count_nonzero(code[1:, :] != code[:-1, :]))
    pairs = code[:, 1:].size + code[1:, :].size
    nodata = float((img.max(axis=2) == 0).mean())
    values += [entropy, changes / max(pairs, 1), nodata]

    out = np.asarray(values, dtype=np.float64)
    assert out.shape == (len(IMAGE_FEATURE_NAMES),)
    return out


# --------------------------------------------------------------------------------------------------
# Segmentation model
# --------------------------------------------------------------------------------------------------

def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """Compact U-Net: 3 levels (``widths`` channels, default 16-32-64), two 2x2 max-pools, transposed-conv
    upsampling with skip concatenation, double 3x3 conv (with bias) + ReLU blocks, 1x1 head with
    ``classes`` outputs; PyTorch's default initialisation.  No normalisation layers: per-image
    GroupNorm/InstanceNorm removes the absolute colour that identifies land-cover classes (it trained
    markedly slower in a comparison on synthetic tiles) and BatchNorm's running statistics are
    unreliable after the few dozen steps trained here.  Input side lengths must be divisible by 4.
    ``forward(x, return_embedding=True)`` also returns the bottleneck map (``widths[2]`` channels)."""

    def __init__(self, in_channels: int = 3, classes: int = MODEL_CLASSES,
                 widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.widths = (w1, w2, w3)
        self.enc1 = _block(in_channels, w1)
        self.enc2 = _block(w1, w2)
        self.bottleneck = _block(w2, w3)
        self.up2 = nn.ConvTranspose2d(w3, w2, 2, stride=2)
        self.dec2 = _block(2 * w2, w2)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = _block(2 * w1, w1)
        self.head = nn.Conv2d(w1, classes, 1)

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        logits = self.head(d1)
        return (logits, b) if return_embedding else logits


def describe_model(model: SmallUNet) -> str:
    w1, w2, w3 = model.widths
    return (f"SmallUNet(levels=3, channels={w1}-{w2}-{w3}, norm=none, up=ConvTranspose2d, "
            f"classes={MODEL_CLASSES}, ignore_index={UNLABELLED})")


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of the state dict serialised deterministically: for each key in sorted order, the key,
    dtype and shape (UTF-8, NUL-separated) followed by the tensor's contiguous little-endian CPU bytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        arr = t.numpy()
        h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


MODEL_FEATURE_NAMES: tuple[str, ...] = tuple(
    [f"emb_{i:02d}" for i in range(64)]
    + ["pred_entropy_mean", "pred_maxprob_mean"]
    + [f"pred_frac_{c}" for c in range(1, NUM_CLASSES + 1)]
    + ["pred_boundary_frac"]
)


def _to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, scaled to about [-2, 2]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.25


def _model_outputs(model: SmallUNet, images: np.ndarray, labels: Optional[np.ndarray],
                   device: torch.device) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Model features (``MODEL_FEATURE_NAMES``) and, given labels, the per-image mean cross-entropy over
    labelled pixels (NaN for an image without labelled pixels)."""
    model.eval()
    with torch.no_grad():
        logits, emb = model(_to_input(images, device), return_embedding=True)
        emb_pooled = emb.mean(dim=(2, 3))
        if emb_pooled.shape[1] != 64:  # keep the feature vector's fixed length for other widths
            emb_pooled = F.adaptive_avg_pool1d(emb_pooled[:, None, :], 64)[:, 0, :]
        logp = F.log_softmax(logits, dim=1)
        prob = logp.exp()
        entropy = -(prob * logp).sum(dim=1).mean(dim=(1, 2))
        maxprob = prob.max(dim=1).values.mean(dim=(1, 2))
        pred = logits[:, 1:].argmax(dim=1)  # 0..7 -> classes 1..8
        fracs = torch.stack([(pred == c).float().mean(dim=(1, 2)) for c in range(NUM_CLASSES)], dim=1)
        boundary = 0.5 * ((pred[:, :, 1:] != pred[:, :, :-1]).float().mean(dim=(1, 2))
                          + (pred[:, 1:, :] != pred[:, :-1, :]).float().mean(dim=(1, 2)))
        feats = torch.cat([emb_pooled, entropy[:, None], maxprob[:, None], fracs, boundary[:, None]], dim=1)
        losses = None
        if labels is not None:
            y = torch.from_numpy(np.ascontiguousarray(labels)).to(device).long()
            ce = F.cross_entropy(logits, y, ignore_index=UNLABELLED, reduction="none")
            valid = (y != UNLABELLED).float()
            count = valid.sum(dim=(1, 2))
            losses = ((ce * valid).sum(dim=(1, 2)) / count.clamp(min=1)).double()
            losses = torch.where(count > 0, losses, torch.full_like(losses, float("nan"))).cpu().numpy()
    return feats.double().cpu().numpy(), losses


def _train(model: SmallUNet, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
           lr: float, generator: torch.Generator, device: torch.device) -> None:
    """``epochs`` passes over the images in seeded random order, batches of ``batch_size`` with a
    seeded random rot90 (0-3 quarter turns) and horizontal flip per batch; Adam, cross-entropy with
    ``ignore_index=0``."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = _to_input(images, device)
    y_all = torch.from_numpy(np.ascontiguousarray(labels)).to(device).long()
    n = len(images)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x, y = x_all[idx], y_all[idx]
            aug = torch.randint(0, 8, (1,), generator=generator).item()
            if aug & 4:
                x, y = torch.flip(x, dims=(3,)), torch.flip(y, dims=(2,))
            quarter = aug & 3
            if quarter:
                x, y = torch.rot90(x, quarter, dims=(2, 3)), torch.rot90(y, quarter, dims=(1, 2))
            loss = F.cross_entropy(model(x), y, ignore_index=UNLABELLED)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@contextmanager
def _torch_determinism(seed: int, threads: int, device: torch.device) -> Iterator[None]:
    """Seeded, deterministic, fixed-thread torch; restores the global settings afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        try:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            torch.manual_seed(seed)
            yield
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


# --------------------------------------------------------------------------------------------------
# Reading, seeds, helpers
# --------------------------------------------------------------------------------------------------

def derive_seed(seed: int | str, *parts: Any) -> int:
    """A 63-bit seed from SHA-256 of ``"seed:part1:part2..."`` (stable across processes and machines)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


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


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _check_candidates(candidates: Sequence[dict]) -> None:
    seen: set[str] = set()
    for c in candidates:
        for key in ("id", "image"):
            if key not in c:
                raise ValueError(f"candidate {c!r} lacks {key!r}")
        if c["id"] in seen:
            raise ValueError(f"duplicate candidate id {c['id']!r}")
        seen.add(c["id"])


def _select_all(candidates: Sequence[dict], *, seed: int, k: int, quota: int, why: str) -> dict:
    return {
        "selected": [{"id": c["id"], "reason": "all", "predicted_loss": None} for c in candidates],
        "model": None, "regressor": None, "fallback": why,
        "seed": seed, "k": k, "quota": quota, "n_candidates": len(candidates),
        "labelled": [], "labelled_loss": {}, "predicted_loss": {},
    }


def _fill(order_random: list[int], pool_hard: list[int], n_random: int, n_total: int) -> tuple[list[int], list[int]]:
    """First ``n_random`` of ``order_random``, then the first of ``pool_hard`` not yet taken, up to
    ``n_total`` in all."""
    rand = order_random[:n_random]
    taken = set(rand)
    hard = [i for i in pool_hard if i not in taken][: max(0, n_total - len(rand))]
    return rand, hard


# --------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------

def select_hard_images(candidates: list[dict], *, quota: int, k: int = 10, seed: int, epochs: int = 4,
                       size: int = 256, random_fraction: float = 0.5, folds: int = 3, lr: float = 3e-3,
                       batch_size: int = 1, threads: int = 1, device: str | None = None,
                       n_estimators: int = 200, timings: dict[str, float] | None = None) -> dict:
    """Select ``quota`` of ``candidates`` by OpenEarthMap's loss-driven sampling (module docstring).

    ``candidates``: ``{"id", "image": 3-band uint8 GeoTIFF, "label": 1-band label GeoTIFF or None}`` in
    the caller's stable order.  ``size``: side length (divisible by 4) to which tiles are downsampled for
    the model and the features.  ``device``: ``"cuda"`` when available unless given.  ``timings``, if
    given, receives wall-clock seconds per phase (``read``, ``features``, ``training``, ``loss``,
    ``regression``, ``prediction``); they are kept out of the result so that it stays reproducible.

    Returns ``{"selected": [{"id", "reason": "labelled"|"random"|"hard"|"all", "predicted_loss"}]`` (in
    candidate order), ``"model"``, ``"regressor"``, ``"fallback"`` (None or why no model was used),
    ``"seed"``, ``"k"``, ``"quota"``, ``"n_candidates"``, ``"labelled"`` (ids of the labelled subset),
    ``"labelled_loss"`` ({id: held-out loss}), ``"predicted_loss"`` ({id: predicted loss} for every
    candidate)}``; floats rounded to 6 digits.
    """
    _check_candidates(candidates)
    if quota < 0:
        raise ValueError(f"quota must be >= 0, got {quota}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
    if size < 4 or size % 4:
        raise ValueError(f"size must be a positive multiple of 4, got {size}")
    n = len(candidates)
    if n <= quota:
        return _select_all(candidates, seed=seed, k=k, quota=quota,
                           why=f"{n} candidates <= quota {quota}: all selected, no model trained")
    times = {key: 0.0 for key in ("read", "features", "training", "loss", "regression", "prediction")}

    def tick(key: str, t0: float) -> float:
        t1 = time.perf_counter()
        times[key] += t1 - t0
        return t1

    labelled_idx = [i for i in range(0, n, k) if candidates[i].get("label")]
    labelled_ids = [candidates[i]["id"] for i in labelled_idx]
    rng_random = np.random.default_rng(derive_seed(seed, "random"))
    random_order = [int(i) for i in rng_random.permutation(n)]

    # Read the labelled subset.
    t = time.perf_counter()
    lab_images = np.stack([read_image(candidates[i]["image"], size) for i in labelled_idx]) if labelled_idx \
        else np.zeros((0, size, size, 3), np.uint8)
    lab_labels = np.stack([read_label(candidates[i]["label"], size) for i in labelled_idx]) if labelled_idx \
        else np.zeros((0, size, size), np.uint8)
    t = tick("read", t)
    trainable = [j for j in range(len(labelled_idx)) if np.any(lab_labels[j] != UNLABELLED)]

    def base_result() -> dict:
        return {"seed": seed, "k": k, "quota": quota, "n_candidates": n, "random_fraction": random_fraction,
                "labelled": labelled_ids}

    if len(trainable) < MIN_LABELLED:
        take_lab = [i for i in random_order if i in set(labelled_idx)][:quota]
        rest = [i for i in random_order if i not in set(take_lab)][: quota - len(take_lab)]
        reasons = {i: "labelled" for i in take_lab} | {i: "random" for i in rest}
        if timings is not None:
            timings.update(times)
        return base_result() | {
            "selected": [{"id": candidates[i]["id"], "reason": reasons[i], "predicted_loss": None}
                         for i in sorted(reasons)],
            "model": None, "regressor": None,
            "fallback": (f"only {len(trainable)} labelled images with labelled pixels among every {k}-th "
                         f"candidate (< {MIN_LABELLED}): random selection"),
            "labelled_loss": {}, "predicted_loss": {},
        }

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n_folds = max(2, min(folds, len(trainable) // 2))
    perm = np.random.default_rng(derive_seed(seed, "folds")).permutation(len(trainable))
    fold_of = {trainable[int(p)]: rank % n_folds for rank, p in enumerate(perm)}  # labelled pos -> fold
    lab_pos = {i: j for j, i in enumerate(labelled_idx)}

    feats_img = np.zeros((n, len(IMAGE_FEATURE_NAMES)))
    feats_model = np.zeros((n, len(MODEL_FEATURE_NAMES)))
    held_loss = np.full(len(labelled_idx), np.nan)
    models: list[SmallUNet] = []
    hashes: list[str] = []
    train_sizes: list[int] = []
    with _torch_determinism(derive_seed(seed, "torch"), threads, dev):
        init_seed = derive_seed(seed, "init")
        for f in range(n_folds):
            t = time.perf_counter()
            torch.manual_seed(init_seed)  # same initialisation for every fold model
            model = SmallUNet().to(dev)
            tr = [j for j in trainable if fold_of[j] != f]
            gen = torch.Generator().manual_seed(derive_seed(seed, "train", f))
            _train(model, lab_images[tr], lab_labels[tr], epochs=epochs, batch_size=batch_size, lr=lr,
                   generator=gen, device=dev)
            t = tick("training", t)
            ho = [j for j in trainable if fold_of[j] == f]
            mf, losses = _model_outputs(model, lab_images[ho], lab_labels[ho], dev)
            feats_model[[labelled_idx[j] for j in ho]] = mf
            held_loss[ho] = losses
            tick("loss", t)
            models.append(model)
            hashes.append(weights_sha256(model))
            train_sizes.append(len(tr))

        # Hand-crafted features of the labelled subset (already in memory).
        t = time.perf_counter()
        for j, i in enumerate(labelled_idx):
            feats_img[i] = image_features(lab_images[j], size=size)
        tick("features", t)
        # Labelled images without labelled pixels: model features from the round-robin fold model.
        others = [i for i in range(n) if i not in lab_pos or lab_pos[i] not in fold_of]
        chunk = 16
        for start in range(0, len(others), chunk):
            part = others[start:start + chunk]
            t = time.perf_counter()
            imgs = np.stack([lab_images[lab_pos[i]] if i in lab_pos else read_image(candidates[i]["image"], size)
                             for i in part])
            t = tick("read", t)
            for i, im in zip(part, imgs):
                if i not in lab_pos:
                    feats_img[i] = image_features(im, size=size)
            t = tick("features", t)
            for f in range(n_folds):
                sel = [q for q, i in enumerate(part) if i % n_folds == f]
                if sel:
                    mf, _ = _model_outputs(models[f], imgs[sel], None, dev)
                    feats_model[[part[q] for q in sel]] = mf
            tick("prediction", t)

    # Loss regressor on held-out losses.
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    t = time.perf_counter()
    X = np.concatenate([feats_img, feats_model], axis=1)
    fit_pos = [j for j in trainable]
    X_fit = X[[labelled_idx[j] for j in fit_pos]]
    y_fit = held_loss[fit_pos]
    rs = derive_seed(seed, "regressor") % (2**32)

    def make_regressor() -> RandomForestRegressor:
        return RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1, max_features=0.3,
                                     random_state=rs, n_jobs=1)

    cv_folds = min(5, len(y_fit))
    cv_pred = cross_val_predict(make_regressor(), X_fit, y_fit,
                                cv=KFold(n_splits=cv_folds, shuffle=True, random_state=rs))
    rho = float(spearmanr(y_fit, cv_pred).statistic) if np.ptp(cv_pred) > 0 and np.ptp(y_fit) > 0 else float("nan")
    reg = make_regressor().fit(X_fit, y_fit)
    t = tick("regression", t)
    pred = reg.predict(X)
    pred_r = [_r(v) for v in pred]
    tick("prediction", t)

    # Fill the quota.
    reasons: dict[int, str] = {}
    loss_of = {labelled_idx[j]: held_loss[j] for j in range(len(labelled_idx))}
    if len(labelled_idx) <= quota:
        for i in labelled_idx:
            reasons[i] = "labelled"
    else:
        lab_random = [i for i in random_order if i in lab_pos]
        lab_hard = sorted(labelled_idx, key=lambda i: (-(loss_of[i] if math.isfinite(loss_of[i]) else -1e300), i))
        rand, hard = _fill(lab_random, lab_hard, int(round(random_fraction * quota)), quota)
        for i in rand + hard:
            reasons[i] = "labelled"
    remaining = quota - len(reasons)
    if remaining > 0:
        pool_random = [i for i in random_order if i not in reasons]
        pool_hard = sorted((i for i in range(n) if i not in reasons), key=lambda i: (-pred_r[i], i))
        rand, hard = _fill(pool_random, pool_hard, int(round(random_fraction * remaining)), remaining)
        reasons.update({i: "random" for i in rand})
        reasons.update({i: "hard" for i in hard})

    if timings is not None:
        timings.update(times)
    feature_names = list(IMAGE_FEATURE_NAMES) + list(MODEL_FEATURE_NAMES)
    combined = hashlib.sha256("".join(hashes).encode()).hexdigest()
    return base_result() | {
        "selected": [{"id": candidates[i]["id"], "reason": reasons[i], "predicted_loss": pred_r[i]}
                     for i in sorted(reasons)],
        "model": {
            "architecture": describe_model(models[0]),
            "params": int(sum(p.numel() for p in models[0].parameters())),
            "weights_sha256": combined,
            "fold_weights_sha256": hashes,
            "folds": n_folds,
            "train_sizes": train_sizes,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "Adam",
            "input_size": size, "device": dev.type, "threads": threads,
            "loss": "mean per-pixel cross-entropy over labelled pixels (ignore_index=0), held-out fold model",
        },
        "regressor": {
            "type": f"RandomForestRegressor(n_estimators={n_estimators}, min_samples_leaf=1, "
                    f"max_features=0.3, random_state={rs})",
            "features": feature_names,
            "n_features": len(feature_names),
            "fit_on": "held-out (cross-fitted) losses of the labelled subset",
            "n_train": len(y_fit),
            "cv_spearman_rho": _r(rho),
            "cv_folds": cv_folds,
        },
        "fallback": None,
        "labelled_loss": {candidates[i]["id"]: _r(loss_of[i]) for i in labelled_idx},
        "predicted_loss": {c["id"]: pred_r[i] for i, c in enumerate(candidates)},
    }


def sample_region(candidates: list[dict], *, n_min: int = 50, n_max: int = 70, target: int | None = None,
                  seed: int, region: str, keep: Iterable[str] = (), **selection_kwargs: Any) -> dict:
    """Per-region sampling: keep every candidate when there are at most ``n_max``; otherwise select
    ``target`` (default: the middle of ``[n_min, n_max]``, 60) with :func:`select_hard_images`, seeded with
    ``derive_seed`` = SHA-256 of ``f"{seed}:{region}"`` (first 8 bytes, >> 1).  The result carries
    ``"region"`` and ``"region_seed"`` in addition to :func:`select_hard_images`'s keys.

    ``keep``: ids already released (by an earlier release).  Those among the candidates are always selected
    (reason ``"released"``, so a rebuild never drops a released image) and count towards the quota;
    :func:`select_hard_images` fills the rest of the quota from the other candidates.  ``"kept"`` lists them.
    """
    if not 0 < n_min <= n_max:
        raise ValueError(f"need 0 < n_min <= n_max, got {n_min}, {n_max}")
    quota = target if target is not None else (n_min + n_max) // 2
    if not n_min <= quota <= n_max:
        raise ValueError(f"target {quota} outside [{n_min}, {n_max}]")
    region_seed = derive_seed(seed, region)
    _check_candidates(candidates)
    keep = set(keep)
    kept = [c for c in candidates if c["id"] in keep]
    if len(candidates) <= n_max:
        result = _select_all(candidates, seed=region_seed, k=selection_kwargs.get("k", 10), quota=quota,
                             why=f"{len(candidates)} candidates <= n_max {n_max}: all kept")
    elif not kept:
        result = select_hard_images(candidates, quota=quota, seed=region_seed, **selection_kwargs)
    else:
        rest = [c for c in candidates if c["id"] not in keep]
        result = select_hard_images(rest, quota=max(0, quota - len(kept)), seed=region_seed, **selection_kwargs)
        order = {c["id"]: i for i, c in enumerate(candidates)}
        released = [{"id": c["id"], "reason": "released", "predicted_loss": None} for c in kept]
        result["selected"] = sorted(released + result["selected"], key=lambda e: order[e["id"]])
        result["quota"] = quota
        result["n_candidates"] = len(candidates)
    return {"region": region, "region_seed": region_seed, "kept": [c["id"] for c in kept]} | result
