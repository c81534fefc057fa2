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
* **Leakage groups** (:func:`leakage_groups`): two tiles whose footprints overlap (also across sources and
  UTM zones) belong to one group (union-find over all overlapping pairs), and a group is never split.  A
  footprint is the tile's UTM ``bounds`` rectangle (8 points per edge) transformed to EPSG:4326, or the
  ``bounds_lonlat`` box when ``crs``/``bounds`` are absent; two footprints overlap when their intersection
  area exceeds :data:`OVERLAP_TOLERANCE` (1e-6) of the smaller footprint.  (Plain ``bounds_lonlat`` boxes
  of neighbouring UTM tiles overlap by thin slivers because of meridian convergence, which would chain a
  whole scene into one group; the transformed rectangles of edge-sharing tiles do not.)  The group id is
  the member id that sorts first in natural order (``austin_2`` before ``austin_10``).
* **Group assignment**: the trials permute *units* (a leakage group of undecided images, singletons
  included) instead of images; units are ordered by their first member id before permuting, so with
  singleton groups the trials are exactly the per-image permutations described above.  Walking a
  permutation, a unit whose members occupy the cumulative positions ``[s, s + k)`` goes to the split
  whose quota interval (``[0, q_train)``, ``[q_train, q_train + q_val)``, rest) contains its centre
  ``s + k / 2`` (a centre on a boundary goes to the later split).  The best trial is the one with the
  smallest *count deviation* ``sum(|count - split_counts(n)|)`` over the three splits, then the lowest
  score above, then the earliest.
* **Stable releases** (``previous``): an image whose stable key (:func:`image_key`) is in ``previous``
  keeps that split; an undecided image whose leakage group holds decided images follows them (the most
  common split among them, ties in train, val, test order).  Only the remaining images are assigned by
  the trials, with quotas ``q`` chosen greedily (one image at a time to the split, among those with a
  positive ratio, with the largest remaining ``target - decided - q``; ties train, val, test) so that the
  region's counts move as close as possible to ``split_counts(n)``: ratios converge to 6:1:3 as releases
  grow, and already released images never move.
* **UDA splits** (:func:`uda_split`, :func:`continent_splits`): see those functions.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from fractions import Fraction
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from pipeline.release.manifest import natural_key

#: The three splits, in the order used for counts, ratios and tie-breaking.
SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: Class ids whose pixels are balanced (0 = unlabelled is ignored).
CLASS_IDS: tuple[int, ...] = tuple(range(1, 9))
DEFAULT_RATIOS: tuple[int, int, int] = (6, 1, 3)
DEFAULT_TRIALS = 1000

#: Two footprints overlap when their intersection exceeds this fraction of the smaller one's area.
OVERLAP_TOLERANCE = 1e-6
#: Points per footprint edge when a UTM rectangle is transformed to EPSG:4326.
_EDGE_POINTS = 8

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


# --- stable keys, footprints and leakage groups -------------------------------------------------------

def image_key(image: Mapping[str, Any]) -> str:
    """Stable key of an image across releases: ``image["key"]`` when present, else the pool's tile key
    ``f"{source}-{source_scene_id}-{tile}"`` (the format of :func:`pipeline.labels.labelling.tile_key`)."""
    key = image.get("key")
    if key:
        return str(key)
    try:
        return f"{image['source']}-{image['source_scene_id']}-{image['tile']}"
    except KeyError as exc:
        raise ValueError(f"image {image.get('id')!r} has neither 'key' nor source/source_scene_id/tile") from exc


@lru_cache(maxsize=64)
def _to_lonlat(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def footprint(image: Mapping[str, Any]):
    """The tile footprint as a shapely polygon in EPSG:4326 lon/lat, or None when the record has none.

    With ``crs`` and ``bounds`` (``[minx, miny, maxx, maxy]`` in that CRS) the rectangle, densified to
    :data:`_EDGE_POINTS` points per edge, is transformed; otherwise the ``bounds_lonlat`` box is used."""
    from shapely.geometry import Polygon, box

    crs, b = image.get("crs"), image.get("bounds")
    if isinstance(crs, str) and isinstance(b, (list, tuple)) and len(b) == 4:
        x0, y0, x1, y1 = (float(v) for v in b)
        t = np.arange(_EDGE_POINTS) / _EDGE_POINTS
        xs = np.concatenate([x0 + (x1 - x0) * t, np.full(_EDGE_POINTS, x1), x1 - (x1 - x0) * t, np.full(_EDGE_POINTS, x0)])
        ys = np.concatenate([np.full(_EDGE_POINTS, y0), y0 + (y1 - y0) * t, np.full(_EDGE_POINTS, y1), y1 - (y1 - y0) * t])
        lon, lat = _to_lonlat(crs).transform(xs, ys)
        poly = Polygon(zip(np.asarray(lon).tolist(), np.asarray(lat).tolist()))
        if poly.is_valid and poly.area > 0:
            return poly
    bl = image.get("bounds_lonlat")
    if isinstance(bl, (list, tuple)) and len(bl) == 4:
        return box(*(float(v) for v in bl))
    return None


def overlapping_pairs(
    images: Iterable[Mapping[str, Any]], *, tolerance: float = OVERLAP_TOLERANCE
) -> list[tuple[str, str, float]]:
    """Every pair of images whose footprints (:func:`footprint`) overlap by more than ``tolerance`` of the
    smaller footprint's area, as ``(id_a, id_b, fraction)`` with ``id_a`` before ``id_b`` in natural order,
    pairs sorted naturally; ``fraction`` is the intersection over the smaller area, rounded to 1e-6.
    Images without a footprint overlap nothing."""
    from shapely import STRtree

    recs = sorted(images, key=lambda d: natural_key(str(d["id"])))
    ids = [str(d["id"]) for d in recs]
    geoms, idx = [], []
    for i, d in enumerate(recs):
        g = footprint(d)
        if g is not None and not g.is_empty:
            geoms.append(g)
            idx.append(i)
    if len(geoms) < 2:
        return []
    tree = STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    out = []
    for a, b in zip(left.tolist(), right.tolist()):
        if a >= b:
            continue
        ga, gb = geoms[a], geoms[b]
        smaller = min(ga.area, gb.area)
        if smaller <= 0:
            continue
        frac = ga.intersection(gb).area / smaller
        if frac > tolerance:
            out.append((ids[idx[a]], ids[idx[b]], round(min(frac, 1.0), 6)))
    return sorted(out, key=lambda t: (natural_key(t[0]), natural_key(t[1])))


def leakage_groups(
    images: Iterable[Mapping[str, Any]], *, tolerance: float = OVERLAP_TOLERANCE
) -> dict[str, str]:
    """``{image id: group id}`` for every image (keys in natural order): images connected by overlapping
    footprints (:func:`overlapping_pairs`, transitively) share a group; the group id is the member id first
    in natural order, so an image that overlaps nothing is its own group."""
    recs = list(images)
    parent = {str(d["id"]): str(d["id"]) for d in recs}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in overlapping_pairs(recs, tolerance=tolerance):
        ra, rb = find(a), find(b)
        if ra != rb:
            # the root is always the naturally-smallest member
            lo, hi = sorted((ra, rb), key=natural_key)
            parent[hi] = lo
    return {i: find(i) for i in sorted(parent, key=natural_key)}


# --- splitting --------------------------------------------------------------------------------------

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


def split_region(
    images: list[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
    region: str,
    groups: Optional[Mapping[str, str]] = None,
    fixed: Optional[Mapping[str, str]] = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Split one region's images into train/val/test, balancing classes between train and test.

    Each image dict needs ``"id"`` (unique) and ``"class_pixels"`` (``{"1".."8": int}``).  Counts come
    from :func:`split_counts`; the best of ``trials`` seeded permutations is kept (module docstring).
    ``groups`` maps id -> leakage group (missing ids are their own group): a group's images always share a
    split.  ``fixed`` maps ids to splits decided beforehand (released images); they keep them, and
    undecided members of their groups follow them.

    Returns ``(assignment, info)``: ``assignment`` maps id -> ``"train" | "val" | "test"`` (keys sorted);
    ``info`` is ``{"region", "trials", "best_trial" (0-based), "score" (rounded to 1e-6),
    "missing_in_train": [class ids], "missing_in_test": [class ids], "counts": {"train", "val", "test"}}``
    where the missing lists name region classes absent from that split in the chosen trial, plus
    ``"fixed"`` (number of images decided before the trials: given in ``fixed`` or following them) when
    that number is positive.
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
    decided_by_group: dict[str, list[str]] = defaultdict(list)
    for i, g in zip(ids, group_of):
        if i in fixed:
            decided_by_group[g].append(fixed[i])
    code = np.full(n, -1, dtype=np.int64)  # split index of decided images, -1 = undecided
    for idx, (i, g) in enumerate(zip(ids, group_of)):
        if i in fixed:
            code[idx] = SPLITS.index(fixed[i])
        elif g in decided_by_group:
            code[idx] = SPLITS.index(_majority(decided_by_group[g]))
    n_fixed = int((code >= 0).sum())

    units: dict[str, list[int]] = {}
    for idx, g in enumerate(group_of):
        if code[idx] < 0:
            units.setdefault(g, []).append(idx)  # insertion order = order of the first member
    unit_members = list(units.values())
    n_units = len(unit_members)
    decided_counts = [int((code == s).sum()) for s in range(3)]
    free = n - n_fixed
    q = _quotas(free, target, decided_counts, fr)

    cp = _class_matrix(ordered)
    rng = _rng_for(seed, region)
    perms = rng.permuted(np.tile(np.arange(n_units), (trials, 1)), axis=1)  # (trials, units)
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
    train = split_idx == 0
    test = split_idx == 2
    scores = score_assignments(cp, train, test)
    counts = np.stack([(split_idx == s).sum(axis=1) for s in range(3)], axis=1)
    deviation = np.abs(counts - np.asarray(target)[None, :]).sum(axis=1)
    best = int(np.lexsort((np.arange(trials), scores, deviation))[0])

    region_classes = cp.sum(axis=0) > 0
    tr_sums = cp[train[best]].sum(axis=0)
    te_sums = cp[test[best]].sum(axis=0)
    info["best_trial"] = best
    info["score"] = round(float(scores[best]), 6)
    info["missing_in_train"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, tr_sums) if rc and s == 0]
    info["missing_in_test"] = [c for c, rc, s in zip(CLASS_IDS, region_classes, te_sums) if rc and s == 0]
    info["counts"] = {s: int(counts[best, k]) for k, s in enumerate(SPLITS)}
    if n_fixed:
        info["fixed"] = n_fixed
    assignment = {image_id: SPLITS[int(split_idx[best, idx])] for idx, image_id in enumerate(ids)}
    return dict(sorted(assignment.items())), info


def split_dataset(
    images: Iterable[dict[str, Any]],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    trials: int = DEFAULT_TRIALS,
    seed: int,
    groups: Optional[Mapping[str, str]] = None,
    previous: Optional[Mapping[str, str]] = None,
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


# --- domain-adaptation splits -----------------------------------------------------------------------

#: Classes counted as urban: developed space, road, building.
URBAN_CLASSES: tuple[int, ...] = (3, 4, 8)
#: A region is urban when its urban classes cover at least this share of its labelled pixels.
URBAN_THRESHOLD = 0.30
#: Share of regions in the UDA target domain (OpenEarthMap: 24 of 97 regions).
UDA_TARGET_SHARE = 24 / 97


def _rank(seed: int, *parts: str) -> str:
    return hashlib.sha256(":".join([str(seed), *parts]).encode("utf-8")).hexdigest()


def region_profiles(
    records: Iterable[Mapping[str, Any]], *, urban_threshold: float = URBAN_THRESHOLD
) -> dict[str, dict[str, Any]]:
    """Per region (sorted): ``{"continent", "urban_share", "urban"}`` from image records (``region``,
    ``continent``, ``class_pixels``; several records of a region are summed).  ``urban_share`` is the
    share of classes 3, 4 and 8 in the region's labelled pixels (0 when none), rounded to 1e-6; ``urban``
    is ``urban_share >= urban_threshold``.  A region's continent is its most common one (ties: sorted)."""
    pix: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(CLASS_IDS), dtype=np.float64))
    conts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        region = r["region"]
        conts[region][r.get("continent", "")] += 1
        pix[region] += _class_matrix([{"id": r.get("id", region), "class_pixels": r.get("class_pixels")}])[0]
    out = {}
    for region in sorted(pix):
        tot = pix[region].sum()
        urban = sum(pix[region][c - 1] for c in URBAN_CLASSES)
        share = float(urban / tot) if tot > 0 else 0.0
        continent = sorted(conts[region].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        out[region] = {"continent": continent, "urban_share": round(share, 6), "urban": share >= urban_threshold}
    return out


def _hamilton(total: int, weights: dict[str, float], caps: dict[str, int], tiebreak: dict[str, str]) -> dict[str, int]:
    """Largest-remainder allocation of ``total`` over ``weights`` with per-key caps."""
    wsum = sum(weights.values())
    alloc = {k: 0 for k in weights}
    if total <= 0 or wsum <= 0:
        return alloc
    quota = {k: total * w / wsum for k, w in weights.items()}
    for k in alloc:
        alloc[k] = min(int(math.floor(quota[k])), caps[k])
    left = total - sum(alloc.values())
    while left > 0:
        room = [k for k in alloc if alloc[k] < caps[k]]
        if not room:
            break
        k = max(room, key=lambda j: (quota[j] - alloc[j], tiebreak[j]))
        alloc[k] += 1
        left -= 1
    return alloc


def uda_split(
    region_records: Iterable[Mapping[str, Any]],
    *,
    seed: int,
    target_share: float = UDA_TARGET_SHARE,
    urban_threshold: float = URBAN_THRESHOLD,
) -> dict[str, str]:
    """Regional unsupervised-domain-adaptation split: ``{region: "source" | "target"}`` (sorted).

    ``region_records`` are image (or per-region) records with ``region``, ``continent``, ``class_pixels``
    (:func:`region_profiles` sums them per region and decides urban / rural).  Rule, for ``R`` regions:

    1. ``T = round(R * target_share)`` (halves up) target regions, clipped to ``1..R-1`` (``R < 2``: all
       source).  The default share is 24/97, as in OpenEarthMap.
    2. ``T`` is shared over continents by largest remainder of ``T * n_c / R`` (ties by the seeded hash
       of the continent); a continent with ``n_c >= 2`` regions keeps at least one source region, and, when
       ``T`` allows, every such continent gets at least one target region (taken from the continent with
       the most targets).
    3. Within a continent its targets are shared between urban and rural regions by largest remainder
       (ties by seeded hash), then chosen per stratum in the order of ``sha256(f"{seed}:uda:{region}")``.
    4. Balance: when urban (or rural) regions exist on only one side although there are at least two of
       them, one is swapped, within one continent, with a region of the other kind on the other side.

    Deterministic for a given (seed, records, share, threshold); never uses Python's ``hash()``.
    """
    prof = region_profiles(region_records, urban_threshold=urban_threshold)
    regions = sorted(prof)
    R = len(regions)
    if R < 2:
        return {r: "source" for r in regions}
    T = int(math.floor(R * target_share + 0.5))
    T = min(max(T, 1), R - 1)
    by_cont: dict[str, list[str]] = defaultdict(list)
    for r in regions:
        by_cont[prof[r]["continent"]].append(r)
    conts = sorted(by_cont)
    tie = {c: _rank(seed, "uda-continent", c) for c in conts}
    caps = {c: len(by_cont[c]) - 1 if len(by_cont[c]) >= 2 else 1 for c in conts}
    t = _hamilton(T, {c: len(by_cont[c]) for c in conts}, caps, tie)
    for c in conts:  # coverage: every multi-region continent on both sides when T allows
        if len(by_cont[c]) >= 2 and t[c] == 0:
            donors = [d for d in conts if t[d] >= 2]
            if donors:
                d = max(donors, key=lambda x: (t[x], tie[x]))
                t[d] -= 1
                t[c] += 1
    side = {r: "source" for r in regions}
    rank = {r: _rank(seed, "uda", r) for r in regions}
    for c in conts:
        strata = {k: sorted((r for r in by_cont[c] if prof[r]["urban"] == (k == "urban")), key=lambda r: rank[r])
                  for k in ("urban", "rural")}
        alloc = _hamilton(t[c], {k: len(v) for k, v in strata.items()}, {k: len(v) for k, v in strata.items()},
                          {k: _rank(seed, "uda-stratum", c, k) for k in strata})
        for k, members in strata.items():
            for r in members[: alloc[k]]:
                side[r] = "target"
    for kind in (True, False):  # urban, then rural: present on both sides when possible
        of_kind = [r for r in regions if prof[r]["urban"] == kind]
        for missing_side, other in (("target", "source"), ("source", "target")):
            if len(of_kind) < 2 or any(side[r] == missing_side for r in of_kind):
                continue
            # the region of the other kind that leaves missing_side must not be the last of its kind there
            if sum(1 for r in regions if prof[r]["urban"] != kind and side[r] == missing_side) < 2:
                continue
            for c in conts:
                give = sorted((r for r in by_cont[c] if prof[r]["urban"] == kind and side[r] == other), key=rank.get)
                take = sorted((r for r in by_cont[c] if prof[r]["urban"] != kind and side[r] == missing_side),
                              key=rank.get)
                if give and take:
                    side[give[0]], side[take[0]] = missing_side, other
                    break
    return dict(sorted(side.items()))


def continent_splits(images: Iterable[Mapping[str, Any]], *, by: str = "id") -> dict[str, dict[str, list[str]]]:
    """Continent-wise domain adaptation: for every continent present (sorted), its images as ``source``
    and all other images as ``target`` — ``{continent: {"source": [...], "target": [...]}}``, listing
    image ids (``by="id"``) or distinct region names (``by="region"``), each list in natural order."""
    if by not in ("id", "region"):
        raise ValueError(f"by must be 'id' or 'region', got {by!r}")
    recs = list(images)
    conts = sorted({r["continent"] for r in recs})
    out = {}
    for c in conts:
        src = {str(r[by]) for r in recs if r["continent"] == c}
        tgt = {str(r[by]) for r in recs if r["continent"] != c} - (src if by == "region" else set())
        out[c] = {"source": sorted(src, key=natural_key), "target": sorted(tgt, key=natural_key)}
    return out


def uda_section(
    images: Iterable[Mapping[str, Any]],
    *,
    seed: int,
    target_share: float = UDA_TARGET_SHARE,
    urban_threshold: float = URBAN_THRESHOLD,
) -> dict[str, Any]:
    """The manifest's optional ``uda`` section: ``{"seed", "target_share", "urban_threshold",
    "regional": uda_split(...), "continent": continent_splits(images, by="region")}``."""
    images = list(images)
    return {
        "seed": int(seed),
        "target_share": float(target_share),
        "urban_threshold": float(urban_threshold),
        "regional": uda_split(images, seed=seed, target_share=target_share, urban_threshold=urban_threshold),
        "continent": continent_splits(images, by="region"),
    }
