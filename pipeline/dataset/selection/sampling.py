"""Filling one region's quota (OpenEarthMap: 50-70 images per region) from its candidates.

Order of filling, for a region with more than ``n_max`` candidates and quota ``q`` (60 by default):

1. ``released``: candidates released by an earlier release are always kept (a rebuild never drops a
   released image); they count towards the quota, even beyond it.
2. ``labelled``: the labelled subset (every k-th candidate of the region's stable order) is kept.  If it
   does not fit in what is left of the quota, ``round(random_fraction * left)`` of it are drawn at random
   and the rest are those with the highest measured (held-out) loss.
3. Of the quota still left, ``round(random_fraction * left)`` candidates are drawn by seeded random
   sampling (``random``) *first*, so the random picks stay an unbiased sample of the region, and the rest
   are the not yet picked candidates with the highest predicted loss (``hard``; ties by position).  Without
   predictions (fallback) the whole rest is drawn at random.

Regions with at most ``n_max`` candidates keep them all (``all``; released ones stay ``released``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

REASONS = ("released", "labelled", "random", "hard", "all")


def random_order(n: int, seed: int) -> list[int]:
    """The region's seeded random order of candidate positions."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def _take(order: Sequence[int], taken: Mapping[int, str], count: int) -> list[int]:
    out: list[int] = []
    for i in order:
        if len(out) >= count:
            break
        if i not in taken:
            out.append(i)
    return out


def fill_region(n: int, *, quota: int, labelled: Sequence[int], kept: Sequence[int], random_fraction: float,
                seed: int, predicted: np.ndarray | None = None,
                labelled_loss: Mapping[int, float] | None = None) -> dict[int, str]:
    """Reasons ``{position: reason}`` of the selected candidates of one region with ``n`` candidates
    (module docstring).  ``predicted``: predicted loss per position (None = random fallback);
    ``labelled_loss``: measured loss per labelled position (used only when the subset overflows)."""
    reasons: dict[int, str] = {int(i): "released" for i in kept}
    order = random_order(n, seed)
    left = quota - len(reasons)
    lab = [int(i) for i in labelled if int(i) not in reasons]
    if left <= 0:
        return reasons
    if len(lab) <= left:
        reasons.update({i: "labelled" for i in lab})
    else:
        n_rand = int(round(random_fraction * left))
        rand = [i for i in order if i in set(lab)][:n_rand]
        rest = [i for i in lab if i not in set(rand)]
        loss = labelled_loss or {}
        hard = sorted(rest, key=lambda i: (-loss.get(i, float("-inf")), i))[: left - n_rand]
        reasons.update({i: "labelled" for i in rand + hard})
    left = quota - len(reasons)
    if left <= 0:
        return reasons
    if predicted is None:
        reasons.update({i: "random" for i in _take(order, reasons, left)})
        return reasons
    n_rand = int(round(random_fraction * left))
    reasons.update({i: "random" for i in _take(order, reasons, n_rand)})
    rest = [i for i in range(n) if i not in reasons]
    ranked = sorted(rest, key=lambda i: (-float(predicted[i]) if np.isfinite(predicted[i]) else float("inf"), i))
    reasons.update({i: "hard" for i in ranked[: quota - len(reasons)]})
    return reasons


def keep_all(n: int, kept: Sequence[int]) -> dict[int, str]:
    """A region at or below ``n_max``: every candidate, released ones marked ``released``."""
    ks = {int(i) for i in kept}
    return {i: ("released" if i in ks else "all") for i in range(n)}
