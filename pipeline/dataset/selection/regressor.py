"""The loss regressor and its honest quality gate.

One scikit-learn regressor is fitted on the pooled ``(features, held-out loss)`` pairs of the labelled
tiles (:func:`fit_with_gate`).  Its quality is measured before it is trusted:

* ``cv_folds``-fold cross-validated predictions (shuffled ``KFold``; the candidates share regions with the
  labelled tiles, so a random split is the matching setting), compared to the held-out losses by Spearman's
  rank correlation (only the order matters for selection);
* a percentile bootstrap 95 % interval of that rho (``bootstrap`` resamples of the (loss, prediction)
  pairs; it covers the sampling of tiles, not the refitting);
* the within-region rho (tiles are picked within a region): Spearman of the losses and predictions after
  subtracting each region's median from both, as information;
* the gate: fewer than ``min_pooled`` labelled tiles, or an interval that includes 0, means the
  regressor is not used and selection falls back to seeded random sampling, with the reason recorded.

The target is ``log(loss)`` by default (the loss is right-skewed; the log is monotone, so the order of the
predictions is what the regressor learned, and ``exp`` of the prediction is reported as the loss).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

from pipeline.dataset.selection.config import RegressorConfig

_EPS = 1e-6


@dataclass(frozen=True)
class GateReport:
    """What the manifest records about the regressor's quality."""

    n: int
    rho: float | None
    ci_low: float | None
    ci_high: float | None
    within_region_rho: float | None
    passed: bool
    reason: str | None
    cv_folds: int
    bootstrap: int
    regressor: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def make_regressor(cfg: RegressorConfig, seed: int):
    """A fresh, seeded ``ExtraTreesRegressor`` (one thread, so results do not depend on the machine's cores):
    robust to unscaled, correlated features and to a few hundred training pairs."""
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=cfg.n_estimators, min_samples_leaf=cfg.min_samples_leaf,
                               max_features=0.5, random_state=seed % (2**32), n_jobs=1)


def describe_regressor(cfg: RegressorConfig, seed: int) -> str:
    target = "log(loss)" if cfg.log_target else "loss"
    return f"{make_regressor(cfg, seed)!r} on {target}"


def _target(y: np.ndarray, cfg: RegressorConfig) -> np.ndarray:
    return np.log(np.maximum(y, _EPS)) if cfg.log_target else y


def _untarget(t: np.ndarray, cfg: RegressorConfig) -> np.ndarray:
    return np.exp(t) if cfg.log_target else t


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (NaN when either side is constant)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho over resampled pairs (vectorised ranks)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n_boot, len(a)))
    ra, rb = rankdata(a[idx], axis=1), rankdata(b[idx], axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    rho = np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), np.nan)
    lo, hi = np.nanpercentile(rho, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def within_region_rho(y: np.ndarray, pred: np.ndarray, regions: Sequence[str]) -> float:
    """Spearman's rho after subtracting each region's median from both the losses and the predictions."""
    reg = np.asarray(regions)
    yc, pc = np.empty_like(y), np.empty_like(pred)
    for r in np.unique(reg):
        m = reg == r
        yc[m], pc[m] = y[m] - np.median(y[m]), pred[m] - np.median(pred[m])
    return spearman(yc, pc)


def cross_validated(x: np.ndarray, y: np.ndarray, cfg: RegressorConfig, seed: int) -> np.ndarray:
    """Out-of-fold predictions (in target space) from ``cfg.cv_folds`` shuffled folds."""
    from sklearn.model_selection import KFold, cross_val_predict

    folds = min(cfg.cv_folds, len(y))
    return cross_val_predict(make_regressor(cfg, seed), x, _target(y, cfg),
                             cv=KFold(n_splits=folds, shuffle=True, random_state=seed % (2**32)))


@dataclass
class FittedRegressor:
    """The fitted regressor (``None`` when the gate failed) and the gate's report."""

    model: Any
    report: GateReport
    cfg: RegressorConfig

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted losses for feature rows ``x``."""
        if self.model is None:
            raise RuntimeError("the regressor did not pass its quality gate")
        return _untarget(self.model.predict(x), self.cfg)


def fit_with_gate(x: np.ndarray, y: np.ndarray, regions: Sequence[str], cfg: RegressorConfig,
                  seed: int) -> FittedRegressor:
    """Cross-validate, bootstrap and gate (module docstring); fit on all pairs when the gate passes."""
    n = int(len(y))
    desc = describe_regressor(cfg, seed)

    def report(rho=None, ci=(None, None), wr=None, passed=False, reason=None) -> GateReport:
        return GateReport(n=n, rho=rho, ci_low=ci[0], ci_high=ci[1], within_region_rho=wr, passed=passed,
                          reason=reason, cv_folds=min(cfg.cv_folds, n), bootstrap=cfg.bootstrap, regressor=desc)

    too_few = (f"only {n} labelled tiles with labelled pixels in the pooled set (< {cfg.min_pooled}): "
               f"seeded random sampling")
    if n < cfg.min_trained:
        return FittedRegressor(None, report(reason=too_few), cfg)
    cv = cross_validated(x, y, cfg, seed)
    rho = spearman(y, cv)
    ci = bootstrap_ci(y, cv, cfg.bootstrap, seed + 1)
    wr = within_region_rho(y, cv, regions)
    if n < cfg.min_pooled:  # measured and recorded for information, never used
        return FittedRegressor(None, report(rho, ci, wr, reason=too_few + " (the cross-validated rho of this "
                                            "small set is recorded for information, not used)"), cfg)
    if not math.isfinite(rho) or not ci[0] > 0:
        return FittedRegressor(None, report(rho, ci, wr, reason=(
            f"cross-validated Spearman rho {rho:.3f} with 95 % interval [{ci[0]:.3f}, {ci[1]:.3f}] "
            f"does not exclude 0 (n={n}): seeded random sampling")), cfg)
    model = make_regressor(cfg, seed).fit(x, _target(y, cfg))
    return FittedRegressor(model, report(rho, ci, wr, passed=True), cfg)
