"""Per-region 6:1:3 splits: split counts, the seeded trials that balance classes between train and test,
leakage groups kept together, and released images keeping their split (package docstring)."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from pipeline import rng
from pipeline.constants import CLASS_IDS, SPLITS
from pipeline.dataset.ids import image_key
from pipeline.dataset.splits.coverage import (
    SINGLE_GROUP,
    classes_new_to_train,
    cover_units,
    coverage_first,
    raise_train_quota,
    split_tolerance,
    undecided_units,
)
from pipeline.dataset.splits.leakage import footprint, leakage_groups

DEFAULT_RATIOS: tuple[int, int, int] = (6, 1, 3)
DEFAULT_TRIALS = 1000

_MISSING_TRAIN_WEIGHT = 1000.0
_MISSING_TEST_WEIGHT = 100.0


def _check_ratios(ratios: Sequence[float]) -> tuple[Fraction, Fraction, Fraction]:
    if len(ratios) != 3:
        raise ValueError(f"ratios must have 3 entries (train, val, test), got {list(ratios)!r}")
    fr = tuple(Fraction(r) for r in ratios)  # exact, also for floats
    if any(r < 0 for r in fr) or fr[0] <= 0:
        raise ValueError(f"ratios must be non-negative with a positive train part, got {list(ratios)!r}")
    return fr  # type: ignore[return-value]


def split_counts(n: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> tuple[int, int, int]:
    """Return ``(train, val, test)`` image counts for a region of ``n`` images; they sum to ``n``.

    Rule: largest-remainder (Hamilton) rounding of the exact quotas ``n * r / sum(ratios)``; the images
    left after flooring go one each to the parts with the largest fractional remainders, ties broken in
    train, val, test order.  Then minimums are enforced:

    * ``n == 1`` -> ``(1, 0, 0)`` (a lone image is only useful for training);
    * ``n == 2`` -> ``(1, 0, 1)`` when the test ratio is positive (otherwise the rounding result);
    * ``n >= 3`` -> train and test (when its ratio is positive) hold at least one image each; a missing
      one is taken from the currently largest other part (ties: train, val, test order).

    With the default 6:1:3 each count is within one image of its exact quota for ``n >= 3``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fr = _check_ratios(ratios)
    if n == 0:
        return (0, 0, 0)
    if n == 1:
        return (1, 0, 0)
    if n == 2 and fr[2] > 0:
        return (1, 0, 1)
    total = sum(fr)
    quotas = [n * r / total for r in fr]
    counts = [int(q) for q in quotas]  # floor (quotas are non-negative)
    leftover = n - sum(counts)
    order = sorted(range(3), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:leftover]:
        counts[i] += 1
    if n >= 3:
        needs = [0] + ([2] if fr[2] > 0 else [])
        for i in needs:
            if counts[i] == 0:
                donors = [j for j in range(3) if j != i and counts[j] > (1 if j in needs else 0)]
                donor = max(donors, key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return (counts[0], counts[1], counts[2])


def class_matrix(images: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(n, 8)`` float64 matrix of class pixel counts (classes 1..8; missing keys count 0)."""
    mat = np.zeros((len(images), len(CLASS_IDS)), dtype=np.float64)
    for row, img in enumerate(images):
        cp = img.get("class_pixels") or {}
        for col, c in enumerate(CLASS_IDS):
            v = cp.get(str(c), 0)
            if v < 0:
                raise ValueError(f"image {img['id']}: class_pixels[{c}] is negative ({v})")
            mat[row, col] = v
    return mat


def score_assignments(class_pixels: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Score many assignments at once (lower is better; see the module docstring for the formula).

    ``class_pixels`` is ``(n, 8)``; ``train`` and ``test`` are boolean ``(trials, n)`` masks.
    Returns a ``(trials,)`` float64 array.
    """
    cp = np.asarray(class_pixels, dtype=np.float64)
    region_classes = cp.sum(axis=0) > 0  # (8,)
    train_sums = train.astype(np.float64) @ cp  # (trials, 8)
    test_sums = test.astype(np.float64) @ cp
    missing_train = ((train_sums == 0) & region_classes).sum(axis=1)
    missing_test = ((test_sums == 0) & region_classes).sum(axis=1)

    def shares(sums: np.ndarray) -> np.ndarray:
        tot = sums.sum(axis=1, keepdims=True)
        return np.divide(sums, tot, out=np.zeros_like(sums), where=tot > 0)

    l1 = 100.0 * np.abs(shares(train_sums) - shares(test_sums)).sum(axis=1)
    return _MISSING_TRAIN_WEIGHT * missing_train + _MISSING_TEST_WEIGHT * missing_test + l1


def _majority(splits: Iterable[str]) -> str:
    c = Counter(splits)
    return max(SPLITS, key=lambda s: (c.get(s, 0), -SPLITS.index(s)))


def _quotas(free: int, target: Sequence[int], decided: Sequence[int], ratios: Sequence[Fraction]) -> list[int]:
    """Greedy quotas for ``free`` undecided images (module docstring, *Stable releases*)."""
    q = [0, 0, 0]
    allowed = [i for i in range(3) if ratios[i] > 0]
    for _ in range(free):
        i = max(allowed, key=lambda j: (target[j] - decided[j] - q[j], -j))
        q[i] += 1
    return q


def _decided_codes(ids: list[str], group_of: list[str], fixed: Mapping[str, str]) -> np.ndarray:
    """Split index per image decided before the trials (-1 = undecided): ``fixed`` images keep theirs, an
    undecided image whose leakage group holds fixed images follows their majority."""
    decided_by_group: dict[str, list[str]] = defaultdict(list)
    for i, g in zip(ids, group_of):
        if i in fixed:
            decided_by_group[g].append(fixed[i])
    code = np.full(len(ids), -1, dtype=np.int64)
    for idx, (i, g) in enumerate(zip(ids, group_of)):
        if i in fixed:
            code[idx] = SPLITS.index(fixed[i])
        elif g in decided_by_group:
            code[idx] = SPLITS.index(_majority(decided_by_group[g]))
    return code


def _trial_assignments(code: np.ndarray, unit_members: list[list[int]], q: Sequence[int], *, trials: int,
                       seed: int, region: str) -> np.ndarray:
    """``(trials, n)`` split indices: each trial permutes the units (leakage groups of undecided images, in
    the order of their first member) with the region's seeded generator and gives each unit the split
    whose quota interval holds its centre; decided images keep ``code``."""
    n_units = len(unit_members)
    perms = rng.generator(seed, region).permuted(np.tile(np.arange(n_units), (trials, 1)), axis=1)  # (trials, units)
    sizes = np.array([len(m) for m in unit_members], dtype=np.int64)
    psizes = sizes[perms] if n_units else np.zeros((trials, 0), dtype=np.int64)
    starts = np.cumsum(psizes, axis=1) - psizes
    centre2 = 2 * starts + psizes  # twice the centre, to stay in integers
    pos_split = np.where(centre2 < 2 * q[0], 0, np.where(centre2 < 2 * (q[0] + q[1]), 1, 2))
    unit_split = np.empty_like(pos_split)
    np.put_along_axis(unit_split, perms, pos_split, axis=1)
    split_idx = np.tile(code, (trials, 1))
    for u, members in enumerate(unit_members):
        split_idx[:, members] = unit_split[:, u:u + 1]
    return split_idx


def _best_trial(cp: np.ndarray, split_idx: np.ndarray, target: Sequence[int], info: dict[str, Any]) -> int:
    """The best assignment (package docstring, *Group assignment*): counts within the split tolerance first,
    then the fewest region classes missing from train, the smallest count deviation, the lowest score, the
    earliest; fills the region's ``info`` (best trial, score, classes missing from train / test, counts)."""
    trials = split_idx.shape[0]
    train = split_idx == 0
    test = split_idx == 2
    scores = score_assignments(cp, train, test)
    counts = np.stack([(split_idx == s).sum(axis=1) for s in range(3)], axis=1)
    diff = np.abs(counts - np.asarray(target)[None, :])
    deviation = diff.sum(axis=1)
    outside = (diff > split_tolerance(int(sum(target)))).any(axis=1)
    region_classes = cp.sum(axis=0) > 0
    missing_train = (((train.astype(np.float64) @ cp) == 0) & region_classes).sum(axis=1)
    best = int(np.lexsort((np.arange(trials), scores, deviation, missing_train, outside))[0])
    tr_sums = cp[train[best]].sum(axis=0)
    te_sums = cp[test[best]].sum(axis=0)
    info["best_trial"] = best
    info["score"] = round(float(scores[best]), 6)
    info["missing_in_train"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, tr_sums) if rc and s == 0]
    info["missing_in_test"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, te_sums) if rc and s == 0]
    info["counts"] = {s: int(counts[best, k]) for k, s in enumerate(SPLITS)}
    return best


def _assignments(cp: np.ndarray, code: np.ndarray, group_of: list[str], target: Sequence[int],
                 ratios: Sequence[Fraction], *, trials: int, seed: int, region: str, warnings: list[str]
                 ) -> np.ndarray:
    """Every candidate assignment of a region: the seeded trials under the (class-aware) quotas, plus the
    coverage-first assignment (index ``trials``) when train lacks a class that undecided images have and no
    trial brings it there."""
    n = len(code)
    units = undecided_units(code, group_of)
    if not units:  # every image decided before (a region the release keeps as it was): all trials are this one
        return code[None, :].copy()
    decided = [int((code == s).sum()) for s in range(3)]
    if not any(decided) and len(units) == 1 and n > 1:
        warnings.append(f"{SINGLE_GROUP}: all {n} images of region {region} overlap (one leakage group), "
                        "so they cannot be split; all go to train")
        return np.tile(np.zeros(n, dtype=np.int64), (trials, 1))
    q = _quotas(n - sum(decided), target, decided, ratios)
    needed = classes_new_to_train(cp, code)
    cover = cover_units(cp, units, needed) if needed.any() else []
    if cover:
        q = raise_train_quota(q, sum(len(units[u]) for u in cover), target, decided, n)
    split_idx = _trial_assignments(code, units, q, trials=trials, seed=seed, region=region)
    if cover and not (((split_idx == 0).astype(np.float64) @ cp > 0) >= needed).all(axis=1).any():
        # no trial brings every such class to train: add the assignment that does (when the quota allows)
        split_idx = np.vstack([split_idx, coverage_first(code, units, cover, q)[None, :]])
    return split_idx


def split_region(
    images: list[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
    region: str,
    groups: Mapping[str, str] | None = None,
    fixed: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Split one region's images into train/val/test, balancing classes between train and test.

    Each image dict needs ``"id"`` (unique) and ``"class_pixels"`` (``{"1".."8": int}``).  Counts come
    from :func:`split_counts`; the best of ``trials`` seeded permutations is kept (module docstring).
    ``groups`` maps id -> leakage group (missing ids are their own group): a group's images always share a
    split.  ``fixed`` maps ids to splits decided beforehand (released images); they keep them, and
    undecided members of their groups follow them.

    Returns ``(assignment, info)``: ``assignment`` maps id -> ``"train" | "val" | "test"`` (keys sorted);
    ``info`` is ``{"region", "trials", "best_trial" (0-based; ``trials`` = the coverage-first assignment,
    package docstring *Class coverage*), "score" (rounded to 1e-6), "missing_in_train": [class ids],
    "missing_in_test": [class ids], "counts": {"train", "val", "test"}}`` where the missing lists name region
    classes absent from that split in the chosen assignment, plus ``"fixed"`` (number of images decided before
    the trials: given in ``fixed`` or following them) when that number is positive and ``"warnings"`` (lines
    starting with their name, e.g. ``single-leakage-group: ...``) when there are any.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    fr = _check_ratios(ratios)
    ordered = sorted(images, key=lambda d: d["id"])
    ids = [d["id"] for d in ordered]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"region {region}: duplicate image ids {dup}")
    n = len(ordered)
    target = split_counts(n, ratios)
    info: dict[str, Any] = {
        "region": region,
        "trials": int(trials),
        "best_trial": 0,
        "score": 0.0,
        "missing_in_train": [],
        "missing_in_test": [],
        "counts": dict(zip(SPLITS, target)),
    }
    if n == 0:
        return {}, info

    groups = groups or {}
    fixed = dict(fixed or {})
    for k, v in fixed.items():
        if v not in SPLITS:
            raise ValueError(f"region {region}: image {k}: unknown split {v!r}")
    group_of = [str(groups.get(i, i)) for i in ids]
    code = _decided_codes(ids, group_of, fixed)
    n_fixed = int((code >= 0).sum())
    cp = class_matrix(ordered)
    warnings: list[str] = []
    split_idx = _assignments(cp, code, group_of, target, fr, trials=trials, seed=seed, region=region,
                             warnings=warnings)
    best = _best_trial(cp, split_idx, target, info)
    if n_fixed:
        info["fixed"] = n_fixed
    if warnings:
        info["warnings"] = warnings
    assignment = {image_id: SPLITS[int(split_idx[best, idx])] for idx, image_id in enumerate(ids)}
    return dict(sorted(assignment.items())), info


def split_dataset(
    images: Iterable[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
    groups: Mapping[str, str] | None = None,
    previous: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Split every region (``image["region"]``) independently with :func:`split_region`.

    ``groups``: id -> leakage group; None computes :func:`leakage_groups` of ``images`` (an empty mapping
    turns grouping off).  ``previous``: stable key (:func:`image_key`) -> split of an earlier release; those
    images keep their split and only new ones are assigned (module docstring, *Stable releases*).  Regions
    are processed in sorted order; an undecided image whose group has a member decided in another region
    (released, or assigned in an earlier region) follows it.

    Returns ``(assignment, infos)``: id -> split for all images (keys sorted) and one info dict per region
    in sorted region order.  Image ids must be unique across the whole dataset.
    """
    images = list(images)
    by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for img in images:
        if "region" not in img or not img["region"]:
            raise ValueError(f"image {img.get('id')!r} has no region")
        if img["id"] in seen:
            raise ValueError(f"duplicate image id {img['id']!r}")
        seen.add(img["id"])
        by_region[img["region"]].append(img)
    if groups is None:
        groups = leakage_groups(images) if any(footprint(i) is not None for i in images) else {}
    previous = dict(previous or {})
    for k, v in previous.items():
        if v not in SPLITS:
            raise ValueError(f"previous split of {k!r} is {v!r}, not one of {SPLITS}")
    decided: dict[str, str] = {}
    for img in images:
        if previous:
            key = image_key(img)
            if key in previous:
                decided[img["id"]] = previous[key]
    region_of = {img["id"]: img["region"] for img in images}
    members: dict[str, list[str]] = defaultdict(list)
    for img in images:
        members[str(groups.get(img["id"], img["id"]))].append(img["id"])

    assignment: dict[str, str] = {}
    infos: list[dict[str, Any]] = []
    for region in sorted(by_region):
        fixed = {img["id"]: decided[img["id"]] for img in by_region[region] if img["id"] in decided}
        for img in by_region[region]:
            i = img["id"]
            if i in fixed:
                continue
            outside = [decided[m] for m in members[str(groups.get(i, i))] if m in decided and region_of[m] != region]
            if outside and not any(m in fixed for m in members[str(groups.get(i, i))]):
                fixed[i] = _majority(outside)
        part, info = split_region(by_region[region], ratios=ratios, trials=trials, seed=seed, region=region,
                                  groups=groups, fixed=fixed)
        assignment.update(part)
        decided.update(part)
        infos.append(info)
    return dict(sorted(assignment.items())), infos
