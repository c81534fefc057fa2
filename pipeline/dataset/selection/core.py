"""``select``: OpenEarthMap's hard-image selection over a whole pool, with pooled, cross-fitted models.

Method
------
1. Per region (candidates in the caller's stable order): the labelled subset is every ``k``-th candidate
   (positions 0, k, 2k, ...).  A region with at most ``n_max`` candidates keeps all (stage ``all``); a larger
   one whose labelled subset is not fully labelled yet is ``awaiting_labelled_subset`` (its subset is
   returned as selected, to be annotated first); the others are ``selected`` by the model.
2. The labelled subsets of ALL regions form one pooled training set (tiles read at 256 px from the COG
   overview).  :func:`pipeline.dataset.selection.model.cross_fit` trains K fold models (folds dealt within
   regions) and the deployed model on all of them.  Each labelled tile's held-out loss (fold model that did not train on
   it) is its regression target.
3. Features (:mod:`pipeline.dataset.selection.features`) in one space for every tile: label-free image
   statistics and uncertainty scalars of a model that did not see the tile (held-out fold model for
   labelled tiles; the deployed model for candidates).
4. One loss regressor (:mod:`pipeline.dataset.selection.regressor`) on the pooled (features, held-out loss)
   pairs, gated by its cross-validated Spearman rho and bootstrap interval; it predicts every candidate of the regions
   being selected.  If the gate fails, or too few labelled tiles exist, those regions fall back to seeded
   random filling and ``fallback`` says why.
5. Per region: :func:`pipeline.dataset.selection.sampling.fill_region` (released, labelled, random half
   first, then the highest predicted loss).  Where candidates carry true labels, the deployed model's loss on them is
   recorded (``measured_loss``) and the mean true loss of the hard picks is compared with the random ones.

Seeds are derived by SHA-256 from ``seed`` (:func:`pipeline.rng.derive_seed`); per region from
``(seed, region)``.  Same pool, settings, seed and machine -> identical ``to_dict(timings=False)``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pipeline.dataset.selection.config import SelectionConfig
from pipeline.dataset.selection.result import Candidate, RegionResult, SelectionResult, TileDecision
from pipeline.dataset.selection.sampling import fill_region, keep_all
from pipeline.rng import derive_seed

if TYPE_CHECKING:
    from pipeline.dataset.selection.training import _Pooled

logger = logging.getLogger(__name__)
Progress = Callable[[str, float], None]


@dataclass
class _Region:
    name: str
    tiles: list[Candidate]
    labelled: list[int]
    kept: list[int]
    stage: str
    predicted: np.ndarray | None = None
    measured: dict[int, float] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    fill_seed: int = 0


def _plan(pool: Mapping[str, Sequence[Candidate]], cfg: SelectionConfig, keep: set[str]) -> list[_Region]:
    seen: set[str] = set()
    plans = []
    for name in sorted(pool):
        tiles = list(pool[name])
        for t in tiles:
            if t.id in seen:
                raise ValueError(f"duplicate candidate id {t.id!r} (region {name})")
            seen.add(t.id)
        lab = list(range(0, len(tiles), cfg.k))
        if len(tiles) <= cfg.n_max:
            stage = "all"
        elif all(tiles[i].label for i in lab):
            stage = "selected"
        else:
            stage = "awaiting_labelled_subset"
        plans.append(_Region(name, tiles, lab, [i for i, t in enumerate(tiles) if t.id in keep], stage))
    return plans


def _quota_left(p: _Region, cfg: SelectionConfig) -> tuple[int, int]:
    """(what the region's released tiles leave of its quota, its labelled tiles not released), as
    :func:`pipeline.dataset.selection.sampling.fill_region` fills it."""
    kept = set(p.kept)
    return cfg.quota - len(kept), sum(1 for i in p.labelled if i not in kept)


def _open_slots(p: _Region, cfg: SelectionConfig) -> int:
    """How many of the region's picks are left to random and hard sampling once its released tiles and its
    labelled subset are in.  A region with none (a region an earlier release filled: a rebuild that adds a
    source) needs no candidate predicted."""
    left, labelled = _quota_left(p, cfg)
    return max(0, left - labelled)


def _needs_model(p: _Region, cfg: SelectionConfig) -> bool:
    """Whether the region's picks depend on the model: it has open slots (hard picks by predicted loss), or its
    labelled subset overflows what its released tiles leave of the quota (picked by held-out loss).  When no
    region does (a rebuild whose previous release filled every sampled region), no model is trained."""
    left, labelled = _quota_left(p, cfg)
    return left > 0 and labelled != left


class _Clock:
    """Accumulates wall seconds (``timings[key]``) and process CPU seconds, all threads
    (``timings[key + "_cpu"]``), per phase."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def tick(self, key: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.timings[key] = self.timings.get(key, 0.0) + wall - self.wall
        self.timings[key + "_cpu"] = self.timings.get(key + "_cpu", 0.0) + cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def _fill(plans: list[_Region], pooled: _Pooled | None, cfg: SelectionConfig, use_model: bool) -> None:
    """Per-region quota filling; attaches ``reasons`` to every plan."""
    held: dict[tuple[int, int], float] = {}
    if pooled is not None:
        held = {w: float(v) for w, v in zip(pooled.where, pooled.loss)}
    for r, p in enumerate(plans):
        p.fill_seed = derive_seed(derive_seed(cfg.seed, p.name), "random")
        if p.stage == "all":
            p.reasons = keep_all(len(p.tiles), p.kept)
        elif p.stage == "awaiting_labelled_subset":
            p.reasons = {i: "released" for i in p.kept} | {i: "labelled" for i in p.labelled if i not in p.kept}
        else:
            lab_loss = {i: held[(r, i)] for i in p.labelled if (r, i) in held}
            p.reasons = fill_region(len(p.tiles), quota=cfg.quota, labelled=p.labelled, kept=p.kept,
                                    random_fraction=cfg.random_fraction, seed=p.fill_seed,
                                    predicted=p.predicted if use_model else None, labelled_loss=lab_loss)
        for i in p.labelled:
            if (r, i) in held:
                p.measured[i] = held[(r, i)]


def _region_results(plans: list[_Region], cfg: SelectionConfig) -> tuple[dict[str, RegionResult], dict]:
    """Region records and the pooled hard-vs-random evaluation (means over regions that have both)."""
    out, hard_means, rand_means, oracle_means = {}, [], [], []
    for p in plans:
        pred = p.predicted
        sel = [TileDecision(p.tiles[i].id, p.reasons[i],
                            None if pred is None or p.reasons[i] == "labelled" else _f(pred[i]),
                            _f(p.measured.get(i))) for i in sorted(p.reasons)]
        rr = RegionResult(p.name, len(p.tiles), cfg.quota, p.stage, [p.tiles[i].id for i in p.labelled],
                          [p.tiles[i].id for i in p.kept], sel)
        if pred is not None:
            rr.predicted_loss = {p.tiles[i].id: float(v) for i, v in enumerate(pred) if np.isfinite(v)}
        hard = [p.measured[i] for i, why in p.reasons.items() if why == "hard" and i in p.measured]
        rand = [p.measured[i] for i, why in p.reasons.items() if why == "random" and i in p.measured]
        if hard and rand:
            rr.hard_true_loss, rr.random_true_loss = float(np.mean(hard)), float(np.mean(rand))
            hard_means.append(rr.hard_true_loss)
            rand_means.append(rr.random_true_loss)
            oracle_means.append(_oracle_hard_mean(p, cfg))
        if p.stage == "awaiting_labelled_subset":
            rr.note = (f"{sum(1 for i in p.labelled if not p.tiles[i].label)} of its {len(p.labelled)} "
                       f"every-{cfg.k}-th tiles need labels before selection")
        out[p.name] = rr
    ev: dict = {"regions_with_true_labels": len(hard_means)} | _candidate_rho(plans)
    if hard_means:
        h, r = float(np.mean(hard_means)), float(np.mean(rand_means))
        ev |= {"hard_mean_true_loss": h, "random_mean_true_loss": r, "ratio": h / r if r > 0 else None,
               "regions_hard_gt_random": int(sum(a > b for a, b in zip(hard_means, rand_means))),
               "median_region_ratio": float(np.median(np.array(hard_means) / np.array(rand_means)))}
        if all(v is not None for v in oracle_means):
            ev["oracle_ratio"] = float(np.mean([v for v in oracle_means if v is not None])) / r
    return out, ev


def _oracle_hard_mean(p: _Region, cfg: SelectionConfig) -> float | None:
    """Mean true loss of the hard picks had the predictions been the true losses (same seed, so the same
    random picks): the ceiling the protocol allows on this region.  None unless every candidate that could
    be picked has a true loss."""
    rest = [i for i in range(len(p.tiles)) if i not in set(p.labelled) and i not in set(p.kept)]
    if any(i not in p.measured for i in rest):
        return None
    true = np.array([p.measured.get(i, np.nan) for i in range(len(p.tiles))])
    reasons = fill_region(len(p.tiles), quota=cfg.quota, labelled=p.labelled, kept=p.kept,
                          random_fraction=cfg.random_fraction, seed=p.fill_seed, predicted=true)
    return float(np.mean([true[i] for i, why in reasons.items() if why == "hard"]))


def _candidate_rho(plans: list[_Region]) -> dict:
    """Spearman rho of predicted vs true loss over the candidates that have true labels (pooled and after
    removing region medians): the out-of-sample check of the cross-validated rho."""
    pred, true, reg = [], [], []
    for p in plans:
        if p.predicted is None:
            continue
        for i, v in p.measured.items():
            if i not in set(p.labelled) and np.isfinite(p.predicted[i]) and np.isfinite(v):
                pred.append(p.predicted[i])
                true.append(v)
                reg.append(p.name)
    if len(pred) < 3:
        return {}
    from pipeline.dataset.selection.regressor import spearman, within_region_rho

    a, b = np.array(true), np.array(pred)
    return {"candidates_with_true_labels": len(a), "candidate_rho": spearman(a, b),
            "candidate_within_region_rho": within_region_rho(a, b, reg)}


def _f(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


DEFAULT_CONFIG = SelectionConfig()


def select(pool_by_region: Mapping[str, Sequence[Candidate]], *, config: SelectionConfig = DEFAULT_CONFIG,
           keep: Iterable[str] = (), device: str | None = None,
           progress: Progress | None = None) -> SelectionResult:
    """Select each region's tiles (module docstring).  ``pool_by_region``: candidates per region in a stable
    order; ``config``: k, n_min, n_max, target, random_fraction, seed, model/regressor settings; ``keep``:
    ids released before (always kept); ``device``: torch device (CUDA when available if None);
    ``progress(message, fraction)`` is called as work proceeds."""
    cfg = config
    cfg.validate()
    timings: dict[str, float] = {}
    plans = _plan(pool_by_region, cfg, set(keep))
    clock = _Clock(timings)
    cf = gate = pooled = None
    fallback = None
    dev = None
    if any(p.stage == "selected" and _needs_model(p, cfg) for p in plans):
        # torch, scikit-learn and scipy are imported only when a model is trained (seconds of a rebuild that
        # adds a source to regions an earlier release filled)
        from pipeline.dataset.selection.model import pick_device
        from pipeline.dataset.selection.training import _model_and_gate, _model_info, _read_pooled

        dev = pick_device(device)
        pooled = _read_pooled(plans, cfg)
        clock.tick("read_labelled")
        n = int(pooled.trainable.sum())
        if n < cfg.regressor.min_trained:
            fallback = (f"only {n} labelled tiles with labelled pixels in the pooled set "
                        f"(< {cfg.regressor.min_pooled}): seeded random sampling")
        else:
            cf, gate, fallback = _model_and_gate(plans, pooled, cfg, dev, timings, progress)
        clock = _Clock(timings)
    if fallback:
        logger.warning("hard-image selection falls back to random sampling: %s", fallback)
    _fill(plans, pooled, cfg, use_model=cf is not None and fallback is None)
    regions, ev = _region_results(plans, cfg)
    clock.tick("fill")
    info = None if cf is None or pooled is None else _model_info(cf, cfg, dev, int(pooled.trainable.sum()))
    conf = dataclasses.asdict(cfg) | {"quota": cfg.quota}
    return SelectionResult(conf, regions, info, gate, fallback, ev, timings)
