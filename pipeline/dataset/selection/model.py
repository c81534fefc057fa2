"""The segmentation model of the hard-image selection: a small U-Net, its training, its outputs as features,
and the cross-fitting that gives every labelled image a held-out loss (package docstring, steps 3-5)."""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.constants import CLASS_IDS, NUM_CLASSES, UNLABELLED
from pipeline.dataset.selection.features import IMAGE_FEATURE_NAMES, image_features, read_image
from pipeline.rng import derive_seed

#: Output classes of the segmentation model: 0 (unlabelled, ignored in the loss) + the 8 classes.
MODEL_CLASSES = NUM_CLASSES + 1


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
    + [f"pred_frac_{c}" for c in CLASS_IDS]
    + ["pred_boundary_frac"]
)


def _to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, scaled to about [-2, 2]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.25


def model_outputs(model: SmallUNet, images: np.ndarray, labels: np.ndarray | None,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray | None]:
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
        losses: np.ndarray | None = None
        if labels is not None:
            y = torch.from_numpy(np.ascontiguousarray(labels)).to(device).long()
            ce = F.cross_entropy(logits, y, ignore_index=UNLABELLED, reduction="none")
            valid = (y != UNLABELLED).float()
            count = valid.sum(dim=(1, 2))
            mean_ce = ((ce * valid).sum(dim=(1, 2)) / count.clamp(min=1)).double()
            losses = torch.where(count > 0, mean_ce, torch.full_like(mean_ce, float("nan"))).cpu().numpy()
    return feats.double().cpu().numpy(), losses


def train_model(model: SmallUNet, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
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
            aug = int(torch.randint(0, 8, (1,), generator=generator).item())
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
def torch_determinism(seed: int, threads: int, device: torch.device) -> Iterator[None]:
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
# Cross-fitting
# --------------------------------------------------------------------------------------------------

#: ``tick(phase, t0) -> now``: adds the seconds since ``t0`` to the phase's timing and returns the time.
Tick = Any


@dataclass
class CrossFit:
    """What cross-fitting gives the regressor: per candidate ``feats_img`` / ``feats_model`` rows, per
    labelled image its held-out loss (NaN without labelled pixels), and the fold models with their
    weight hashes and training-set sizes."""

    n_folds: int
    feats_img: np.ndarray
    feats_model: np.ndarray
    held_loss: np.ndarray
    models: list[SmallUNet] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    train_sizes: list[int] = field(default_factory=list)


def _train_folds(fit: CrossFit, lab_images: np.ndarray, lab_labels: np.ndarray, labelled_idx: Sequence[int],
                 trainable: Sequence[int], fold_of: dict[int, int], *, seed: int, epochs: int, batch_size: int,
                 lr: float, device: torch.device, tick: Tick) -> None:
    """Train fold model *f* on the trainable labelled images of the other folds (same seeded initialisation
    for every fold); record its held-out losses and the model features of its held-out images."""
    init_seed = derive_seed(seed, "init")
    for f in range(fit.n_folds):
        t = time.perf_counter()
        torch.manual_seed(init_seed)  # same initialisation for every fold model
        model = SmallUNet().to(device)
        tr = [j for j in trainable if fold_of[j] != f]
        gen = torch.Generator().manual_seed(derive_seed(seed, "train", f))
        train_model(model, lab_images[tr], lab_labels[tr], epochs=epochs, batch_size=batch_size, lr=lr,
                    generator=gen, device=device)
        t = tick("training", t)
        ho = [j for j in trainable if fold_of[j] == f]
        mf, losses = model_outputs(model, lab_images[ho], lab_labels[ho], device)
        fit.feats_model[[labelled_idx[j] for j in ho]] = mf
        fit.held_loss[ho] = losses
        tick("loss", t)
        fit.models.append(model)
        fit.hashes.append(weights_sha256(model))
        fit.train_sizes.append(len(tr))


def _candidate_features(fit: CrossFit, candidates: Sequence[dict], lab_images: np.ndarray,
                        labelled_idx: Sequence[int], fold_of: dict[int, int], *, size: int,
                        device: torch.device, tick: Tick) -> None:
    """Hand-crafted features of every candidate, and model features of every candidate that no fold held
    out (from fold model ``index % folds``), read in chunks of 16."""
    n_folds = fit.n_folds
    lab_pos = {i: j for j, i in enumerate(labelled_idx)}
    t = time.perf_counter()
    for j, i in enumerate(labelled_idx):  # the labelled subset is already in memory
        fit.feats_img[i] = image_features(lab_images[j], size=size)
    tick("features", t)
    # Labelled images without labelled pixels: model features from the round-robin fold model.
    others = [i for i in range(len(candidates)) if i not in lab_pos or lab_pos[i] not in fold_of]
    chunk = 16
    for start in range(0, len(others), chunk):
        part = others[start:start + chunk]
        t = time.perf_counter()
        imgs = np.stack([lab_images[lab_pos[i]] if i in lab_pos else read_image(candidates[i]["image"], size)
                         for i in part])
        t = tick("read", t)
        for i, im in zip(part, imgs):
            if i not in lab_pos:
                fit.feats_img[i] = image_features(im, size=size)
        t = tick("features", t)
        for f in range(n_folds):
            sel = [q for q, i in enumerate(part) if i % n_folds == f]
            if sel:
                mf, _ = model_outputs(fit.models[f], imgs[sel], None, device)
                fit.feats_model[[part[q] for q in sel]] = mf
        tick("prediction", t)


def cross_fit(candidates: Sequence[dict], labelled_idx: Sequence[int], lab_images: np.ndarray,
              lab_labels: np.ndarray, trainable: Sequence[int], *, seed: int, size: int, folds: int, epochs: int,
              batch_size: int, lr: float, threads: int, device: torch.device, tick: Tick) -> CrossFit:
    """Steps 3-5 of the package docstring: deal the ``trainable`` labelled images (positions in
    ``labelled_idx``) into seeded folds, train one model per fold, and compute every candidate's features,
    all inside :func:`torch_determinism`."""
    n = len(candidates)
    n_folds = max(2, min(folds, len(trainable) // 2))
    perm = np.random.default_rng(derive_seed(seed, "folds")).permutation(len(trainable))
    fold_of = {trainable[int(p)]: rank % n_folds for rank, p in enumerate(perm)}  # labelled pos -> fold
    fit = CrossFit(n_folds=n_folds, feats_img=np.zeros((n, len(IMAGE_FEATURE_NAMES))),
                   feats_model=np.zeros((n, len(MODEL_FEATURE_NAMES))),
                   held_loss=np.full(len(labelled_idx), np.nan))
    with torch_determinism(derive_seed(seed, "torch"), threads, device):
        _train_folds(fit, lab_images, lab_labels, labelled_idx, trainable, fold_of, seed=seed, epochs=epochs,
                     batch_size=batch_size, lr=lr, device=device, tick=tick)
        _candidate_features(fit, candidates, lab_images, labelled_idx, fold_of, size=size, device=device,
                            tick=tick)
    return fit
