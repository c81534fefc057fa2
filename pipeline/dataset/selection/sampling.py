"""Filling a region's quota: the labelled subset, seeded random picks and the hardest remaining candidates
(package docstring, steps 1, 2 and 7, and the fallbacks); :func:`sample_region` applies it per region."""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import torch

from pipeline.constants import UNLABELLED
from pipeline.dataset.selection.features import IMAGE_FEATURE_NAMES, read_image, read_label
from pipeline.dataset.selection.model import MODEL_FEATURE_NAMES, CrossFit, cross_fit, describe_model
from pipeline.dataset.selection.regressor import fit_loss_regressor, rounded
from pipeline.rng import derive_seed

#: Fewest trainable labelled images with which a model is trained (else random fallback).
MIN_LABELLED = 4
#: Phases of :func:`select_hard_images`'s ``timings``.
PHASES = ("read", "features", "training", "loss", "regression", "prediction")


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


def _check_arguments(candidates: Sequence[dict], *, quota: int, k: int, random_fraction: float, size: int) -> None:
    _check_candidates(candidates)
    if quota < 0:
        raise ValueError(f"quota must be >= 0, got {quota}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
    if size < 4 or size % 4:
        raise ValueError(f"size must be a positive multiple of 4, got {size}")


def _read_labelled(candidates: Sequence[dict], labelled_idx: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the labelled subset at ``size`` x ``size``."""
    images = np.stack([read_image(candidates[i]["image"], size) for i in labelled_idx]) if labelled_idx \
        else np.zeros((0, size, size, 3), np.uint8)
    labels = np.stack([read_label(candidates[i]["label"], size) for i in labelled_idx]) if labelled_idx \
        else np.zeros((0, size, size), np.uint8)
    return images, labels


def _random_fallback(candidates: Sequence[dict], labelled_idx: list[int], random_order: list[int], *,
                     quota: int, k: int, trainable: int) -> dict:
    """Too few trainable labelled images: the labelled subset, then seeded random picks, no model."""
    take_lab = [i for i in random_order if i in set(labelled_idx)][:quota]
    rest = [i for i in random_order if i not in set(take_lab)][: quota - len(take_lab)]
    reasons = {i: "labelled" for i in take_lab} | {i: "random" for i in rest}
    return {
        "selected": [{"id": candidates[i]["id"], "reason": reasons[i], "predicted_loss": None}
                     for i in sorted(reasons)],
        "model": None, "regressor": None,
        "fallback": (f"only {trainable} labelled images with labelled pixels among every {k}-th "
                     f"candidate (< {MIN_LABELLED}): random selection"),
        "labelled_loss": {}, "predicted_loss": {},
    }


def _fill_quota(n: int, labelled_idx: list[int], random_order: list[int], loss_of: dict[int, float],
                pred_r: list[float | None], *, quota: int, random_fraction: float) -> dict[int, str]:
    """Step 7: candidate index -> reason (``labelled``, ``random`` or ``hard``) for the selected candidates."""
    reasons: dict[int, str] = {}
    lab_pos = set(labelled_idx)
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
        pool_hard = sorted((i for i in range(n) if i not in reasons), key=lambda i: (-cast(float, pred_r[i]), i))
        rand, hard = _fill(pool_random, pool_hard, int(round(random_fraction * remaining)), remaining)
        reasons.update({i: "random" for i in rand})
        reasons.update({i: "hard" for i in hard})
    return reasons


def _model_record(fit: CrossFit, *, epochs: int, batch_size: int, lr: float, size: int, device: torch.device,
                  threads: int) -> dict[str, Any]:
    return {
        "architecture": describe_model(fit.models[0]),
        "params": int(sum(p.numel() for p in fit.models[0].parameters())),
        "weights_sha256": hashlib.sha256("".join(fit.hashes).encode()).hexdigest(),
        "fold_weights_sha256": fit.hashes,
        "folds": fit.n_folds,
        "train_sizes": fit.train_sizes,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "Adam",
        "input_size": size, "device": device.type, "threads": threads,
        "loss": "mean per-pixel cross-entropy over labelled pixels (ignore_index=0), held-out fold model",
    }


def select_hard_images(candidates: list[dict], *, quota: int, k: int = 10, seed: int, epochs: int = 4,
                       size: int = 256, random_fraction: float = 0.5, folds: int = 3, lr: float = 3e-3,
                       batch_size: int = 1, threads: int = 1, device: str | None = None,
                       n_estimators: int = 200, timings: dict[str, float] | None = None) -> dict:
    """Select ``quota`` of ``candidates`` by OpenEarthMap's loss-driven sampling (package docstring).

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
    _check_arguments(candidates, quota=quota, k=k, random_fraction=random_fraction, size=size)
    n = len(candidates)
    if n <= quota:
        return _select_all(candidates, seed=seed, k=k, quota=quota,
                           why=f"{n} candidates <= quota {quota}: all selected, no model trained")
    times = {key: 0.0 for key in PHASES}

    def tick(key: str, t0: float) -> float:
        t1 = time.perf_counter()
        times[key] += t1 - t0
        return t1

    labelled_idx = [i for i in range(0, n, k) if candidates[i].get("label")]
    random_order = [int(i) for i in np.random.default_rng(derive_seed(seed, "random")).permutation(n)]
    t = time.perf_counter()
    lab_images, lab_labels = _read_labelled(candidates, labelled_idx, size)
    tick("read", t)
    trainable = [j for j in range(len(labelled_idx)) if np.any(lab_labels[j] != UNLABELLED)]
    base = {"seed": seed, "k": k, "quota": quota, "n_candidates": n, "random_fraction": random_fraction,
            "labelled": [candidates[i]["id"] for i in labelled_idx]}
    if len(trainable) < MIN_LABELLED:
        if timings is not None:
            timings.update(times)
        return base | _random_fallback(candidates, labelled_idx, random_order, quota=quota, k=k,
                                       trainable=len(trainable))

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fit = cross_fit(candidates, labelled_idx, lab_images, lab_labels, trainable, seed=seed, size=size, folds=folds,
                    epochs=epochs, batch_size=batch_size, lr=lr, threads=threads, device=dev, tick=tick)
    # Loss regressor on held-out losses.
    t = time.perf_counter()
    X = np.concatenate([fit.feats_img, fit.feats_model], axis=1)
    feature_names = list(IMAGE_FEATURE_NAMES) + list(MODEL_FEATURE_NAMES)
    pred_r, regressor = fit_loss_regressor(X[[labelled_idx[j] for j in trainable]], fit.held_loss[trainable], X,
                                           seed=seed, n_estimators=n_estimators, feature_names=feature_names,
                                           tick=tick, t0=t)
    loss_of = {labelled_idx[j]: fit.held_loss[j] for j in range(len(labelled_idx))}
    reasons = _fill_quota(n, labelled_idx, random_order, loss_of, pred_r, quota=quota,
                          random_fraction=random_fraction)
    if timings is not None:
        timings.update(times)
    return base | {
        "selected": [{"id": candidates[i]["id"], "reason": reasons[i], "predicted_loss": pred_r[i]}
                     for i in sorted(reasons)],
        "model": _model_record(fit, epochs=epochs, batch_size=batch_size, lr=lr, size=size, device=dev,
                               threads=threads),
        "regressor": regressor,
        "fallback": None,
        "labelled_loss": {candidates[i]["id"]: rounded(loss_of[i]) for i in labelled_idx},
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
