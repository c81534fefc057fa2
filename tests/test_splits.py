"""Per-region train/val/test splits with class balancing."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.dataset.splits.trials import split_counts, split_dataset, split_region


def _images(n: int, seed: int, region: str = "r", classes=range(1, 9)) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cp = {str(c): 0 for c in range(1, 9)}
        for c in classes:
            if rng.random() < 0.6:
                cp[str(c)] = int(rng.integers(1, 50_000))
        out.append({"id": f"{region}_{i + 1}", "region": region, "class_pixels": cp})
    return out


@pytest.mark.parametrize("n", range(0, 101))
def test_split_counts_sum_and_ratio(n):
    tr, va, te = split_counts(n)
    assert tr + va + te == n
    assert min(tr, va, te) >= 0
    if n >= 3:
        assert tr >= 1 and te >= 1
        for count, ratio in zip((tr, va, te), (0.6, 0.1, 0.3)):
            assert abs(count - n * ratio) < 1, (n, tr, va, te)


def test_split_counts_known_values():
    assert split_counts(1) == (1, 0, 0)
    assert split_counts(2) == (1, 0, 1)
    assert split_counts(3) == (2, 0, 1)
    assert split_counts(5) == (3, 1, 1)  # tie of remainders val/test -> val (train, val, test order)
    assert split_counts(10) == (6, 1, 3)
    assert split_counts(5000) == (3000, 500, 1500)  # the official OpenEarthMap split sizes
    assert split_counts(10, (8, 2, 0)) == (8, 2, 0)  # a zero-ratio part never receives images
    assert split_counts(3, (1, 1, 0)) == (2, 1, 0)
    assert split_counts(7, (1, 1, 1)) == (3, 2, 2)


@pytest.mark.parametrize("bad", [(6, 1), (0, 1, 3), (6, -1, 3)])
def test_split_counts_rejects_bad_ratios(bad):
    with pytest.raises(ValueError):
        split_counts(10, bad)


def test_split_region_deterministic_and_order_independent():
    imgs = _images(25, seed=3)
    a1, i1 = split_region(imgs, seed=11, region="r", trials=200)
    a2, i2 = split_region(list(reversed(imgs)), seed=11, region="r", trials=200)
    assert a1 == a2 and i1 == i2
    assert list(a1) == sorted(a1)
    assert set(a1) == {d["id"] for d in imgs}
    counts = {s: sum(1 for v in a1.values() if v == s) for s in ("train", "val", "test")}
    assert counts == i1["counts"] == dict(zip(("train", "val", "test"), split_counts(25)))
    a3, i3 = split_region(imgs, seed=12, region="r", trials=200)
    a4, _ = split_region(imgs, seed=11, region="other", trials=200)
    assert a3 != a1 and a4 != a1  # the seed and the region name both feed the generator


def test_rare_class_lands_in_train():
    imgs = _images(10, seed=5, classes=range(1, 6))
    for img in imgs:  # classes 1..5 everywhere so that only class 6 can be missing
        for c in range(1, 6):
            img["class_pixels"][str(c)] = max(img["class_pixels"][str(c)], 100)
    imgs[7]["class_pixels"]["6"] = 1234  # water only in r_8
    assignment, info = split_region(imgs, seed=0, region="r", trials=100)
    assert assignment["r_8"] == "train"
    assert info["missing_in_train"] == []
    assert info["missing_in_test"] == [6]
    assert 100 <= info["score"] < 1000


def test_class_in_two_images_goes_to_train_and_test():
    imgs = _images(10, seed=6, classes=range(1, 6))
    for img in imgs:
        for c in range(1, 6):
            img["class_pixels"][str(c)] = max(img["class_pixels"][str(c)], 100)
    imgs[2]["class_pixels"]["7"] = 500
    imgs[6]["class_pixels"]["7"] = 500
    assignment, info = split_region(imgs, seed=0, region="r", trials=300)
    assert sorted([assignment["r_3"], assignment["r_7"]]) == ["test", "train"]
    assert info["missing_in_train"] == [] and info["missing_in_test"] == []
    assert info["score"] < 100


def _brute_scores(imgs: list[dict], seed: int, region: str, trials: int, ratios=(6, 1, 3)) -> list[float]:
    """Independent, loop-based recomputation of every trial's score (documented seeding + permutations)."""
    ordered = sorted(imgs, key=lambda d: d["id"])
    n = len(ordered)
    n_train, n_val, _ = split_counts(n, ratios)
    digest = hashlib.sha256(f"{seed}:{region}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    perms = rng.permuted(np.tile(np.arange(n), (trials, 1)), axis=1)
    region_classes = [c for c in range(1, 9) if any(d["class_pixels"][str(c)] > 0 for d in ordered)]
    scores = []
    for perm in perms:
        train = [ordered[i] for i in perm[:n_train]]
        test = [ordered[i] for i in perm[n_train + n_val:]]
        tr = {c: sum(d["class_pixels"][str(c)] for d in train) for c in range(1, 9)}
        te = {c: sum(d["class_pixels"][str(c)] for d in test) for c in range(1, 9)}
        ttr, tte = sum(tr.values()), sum(te.values())
        l1 = sum(abs((tr[c] / ttr if ttr else 0) - (te[c] / tte if tte else 0)) for c in range(1, 9)) * 100
        miss_tr = sum(1 for c in region_classes if tr[c] == 0)
        miss_te = sum(1 for c in region_classes if te[c] == 0)
        scores.append(1000 * miss_tr + 100 * miss_te + l1)
    return scores


@pytest.mark.parametrize("n,classes", [(12, range(1, 9)), (9, (1, 3, 6))])
def test_best_trial_is_the_minimum_over_all_trials(n, classes):
    imgs = _images(n, seed=n, classes=classes)
    imgs[0]["class_pixels"]["8"] = 77  # one rare class
    trials = 150
    scores = _brute_scores(imgs, seed=42, region="r", trials=trials)
    assignment, info = split_region(imgs, seed=42, region="r", trials=trials)
    best = min(range(trials), key=lambda t: (round(scores[t], 9), t))
    assert info["best_trial"] == best
    assert info["score"] == pytest.approx(min(scores), abs=1e-6)
    assert info["trials"] == trials
    # the returned assignment is exactly the best trial's
    ordered = sorted(imgs, key=lambda d: d["id"])
    n_train, n_val, _ = split_counts(n)
    digest = hashlib.sha256(b"42:r").digest()
    perm = np.random.default_rng(int.from_bytes(digest[:8], "big")).permuted(
        np.tile(np.arange(n), (trials, 1)), axis=1)[best]
    expected = {}
    for pos, i in enumerate(perm):
        expected[ordered[i]["id"]] = "train" if pos < n_train else ("val" if pos < n_train + n_val else "test")
    assert assignment == dict(sorted(expected.items()))


def test_seventy_images_thousand_trials():
    imgs = _images(70, seed=70)
    assignment, info = split_region(imgs, seed=1, region="big", trials=1000)
    assert len(assignment) == 70
    assert info["counts"] == {"train": 42, "val": 7, "test": 21}
    assert 0 <= info["best_trial"] < 1000
    assert info["missing_in_train"] == [] and info["missing_in_test"] == []


def test_small_and_empty_regions():
    assert split_region([], seed=0, region="e")[0] == {}
    one, info = split_region(_images(1, seed=1), seed=0, region="r")
    assert one == {"r_1": "train"} and info["counts"] == {"train": 1, "val": 0, "test": 0}
    both = [dict(im, class_pixels={str(c): 10 for c in range(1, 9)}) for im in _images(2, seed=1)]
    two, _ = split_region(both, seed=0, region="r")
    assert sorted(two.values()) == ["test", "train"]
    # each image has a class the other lacks: both go to train (within the tolerance of one image)
    both[0]["class_pixels"] = dict(both[0]["class_pixels"], **{"6": 0})
    both[1]["class_pixels"] = dict(both[1]["class_pixels"], **{"5": 0})
    two, info = split_region(both, seed=0, region="r")
    assert sorted(two.values()) == ["train", "train"] and info["missing_in_train"] == []
    with pytest.raises(ValueError):
        split_region(_images(3, seed=1) * 2, seed=0, region="r")
    with pytest.raises(ValueError):
        split_region(_images(3, seed=1), seed=0, region="r", trials=0)


def test_split_dataset_groups_by_region():
    imgs = _images(12, seed=1, region="vienna") + _images(5, seed=2, region="austin") + _images(1, seed=3, region="zug")
    assignment, infos = split_dataset(imgs, ratios=(6, 1, 3), trials=100, seed=9)
    assert [i["region"] for i in infos] == ["austin", "vienna", "zug"]
    assert list(assignment) == sorted(assignment) and len(assignment) == 18
    for info in infos:
        region_imgs = [d for d in imgs if d["region"] == info["region"]]
        alone, alone_info = split_region(region_imgs, trials=100, seed=9, region=info["region"])
        assert alone_info == info
        assert all(assignment[k] == v for k, v in alone.items())
    with pytest.raises(ValueError):
        split_dataset(imgs + [dict(imgs[0])], trials=10, seed=0)
    with pytest.raises(ValueError):
        split_dataset([{"id": "x_1", "class_pixels": {}}], trials=10, seed=0)


def test_a_region_decided_before_is_kept_whole_with_the_info_every_trial_gives():
    """A region whose images were all released before (kept, the one cheap path of a rebuild): the same
    assignment and info as when its trials are all that one assignment, scored (best trial 0)."""
    from pipeline.dataset.splits.trials import _best_trial, class_matrix

    images = _images(23, seed=5)
    fixed = {d["id"]: ("train", "train", "val", "test", "test")[i % 5] for i, d in enumerate(images)}
    part, info = split_region(images, seed=3, region="r", trials=400, fixed=fixed)
    assert part == dict(sorted(fixed.items()))
    ordered = sorted(images, key=lambda d: d["id"])
    code = np.array([("train", "val", "test").index(fixed[d["id"]]) for d in ordered])
    expected = {"region": "r", "trials": 400, "fixed": 23}
    assert _best_trial(class_matrix(ordered), np.tile(code, (400, 1)), [14, 2, 7], expected) == 0
    assert info == {**expected, "counts": {"train": 10, "val": 5, "test": 8}}
    # and split_dataset with the previous release's splits: every region of it kept, the new one split
    old, new = _images(30, seed=1, region="a"), _images(12, seed=2, region="b")
    first, _ = split_dataset(old, seed=9)
    from pipeline.dataset.ids import image_key

    for d in old + new:
        d.update(source="s", source_scene_id="x", tile=d["id"])
    previous = {image_key(d): first[d["id"]] for d in old}
    both, infos = split_dataset(old + new, seed=9, groups={}, previous=previous)
    assert {i: both[i] for i in first} == first and [i["region"] for i in infos] == ["a", "b"]
    assert infos[0]["fixed"] == 30 and infos[0]["best_trial"] == 0 and "fixed" not in infos[1]
