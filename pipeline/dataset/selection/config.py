"""Settings of the hard-image selection (no behaviour here); the defaults are the release defaults."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.errors import ConfigError

#: Version of the selection method: part of ``SelectTiles``' output name, so a new method never answers with a
#: selection the old one made.  Bump it when the selection's result changes for the same inputs.
METHOD = "pooled-crossfit-2"

#: Class ids 1..8 are trained; 0 (unlabelled / nodata) is ignored by the loss.
NUM_CLASSES = 8
UNLABELLED = 0

#: Fewest labelled tiles (with labelled pixels) in the pooled set for which the model is trusted.  Below it
#: selection falls back to seeded random sampling.  Why 40: with 3-fold cross-fitting each fold model then
#: still trains on >= 26 tiles, and a Spearman rho estimated from n pairs has a 95 % interval of about
#: +-1.96 * 1.06 / sqrt(n - 3) (Fieller et al.), i.e. +-0.34 at n = 40: a rho of 0.5 is then distinguishable
#: from 0, a smaller n could not show it.
MIN_POOLED = 40

#: Fewest labelled tiles for which the model is trained and its cross-validated rho (with interval) recorded even
#: though selection falls back (fewer than MIN_POOLED): the record then shows how far the data is from a usable
#: model (the demo's 21 tiles) instead of nothing.  Below it the 5-fold cross-validation itself is meaningless.
MIN_DIAGNOSTIC = 10


@dataclass(frozen=True)
class ModelConfig:
    """Segmentation network and its training (see :mod:`pipeline.dataset.selection.model`)."""

    widths: tuple[int, int, int] = (32, 48, 64)
    size: int = 256            # side length at which tiles are read (the 256 px COG overview of 1024 px tiles)
    folds: int = 3             # K of the K-fold cross-fitting
    epochs: float = 12.0       # passes over the training tiles (steps = ceil(epochs * n / batch_size)); with
                               # 128 px crops an epoch shows a quarter of each tile, so 12 cost half of the
                               # former 6 epochs of whole tiles
    batch_size: int = 16
    crop: int = 128            # random crop side per tile in training (the network is fully convolutional;
                               # held-out losses, features and candidates use whole ``size`` px tiles)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    threads: int = 2           # torch intra-op threads on CPU


@dataclass(frozen=True)
class RegressorConfig:
    """Loss regressor and its quality gate (see :mod:`pipeline.dataset.selection.regressor`)."""

    n_estimators: int = 300
    min_samples_leaf: int = 3
    log_target: bool = True    # fit log(loss): the loss is skewed; only the order matters for selection
    cv_folds: int = 5
    bootstrap: int = 2000
    min_pooled: int = MIN_POOLED
    min_diagnostic: int = MIN_DIAGNOSTIC

    @property
    def min_trained(self) -> int:
        """Fewest labelled tiles for which the model is trained at all (used from ``min_pooled`` on)."""
        return min(self.min_pooled, self.min_diagnostic)


@dataclass(frozen=True)
class SelectionConfig:
    """Everything :func:`pipeline.dataset.selection.core.select` needs besides the pool."""

    k: int = 10
    n_min: int = 50
    n_max: int = 70
    target: int | None = None   # per-region quota; None = middle of [n_min, n_max]
    random_fraction: float = 0.5
    seed: int = 42
    batch_size: int = 32       # tiles per forward pass when extracting features
    model: ModelConfig = field(default_factory=ModelConfig)
    regressor: RegressorConfig = field(default_factory=RegressorConfig)

    @property
    def quota(self) -> int:
        return self.target if self.target is not None else (self.n_min + self.n_max) // 2

    def replace(self, **changes) -> SelectionConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if not 0 < self.n_min <= self.n_max:
            raise ConfigError(f"need 0 < n_min <= n_max, got {self.n_min}, {self.n_max}")
        if not self.n_min <= self.quota <= self.n_max:
            raise ConfigError(f"target {self.quota} outside [{self.n_min}, {self.n_max}]")
        if not 0.0 <= self.random_fraction <= 1.0:
            raise ConfigError(f"random_fraction must be in [0, 1], got {self.random_fraction}")
        if self.model.size % 16 or self.model.crop % 16 or self.model.crop > self.model.size:
            raise ConfigError("model size and crop must be multiples of 16, crop <= size")
        if self.model.folds < 2:
            raise ConfigError("model.folds must be >= 2")
