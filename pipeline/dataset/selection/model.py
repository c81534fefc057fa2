"""The pooled segmentation model: network, training and K-fold cross-fitting.

Network (:class:`SegNet`, ~150 k parameters at the default widths 32-48-64): a space-to-depth stem
(``PixelUnshuffle(4)``: a 256 px RGB tile becomes 48 channels at 64 px, so no convolution runs at full
resolution), two stride-2 stages with dilated 3x3 convolutions (1/8 and 1/16), a light top-down decoder
with additive skips back to 1/4, and a 1x1 head predicting 4x4 sub-pixels per cell (``PixelShuffle(4)``),
i.e. 8 class logits (ids 1..8) at full 256 px resolution.  BatchNorm + ReLU everywhere; channels_last.

Training (:func:`train_model`): AdamW with a one-cycle learning-rate schedule, ``ceil(epochs * n /
batch_size)`` steps of ``batch_size`` tiles drawn by seeded permutations, a seeded random ``crop`` px window
per tile (128 of the 256 px by default: a quarter of the pixels per step, which is most of the training cost,
since the stem, the full-resolution head and the loss scale with the pixels; the network is fully
convolutional, so held-out losses, features and candidates still use whole tiles), flip and quarter-turn per
batch, cross-entropy over labelled pixels (label 0 ignored).  Every fold model and the deployed model start
from the same seeded initialisation.

Cross-fitting (:func:`cross_fit`): the pooled labelled tiles are dealt into ``folds`` folds *within each
region* (seeded shuffle, round robin), so every fold model has seen the other labelled tiles of a held-out
tile's region, exactly as the deployed model has seen the labelled tiles of a candidate's region.  Fold
model *f* is trained on the other folds; the deployed model on all labelled tiles.

Determinism: :func:`torch_determinism` fixes the seed, the thread count and deterministic algorithms and
restores the global torch state afterwards; the same inputs, seed and machine give identical weights.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.dataset.selection.config import NUM_CLASSES, ModelConfig

IGNORE = -1


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Space-to-depth encoder-decoder for 8-class land cover (see the module docstring).  Input
    ``(B, 3, S, S)`` float (S divisible by 16), output ``(B, 8, S, S)`` logits for class ids 1..8."""

    def __init__(self, widths: tuple[int, int, int] = (32, 48, 64)) -> None:
        super().__init__()
        a, b, c = widths
        self.widths = tuple(widths)
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), _cbr(48, a, k=1), _cbr(a, a))
        self.down1 = nn.Sequential(_cbr(a, b, stride=2), _cbr(b, b, dilation=2))
        self.down2 = nn.Sequential(_cbr(b, c, stride=2), _cbr(c, c, dilation=2))
        self.lat2, self.mix1 = _cbr(c, b, k=1), _cbr(b, b)
        self.lat1, self.mix0 = _cbr(b, a, k=1), _cbr(a, a)
        self.head = nn.Sequential(nn.Conv2d(a, NUM_CLASSES * 16, 1), nn.PixelShuffle(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        y = self.mix1(x1 + F.interpolate(self.lat2(x2), scale_factor=2.0, mode="bilinear", align_corners=False))
        y = self.mix0(x0 + F.interpolate(self.lat1(y), scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.head(y)


def describe(model: SegNet) -> str:
    a, b, c = model.widths
    params = sum(p.numel() for p in model.parameters())
    return (f"SegNet(space-to-depth 4, widths {a}-{b}-{c}, BatchNorm, dilated 1/8 and 1/16 stages, "
            f"PixelShuffle head, {params} parameters, 8 classes, label 0 ignored)")


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the state dict: sorted keys, each ``key\\0dtype\\0shape\\0`` + little-endian bytes."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        arr = t.numpy()
        h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@contextmanager
def torch_determinism(seed: int, threads: int, device: torch.device) -> Iterator[None]:
    """Seeded, deterministic, fixed-thread torch inside the block; global settings restored afterwards."""
    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        try:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            torch.manual_seed(seed)
            yield
        finally:
            torch.set_num_threads(old[0])
            torch.use_deterministic_algorithms(old[1], warn_only=old[2])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[3], old[4]


def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 -> normalised ``(B, 3, S, S)`` float32, channels_last, on ``device``."""
    x = torch.as_tensor(images).to(device)
    x = x.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
    return x.mul_(1.0 / 64.0).sub_(2.0)


def to_target(labels: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Label ids 0..8 -> class indices 0..7, unlabelled (0) -> :data:`IGNORE`."""
    return torch.as_tensor(labels).to(device).long() - 1


def random_crops(images: torch.Tensor, labels: torch.Tensor, crop: int,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random ``crop`` px window per tile of ``(B, S, S, 3)`` images and ``(B, S, S)`` labels (the
    uint8 tiles, before conversion: only the crop is converted)."""
    size = images.shape[1]
    if crop >= size:
        return images, labels
    offsets = torch.randint(0, size - crop + 1, (len(images), 2), generator=gen).tolist()
    return (torch.stack([im[oy:oy + crop, ox:ox + crop] for im, (oy, ox) in zip(images, offsets)]),
            torch.stack([lb[oy:oy + crop, ox:ox + crop] for lb, (oy, ox) in zip(labels, offsets)]))


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    aug = int(torch.randint(0, 8, (1,), generator=gen))
    if aug & 4:
        x, y = x.flip(3), y.flip(2)
    if aug & 3:
        x, y = torch.rot90(x, aug & 3, (2, 3)), torch.rot90(y, aug & 3, (1, 2))
    return x.contiguous(memory_format=torch.channels_last), y


def train_model(images: np.ndarray, labels: np.ndarray, cfg: ModelConfig, *, init_seed: int, seed: int,
                device: torch.device) -> tuple[SegNet, int]:
    """Train a fresh :class:`SegNet` on ``images`` ``(N, S, S, 3)`` uint8 and ``labels`` ``(N, S, S)``;
    returns ``(model in eval mode, optimizer steps)``.  Call inside :func:`torch_determinism`."""
    torch.manual_seed(init_seed)
    model = SegNet(cfg.widths).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    n = len(images)
    steps = max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    imgs_u8 = torch.from_numpy(np.ascontiguousarray(images))
    labs_u8 = torch.from_numpy(np.ascontiguousarray(labels))
    order: list[int] = []
    model.train()
    for _ in range(steps):
        if len(order) < cfg.batch_size:
            order += torch.randperm(n, generator=gen).tolist()
        idx, order = order[:min(cfg.batch_size, n)], order[min(cfg.batch_size, n):]
        xb, yb = random_crops(imgs_u8[idx], labs_u8[idx], cfg.crop, gen)
        x, y = _augment(to_input(xb, device), to_target(yb, device), gen)
        loss = F.cross_entropy(model(x), y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), steps


def assign_folds(groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Fold index per item: within each group (region, sorted by name) a seeded shuffle dealt round robin,
    continuing the count across groups so the folds have equal sizes (+-1)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(groups), np.int64)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    counter = 0
    for g in sorted(by_group):
        for i in rng.permutation(by_group[g]):
            out[int(i)] = counter % folds
            counter += 1
    return out


@dataclass
class CrossFit:
    """Result of :func:`cross_fit`: the fold of every labelled tile, the fold models, the deployed model."""

    fold_of: np.ndarray
    fold_models: list[SegNet]
    deployed: SegNet
    steps: list[int]          # optimizer steps per fold model, then the deployed model


def cross_fit(images: np.ndarray, labels: np.ndarray, groups: Sequence[str], cfg: ModelConfig, *,
              seed: int, device: torch.device, seeds: dict[str, int]) -> CrossFit:
    """Train ``cfg.folds`` fold models (each without one fold) and the deployed model (all tiles).
    ``seeds`` holds the derived seeds ``"folds"``, ``"init"`` and ``"train"``.  Call inside
    :func:`torch_determinism`."""
    fold_of = assign_folds(groups, cfg.folds, seeds["folds"])
    models, steps = [], []
    for f in range(cfg.folds):
        tr = np.flatnonzero(fold_of != f)
        m, s = train_model(images[tr], labels[tr], cfg, init_seed=seeds["init"], seed=seeds["train"] + f + 1,
                           device=device)
        models.append(m)
        steps.append(s)
    deployed, s = train_model(images, labels, cfg, init_seed=seeds["init"], seed=seeds["train"], device=device)
    return CrossFit(fold_of, models, deployed, steps + [s])
