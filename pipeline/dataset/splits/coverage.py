"""Class-aware placement of a region's undecided images (package docstring, *Class coverage* and *One leakage
group*): which classes train still lacks, the fewest undecided units that bring them, quotas raised within the
split tolerance, and the coverage-first assignment added to the seeded trials."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Allowed deviation of a region's split counts from split_counts(): this share of its images, at least 1
#: (the same tolerance :mod:`pipeline.release.validate.audit` checks).
SPLIT_TOLERANCE_SHARE = 0.10
#: Names of the split warnings (in ``info["warnings"]`` and in ``validate``'s warning lines).
SINGLE_GROUP = "single-leakage-group"
FROZEN_CLASS = "class-frozen-out-of-train"
QUOTA_FULL = "train-quota-full"


def split_tolerance(n: int) -> float:
    """How many images a split of a region of ``n`` images may deviate from :func:`.trials.split_counts`:
    ``max(1, 0.1 * n)``."""
    return max(1.0, SPLIT_TOLERANCE_SHARE * n)


def within_tolerance(counts: Sequence[int], target: Sequence[int], n: int) -> bool:
    """Whether every split count is within :func:`split_tolerance` of its target."""
    tol = split_tolerance(n)
    return all(abs(int(c) - int(t)) <= tol for c, t in zip(counts, target))


def undecided_units(code: np.ndarray, group_of: Sequence[str]) -> list[list[int]]:
    """The leakage groups of the undecided images (``code < 0``) as lists of image indices, in the order of
    their first member."""
    units: dict[str, list[int]] = {}
    for idx, g in enumerate(group_of):
        if code[idx] < 0:
            units.setdefault(g, []).append(idx)
    return list(units.values())


def classes_new_to_train(cp: np.ndarray, code: np.ndarray) -> np.ndarray:
    """``(8,)`` bool: classes with pixels among the undecided images but none among the images already
    decided for train (a class new to the region, or one that only frozen val/test images have)."""
    undecided = cp[code < 0].sum(axis=0) > 0
    in_train = cp[code == 0].sum(axis=0) > 0
    return undecided & ~in_train


def cover_units(cp: np.ndarray, units: Sequence[Sequence[int]], needed: np.ndarray) -> list[int]:
    """Greedy set cover: unit indices that together hold every ``needed`` class; each step takes the unit
    bringing the most still-missing classes, then the smaller one, then the first."""
    has = [(cp[list(m)].sum(axis=0) > 0) for m in units]
    missing = needed.copy()
    chosen: list[int] = []
    while missing.any():
        gains = [(int((h & missing).sum()), -len(units[u]), -u) for u, h in enumerate(has) if u not in chosen]
        if not gains or max(gains)[0] == 0:
            break
        best = -max(gains)[2]
        chosen.append(best)
        missing &= ~has[best]
    return chosen


def raise_train_quota(q: Sequence[int], need: int, target: Sequence[int], decided: Sequence[int], n: int
                      ) -> list[int]:
    """``q`` with its train part raised towards ``need`` images, one image at a time taken from the val or
    test quota with the larger surplus over its target (ties val), as long as every split count stays within
    :func:`split_tolerance` of ``target`` ("when the quotas allow")."""
    q = list(q)
    while q[0] < need:
        donors = sorted((j for j in (1, 2) if q[j] > 0),
                        key=lambda j: (-(decided[j] + q[j] - target[j]), j))
        moved = False
        for j in donors:
            trial = list(q)
            trial[0] += 1
            trial[j] -= 1
            if within_tolerance([d + t for d, t in zip(decided, trial)], target, n):
                q, moved = trial, True
                break
        if not moved:
            break
    return q


def place_units(code: np.ndarray, order: Sequence[Sequence[int]], q: Sequence[int]) -> np.ndarray:
    """Split index per image: decided images keep ``code``; the units, walked in ``order``, each go to the split
    whose quota interval holds the centre of their cumulative positions (the rule of the seeded trials)."""
    out = code.copy()
    start = 0
    for members in order:
        centre2 = 2 * start + len(members)
        split = 0 if centre2 < 2 * q[0] else (1 if centre2 < 2 * (q[0] + q[1]) else 2)
        out[list(members)] = split
        start += len(members)
    return out


def coverage_first(code: np.ndarray, units: Sequence[Sequence[int]], cover: Sequence[int], q: Sequence[int]
                   ) -> np.ndarray:
    """The assignment that walks the covering units first (:func:`cover_units`), then the others in order."""
    order = [units[u] for u in cover] + [m for u, m in enumerate(units) if u not in cover]
    return place_units(code, order, q)
