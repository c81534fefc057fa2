"""The loss regressor: a random forest fitted on the held-out losses of the labelled subset, judged by the
cross-validated Spearman rho (package docstring, step 6)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.dataset.selection.model import Tick
from pipeline.rng import derive_seed


def rounded(x: float | None) -> float | None:
    """``x`` rounded to 6 digits; None for None, NaN and infinities (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def fit_loss_regressor(X_fit: np.ndarray, y_fit: np.ndarray, X: np.ndarray, *, seed: int, n_estimators: int,
                       feature_names: list[str], tick: Tick, t0: float) -> tuple[list[float | None], dict]:
    """Fit ``RandomForestRegressor`` (fixed ``random_state`` from ``seed``) on ``(X_fit, y_fit)``, measure its
    ``cross_val_predict`` Spearman rho (``KFold``, up to 5 folds, shuffled), then predict every row of ``X``.

    Returns ``(predicted losses rounded to 6 digits, the manifest's "regressor" record)``; ``t0`` is when
    the regression phase started (for ``tick``)."""
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    rs = derive_seed(seed, "regressor") % (2**32)

    def make_regressor() -> Any:
        return RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1, max_features=0.3,
                                     random_state=rs, n_jobs=1)

    cv_folds = min(5, len(y_fit))
    cv_pred = cross_val_predict(make_regressor(), X_fit, y_fit,
                                cv=KFold(n_splits=cv_folds, shuffle=True, random_state=rs))
    rho = float(spearmanr(y_fit, cv_pred).statistic) if np.ptp(cv_pred) > 0 and np.ptp(y_fit) > 0 else float("nan")
    reg = make_regressor().fit(X_fit, y_fit)
    t = tick("regression", t0)
    pred = reg.predict(X)
    pred_r = [rounded(v) for v in pred]
    tick("prediction", t)
    record = {
        "type": f"RandomForestRegressor(n_estimators={n_estimators}, min_samples_leaf=1, "
                f"max_features=0.3, random_state={rs})",
        "features": feature_names,
        "n_features": len(feature_names),
        "fit_on": "held-out (cross-fitted) losses of the labelled subset",
        "n_train": len(y_fit),
        "cv_spearman_rho": rounded(rho),
        "cv_folds": cv_folds,
    }
    return pred_r, record
