"""The model half of :func:`pipeline.dataset.selection.core.select` (steps 2-4 of its method): the pooled
labelled set, cross-fitting, held-out features and losses, the gated regressor and the candidates' predicted
losses.  Imported only when a model is trained (torch, scikit-learn and scipy load here)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.dataset.selection.config import UNLABELLED, SelectionConfig
from pipeline.dataset.selection.core import Progress, _Clock, _open_slots, _Region
from pipeline.dataset.selection.features import IMAGE_FEATURES, MODEL_FEATURES, image_stats, model_stats
from pipeline.dataset.selection.io import iter_batches, read_batch
from pipeline.dataset.selection.model import CrossFit, cross_fit, describe, torch_determinism, weights_sha256
from pipeline.dataset.selection.regressor import FittedRegressor, fit_with_gate
from pipeline.dataset.selection.result import ModelInfo
from pipeline.rng import derive_seed


@dataclass
class _Pooled:
    """The pooled labelled set: (region index, position) per tile, pixels, features, held-out losses."""

    where: list[tuple[int, int]]
    images: np.ndarray
    labels: np.ndarray
    trainable: np.ndarray
    img: np.ndarray       # image stats (filled by _held_out)
    mod: np.ndarray       # held-out model stats (NaN for tiles without labelled pixels)
    loss: np.ndarray      # held-out losses (NaN likewise)


def _read_pooled(plans: list[_Region], cfg: SelectionConfig) -> _Pooled:
    where = [(r, i) for r, p in enumerate(plans) for i in p.labelled if p.tiles[i].label]
    imgs, labs = read_batch([plans[r].tiles[i].image for r, i in where],
                            [plans[r].tiles[i].label for r, i in where], cfg.model.size)
    assert labs is not None
    trainable = np.array([bool(np.any(lab != UNLABELLED)) for lab in labs], dtype=bool)
    n = len(where)
    return _Pooled(where, imgs, labs, trainable, np.full((n, len(IMAGE_FEATURES)), np.nan),
                   np.full((n, len(MODEL_FEATURES)), np.nan), np.full(n, np.nan))


def _held_out(pooled: _Pooled, cf: CrossFit, device, batch: int) -> None:
    """Image stats of every pooled tile; held-out model stats and losses of the trainable ones."""
    pooled.img = image_stats(pooled.images)
    for f, m in enumerate(cf.fold_models):
        rows = np.flatnonzero(cf.fold_of == f)
        for s in range(0, len(rows), batch):
            part = rows[s:s + batch]
            pooled.mod[part], pooled.loss[part] = model_stats(m, pooled.images[part], pooled.labels[part], device)


def _design(img: np.ndarray, mod: np.ndarray) -> np.ndarray:
    """Feature rows: ``[image stats, model stats]`` (the one feature space of every tile)."""
    return np.concatenate([img, mod], axis=1)


def _predict_candidates(plans: list[_Region], cf: CrossFit, reg: FittedRegressor, cfg: SelectionConfig, device,
                        timings: dict[str, float], progress: Progress | None) -> None:
    """Stream the unlabelled candidates of the regions being selected: read (next batch prefetched in the
    background), features, prediction.  Where a candidate has a true label, it is read along and the
    deployed model's loss on it is recorded (evaluation only; same forward pass).  The phases are timed
    (wall and CPU); label reading is included, so the per-candidate cost is an upper bound."""
    open_regions = [r for r, p in enumerate(plans) if p.stage == "selected" and _open_slots(p, cfg) > 0]
    todo = [(r, i) for r in open_regions for i in range(len(plans[r].tiles)) if i not in set(plans[r].labelled)]
    preds = {r: np.full(len(plans[r].tiles), np.nan) for r in open_regions}
    paths = [plans[r].tiles[i].image for r, i in todo]
    labels = [plans[r].tiles[i].label for r, i in todo]
    has_labels = any(labels)
    clock = _Clock(timings)
    for start, imgs, labs in iter_batches(paths, labels if has_labels else None, cfg.model.size, cfg.batch_size):
        part = todo[start:start + len(imgs)]
        clock.tick("read")
        stats = image_stats(imgs)
        clock.tick("image_stats")
        mod, losses = model_stats(cf.deployed, imgs, labs, device)
        clock.tick("model_stats")
        for j, ((r, i), v) in enumerate(zip(part, reg.predict(_design(stats, mod)))):
            preds[r][i] = v
            if losses is not None and plans[r].tiles[i].label:
                plans[r].measured[i] = float(losses[j])
        clock.tick("predict")
        if progress:
            progress("predicting candidates", (start + len(imgs)) / len(todo))
    for r, a in preds.items():
        plans[r].predicted = a
    timings["n_candidates"] = float(len(todo))
    timings["candidates_with_labels_read"] = float(sum(1 for lab in labels if lab))


def _model_info(cf: CrossFit, cfg: SelectionConfig, device, n: int) -> ModelInfo:
    fold_hashes = [weights_sha256(m) for m in cf.fold_models]
    return ModelInfo(description=describe(cf.deployed), weights_sha256=weights_sha256(cf.deployed),
                     fold_weights_sha256=fold_hashes, device=device.type, threads=cfg.model.threads,
                     folds=cfg.model.folds, epochs=cfg.model.epochs, steps=list(cf.steps), n_labelled=n,
                     input_size=cfg.model.size)


def _model_and_gate(plans: list[_Region], pooled: _Pooled, cfg: SelectionConfig, dev, timings: dict[str, float],
                    progress: Progress | None):
    """Cross-fit, held-out targets, gated regressor and candidate predictions; returns
    ``(cross-fit, gate report, fallback reason or None)``."""
    tr = np.flatnonzero(pooled.trainable)
    seeds = {k: derive_seed(cfg.seed, k) for k in ("folds", "init", "train")}
    groups = [plans[pooled.where[j][0]].name for j in tr]
    with torch_determinism(derive_seed(cfg.seed, "torch"), cfg.model.threads, dev):
        if progress:
            progress(f"training {cfg.model.folds}+1 segmentation models on {len(tr)} labelled tiles", 0.0)
        clock = _Clock(timings)
        cf = cross_fit(pooled.images[tr], pooled.labels[tr], groups, cfg.model, seed=cfg.seed, device=dev,
                       seeds=seeds)
        fold_of = np.full(len(pooled.where), -1)
        fold_of[tr] = cf.fold_of
        cf.fold_of = fold_of
        clock.tick("training")
        _held_out(pooled, cf, dev, cfg.batch_size)
        x = _design(pooled.img[tr], pooled.mod[tr])
        clock.tick("held_out")
        reg = fit_with_gate(x, pooled.loss[tr], groups, cfg.regressor, derive_seed(cfg.seed, "regressor"))
        clock.tick("regressor")
        if not reg.report.passed:
            return cf, reg.report, reg.report.reason
        _predict_candidates(plans, cf, reg, cfg, dev, timings, progress)
    return cf, reg.report, None
