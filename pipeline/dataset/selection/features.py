"""One feature space for every tile: label-free image statistics + uncertainty of a model that did not
see the tile.

* :func:`image_stats` (``IMAGE_FEATURES``): colour, HSV, gradient/edge, blur/noise (Laplacian at two
  scales, robust noise), colour entropy and change rate, shadow/bright/nodata fractions, computed on the
  256 px tile.  They depend on the pixels only, so they are identical whichever model is used.
* :func:`model_stats` (``MODEL_FEATURES``): scalar summaries of a segmentation model's softmax output --
  mean and tail of the per-pixel entropy, mean 1 - max probability, share of uncertain pixels, mean
  top-1/top-2 margin, predicted class fractions and predicted-boundary density.  Scalars (not embeddings)
  are used because they mean the same thing for every model of the same recipe, whereas the channels of two
  separately trained networks' embeddings are unrelated.
* Which model: a labelled tile gets the stats of the fold model that did not train on it (its held-out
  fold).  A candidate gets them from a model that did not train on it either: the deployed model (one
  forward pass, and the same network whose loss is being predicted; in the prototype's measurements the
  round-robin fold model's features were biased for candidates, the deployed model's were not).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.dataset.selection.config import NUM_CLASSES
from pipeline.dataset.selection.model import IGNORE, SegNet, to_input, to_target

IMAGE_FEATURES: tuple[str, ...] = (
    "r_mean", "g_mean", "b_mean", "r_std", "g_std", "b_std", "sat_mean", "sat_std", "val_mean", "val_std",
    "grad_mean", "grad_std", "edge_frac", "log_lap_var", "log_lap_var_half", "noise_mad", "local_std_mean",
    "colour_entropy", "colour_change", "dark_frac", "bright_frac", "nodata_frac",
)
MODEL_FEATURES: tuple[str, ...] = (
    "entropy_mean", "entropy_frac_gt_0.5", "entropy_frac_gt_1", "one_minus_maxprob", "maxprob_lt_0.5",
    "margin_mean", *(f"pred_frac_{c}" for c in range(1, NUM_CLASSES + 1)), "pred_boundary",
    "entropy_on_boundary",
)


def _one_image_stats(img: np.ndarray) -> list[float]:
    rgb = img.reshape(-1, 3)
    mean, std = cv2.meanStdDev(img)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hmean, hstd = cv2.meanStdDev(hsv)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    gm, gs = cv2.meanStdDev(mag)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    _, lap_sd = cv2.meanStdDev(lap)
    half = cv2.pyrDown(grey)
    _, lap_half_sd = cv2.meanStdDev(cv2.Laplacian(half, cv2.CV_32F, ksize=3))
    noise = float(np.median(np.abs(lap[::2, ::2])))
    gf = grey.astype(np.float32)
    m = cv2.blur(gf, (5, 5))
    local_sd = np.sqrt(np.maximum(cv2.blur(gf * gf, (5, 5)) - m * m, 0))
    q = (img >> 5).astype(np.int32)
    code = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]
    p = np.bincount(code.ravel(), minlength=512).astype(np.float64)
    p = p[p > 0] / code.size
    change = (np.count_nonzero(code[:, 1:] != code[:, :-1]) + np.count_nonzero(code[1:] != code[:-1])) / (
        2 * code.size)
    v = hsv[..., 2]
    return [*mean.ravel(), *std.ravel(), hmean[1, 0], hstd[1, 0], hmean[2, 0], hstd[2, 0],
            gm[0, 0], gs[0, 0], float(np.count_nonzero(mag > 40)) / mag.size,
            float(np.log1p(lap_sd[0, 0] ** 2)), float(np.log1p(lap_half_sd[0, 0] ** 2)), noise,
            float(local_sd.mean()), float(-(p * np.log2(p)).sum()), change,
            float(np.count_nonzero(v < 60)) / v.size, float(np.count_nonzero(v > 200)) / v.size,
            float(np.count_nonzero(rgb.max(axis=1) == 0)) / len(rgb)]


def image_stats(images: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 -> ``(B, len(IMAGE_FEATURES))`` float64 label-free statistics."""
    out = np.array([_one_image_stats(np.ascontiguousarray(im)) for im in images], np.float64)
    return out.reshape(len(images), len(IMAGE_FEATURES))


@torch.inference_mode()
def model_stats(model: SegNet, images: np.ndarray, labels: np.ndarray | None,
                device: torch.device) -> tuple[np.ndarray, np.ndarray | None]:
    """Uncertainty features ``(B, len(MODEL_FEATURES))`` of ``model`` on a batch and, given labels, each
    tile's loss: mean cross-entropy over all its labelled pixels (NaN when it has none).  The summaries
    are taken on every second pixel in each direction (a 128 px grid for 256 px tiles: plenty for means and
    fractions, 4x cheaper); the loss uses every pixel."""
    logits = model(to_input(images, device)).float()
    sub = logits[:, :, ::2, ::2]
    logp = F.log_softmax(sub, dim=1)
    p = logp.exp()
    ent = -(p * logp).sum(1)
    p1, pred = p.max(1)
    p2 = p.masked_fill(F.one_hot(pred, NUM_CLASSES).permute(0, 3, 1, 2).bool(), -1.0).max(1).values
    edge = torch.zeros_like(ent, dtype=torch.bool)
    edge[:, :, 1:] |= pred[:, :, 1:] != pred[:, :, :-1]
    edge[:, 1:, :] |= pred[:, 1:, :] != pred[:, :-1, :]
    b = len(images)
    counts = torch.bincount((pred + NUM_CLASSES * torch.arange(b, device=pred.device)[:, None, None]).ravel(),
                            minlength=b * NUM_CLASSES).view(b, NUM_CLASSES).float() / pred[0].numel()
    feats = [ent.mean((1, 2)), (ent > 0.5).float().mean((1, 2)), (ent > 1.0).float().mean((1, 2)),
             1 - p1.mean((1, 2)), (p1 < 0.5).float().mean((1, 2)), (p1 - p2).mean((1, 2)), *counts.T,
             edge.float().mean((1, 2)), (ent * edge).sum((1, 2)) / edge.sum((1, 2)).clamp(min=1)]
    out = torch.stack(feats, 1).double().cpu().numpy()
    losses = None
    if labels is not None:
        y = to_target(labels, device)
        ce = F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="none")
        n = (y != IGNORE).sum((1, 2))
        loss = ce.sum((1, 2)) / n.clamp(min=1)
        losses = torch.where(n > 0, loss, torch.full_like(loss, float("nan"))).double().cpu().numpy()
    return out, losses

