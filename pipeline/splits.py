"""Train / val / test splits, made per region so that every region appears in every split.

Policies
--------
* **Per region.** OpenEarthMap splits each region separately (about 6:1:3 train:val:test), so a model is
  tested on every region it was trained on.  :func:`split_dataset` groups images by ``image["region"]``
  and calls :func:`split_region` for each region, in sorted region order.
* **Counts** (:func:`split_counts`): largest-remainder rounding of ``n * ratio / sum(ratios)``, leftover
  images going to the largest fractional parts (ties in train, val, test order); then, for ``n >= 3``,
  train and test each get at least one image (taken from the largest other part).  ``n == 1`` -> all
  train; ``n == 2`` -> one train, one test.  A part whose ratio is 0 never receives images.
* **Class balance** (:func:`split_region`): ``trials`` random permutations of the region's images (sorted
  by id first, so input order does not matter) are drawn from a NumPy ``Generator`` seeded with the first
  8 bytes of ``sha256(f"{seed}:{region}")`` (never Python's ``hash()``).  In each permutation the first
  ``n_train`` images are train, the next ``n_val`` val, the rest test.  Each trial is scored

      score = 1000 * (#region classes with no pixel in train)
            +  100 * (#region classes with no pixel in test)
            +  L1 distance, in percent (0..200), between the train and test class-share vectors

  where a "region class" is one of 1..8 with at least one pixel in the region, and a class-share vector
  is the split's per-class pixel count divided by its total labelled pixels (all zeros for a split with
  no labelled pixel).  The lowest score wins; ties go to the earliest trial.  Everything is
  deterministic for a given (seed, region, image set, ratios, trials).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from fractions import Fraction
from typing import Any, Iterable, Sequence

import numpy as np

#: The three splits, in the order used for counts, ratios and tie-breaking.
SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: Class ids whose pixels are balanced (0 = unlabelled is ignored).
CLASS_IDS: tuple[int, ...] = tuple(range(1, 9))
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


def _rng_for(seed: int, region: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{region}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _class_matrix(images: Sequence[dict[str, Any]]) -> np.ndarray:
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


def split_region(
    images: list[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
    region: str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Split one region's images into train/val/test, balancing classes between train and test.

    Each image dict needs ``"id"`` (unique) and ``"class_pixels"`` (``{"1".."8": int}``).  Counts come
    from :func:`split_counts`; the best of ``trials`` seeded permutations is kept (module docstring).

    Returns ``(assignment, info)``: ``assignment`` maps id -> ``"train" | "val" | "test"`` (keys sorted);
    ``info`` is ``{"region", "trials", "best_trial" (0-based), "score" (rounded to 1e-6),
    "missing_in_train": [class ids], "missing_in_test": [class ids], "counts": {"train", "val", "test"}}``
    where the missing lists name region classes absent from that split in the chosen trial.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    ordered = sorted(images, key=lambda d: d["id"])
    ids = [d["id"] for d in ordered]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"region {region}: duplicate image ids {dup}")
    n = len(ordered)
    n_train, n_val, n_test = split_counts(n, ratios)
    info: dict[str, Any] = {
        "region": region,
        "trials": int(trials),
        "best_trial": 0,
        "score": 0.0,
        "missing_in_train": [],
        "missing_in_test": [],
        "counts": {"train": n_train, "val": n_val, "test": n_test},
    }
    if n == 0:
        return {}, info

    cp = _class_matrix(ordered)
    rng = _rng_for(seed, region)
    perms = rng.permuted(np.tile(np.arange(n), (trials, 1)), axis=1)  # (trials, n): position -> image
    # rank[t, image] = position of the image in permutation t
    ranks = np.empty_like(perms)
    np.put_along_axis(ranks, perms, np.arange(n)[None, :].repeat(trials, axis=0), axis=1)
    train = ranks < n_train
    test = ranks >= n_train + n_val
    scores = score_assignments(cp, train, test)
    best = int(np.argmin(scores))  # first minimum -> earliest trial on ties

    region_classes = cp.sum(axis=0) > 0
    tr_sums = cp[train[best]].sum(axis=0)
    te_sums = cp[test[best]].sum(axis=0)
    info["best_trial"] = best
    info["score"] = round(float(scores[best]), 6)
    info["missing_in_train"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, tr_sums) if rc and s == 0]
    info["missing_in_test"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, te_sums) if rc and s == 0]

    assignment: dict[str, str] = {}
    for idx, image_id in enumerate(ids):
        r = ranks[best, idx]
        assignment[image_id] = "train" if r < n_train else ("val" if r < n_train + n_val else "test")
    return dict(sorted(assignment.items())), info


def split_dataset(
    images: Iterable[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Split every region (``image["region"]``) independently with :func:`split_region`.

    Returns ``(assignment, infos)``: id -> split for all images (keys sorted) and one info dict per region
    in sorted region order.  Image ids must be unique across the whole dataset.
    """
    by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for img in images:
        if "region" not in img or not img["region"]:
            raise ValueError(f"image {img.get('id')!r} has no region")
        if img["id"] in seen:
            raise ValueError(f"duplicate image id {img['id']!r}")
        seen.add(img["id"])
        by_region[img["region"]].append(img)
    assignment: dict[str, str] = {}
    infos: list[dict[str, Any]] = []
    for region in sorted(by_region):
        part, info = split_region(by_region[region], ratios=ratios, trials=trials, seed=seed, region=region)
        assignment.update(part)
        infos.append(info)
    return dict(sorted(assignment.items())), infos
