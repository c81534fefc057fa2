"""Tests of pipeline.dataset.selection (OpenEarthMap's loss-driven hard-image sampling) on synthetic GeoTIFF pools.

Easy tiles: 2-4 large Voronoi regions of common classes, each in its class-typical colour with little
noise.  Hard tiles: 40-80 small Voronoi segments of all classes (rare ones included), half of them painted
in the colour of another class, with strong noise.  Hard tiles sit at positions ``i % 7 in (2, 5)`` so
that the every-k-th labelled subset contains some of them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.dataset.selection.features import IMAGE_FEATURE_NAMES, image_features, read_image, read_label
from pipeline.dataset.selection.model import MODEL_FEATURE_NAMES, SmallUNet, weights_sha256
from pipeline.dataset.selection.sampling import sample_region, select_hard_images
from pipeline.rng import derive_seed

TYPICAL = {1: (150, 120, 90), 2: (150, 165, 95), 3: (165, 165, 160), 4: (95, 95, 100),
           5: (40, 90, 45), 6: (35, 65, 110), 7: (115, 175, 80), 8: (200, 95, 75)}


def make_tile(rng: np.random.Generator, px: int, hard: bool) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(40, 80)) if hard else int(rng.integers(2, 5))
    pts = rng.uniform(0, px, (n, 2))
    yy, xx = np.mgrid[0:px, 0:px]
    seg = ((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).argmin(-1)
    classes = rng.choice([1, 2, 3, 4, 5, 6, 7, 8] if hard else [2, 3, 5, 6, 7], n)
    colours = np.array([TYPICAL[int(c)] for c in classes], float)
    if hard:
        swap = rng.random(n) < 0.5
        colours[swap] = [TYPICAL[int(c)] for c in rng.choice(list(TYPICAL), int(swap.sum()))]
    image = colours[seg] + rng.normal(0, 18 if hard else 6, (px, px, 3))
    return np.clip(image, 0, 255).astype(np.uint8), classes[seg].astype(np.uint8)


def write_tif(path: Path, arr: np.ndarray) -> str:
    arr = arr if arr.ndim == 3 else arr[..., None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=arr.shape[2],
                       dtype="uint8", crs="EPSG:32633", transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000)) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return str(path)


def is_hard(i: int) -> bool:
    return i % 7 in (2, 5)


def make_pool(folder: Path, n: int, px: int, seed: int = 1, prefix: str = "t") -> list[dict]:
    """``n`` candidates with a label each (the selection itself only uses the every-k-th ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(n):
        image, label = make_tile(rng, px, is_hard(i))
        name = f"{prefix}{i:03d}"
        pool.append({"id": name, "image": write_tif(folder / f"{name}.tif", image),
                     "label": write_tif(folder / f"{name}_label.tif", label)})
    return pool


MAIN = dict(quota=36, k=3, seed=11, size=64, epochs=4, random_fraction=0.0, n_estimators=100)


@pytest.fixture(scope="module")
def main_pool(tmp_path_factory) -> list[dict]:
    return make_pool(tmp_path_factory.mktemp("main"), 60, 64)


@pytest.fixture(scope="module")
def main_result(main_pool) -> dict:
    return select_hard_images(main_pool, **MAIN)


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory) -> list[dict]:
    pool = make_pool(tmp_path_factory.mktemp("small"), 30, 32, seed=2)
    pool[4]["label"] = None  # a k-th candidate without label is not in the labelled subset
    # (the other candidates keep their labels: off the every-k-th positions they must be ignored)
    return pool


SMALL = dict(quota=20, k=2, seed=5, size=32, epochs=2, random_fraction=0.5, n_estimators=30)


# ---------------------------------------------------------------------------------------------- features

def test_image_features_fixed_length_finite_and_deterministic():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    f_big, f_small = image_features(big), image_features(small)
    assert f_big.shape == f_small.shape == (len(IMAGE_FEATURE_NAMES),)
    assert np.all(np.isfinite(f_big)) and np.all(np.isfinite(f_small))
    assert np.array_equal(image_features(big), f_big)
    # The 1024 tile is summarised on a 256 copy: same features as pre-downsampling it with INTER_AREA.
    import cv2
    assert np.allclose(image_features(cv2.resize(big, (256, 256), interpolation=cv2.INTER_AREA)), f_big)


def test_image_features_measure_colour_and_texture():
    rng = np.random.default_rng(1)
    easy, _ = make_tile(rng, 128, hard=False)
    hard, _ = make_tile(rng, 128, hard=True)
    fe, fh = image_features(easy), image_features(hard)
    idx = {n: i for i, n in enumerate(IMAGE_FEATURE_NAMES)}
    for name in ("grad_mean", "canny_edge_frac", "colour_change_frac", "local_std_mean", "log_laplacian_var"):
        assert fh[idx[name]] > fe[idx[name]], name
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[..., 0] = 200
    ff = image_features(flat)
    assert ff[idx["r_mean"]] == 200 and ff[idx["g_mean"]] == 0 and ff[idx["r_std"]] == 0
    assert ff[idx["grad_mean"]] == 0 and ff[idx["colour_entropy"]] == 0 and ff[idx["nodata_frac"]] == 0
    assert image_features(np.zeros((8, 8, 3), np.uint8))[idx["nodata_frac"]] == 1.0
    with pytest.raises(TypeError):
        image_features(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        image_features(np.zeros((8, 8), np.uint8))


def test_readers_downsample_images_by_average_and_labels_by_mode(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 200
    image[:4, :4] = (40, 80, 120)
    label = np.full((64, 64), 5, np.uint8)
    label[:, 32:] = 6
    label[0, 0] = 8  # one odd pixel in a 4x4 block: mode keeps the majority
    img = read_image(write_tif(tmp_path / "i.tif", image), 16)
    lab = read_label(write_tif(tmp_path / "l.tif", label), 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (40, 80, 120) and tuple(img[5, 12]) == (200, 200, 200)
    assert lab.shape == (16, 16) and lab[0, 0] == 5 and lab[0, 8] == 6
    bad = label.copy()
    bad[2:6, 2:6] = 9
    with pytest.raises(ValueError):
        read_label(write_tif(tmp_path / "bad.tif", bad), 64)


def test_weights_sha256_is_deterministic_and_sensitive():
    import torch
    torch.manual_seed(0)
    a = SmallUNet()
    torch.manual_seed(0)
    b = SmallUNet()
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.head.bias[0] += 1e-6
    assert weights_sha256(a) != weights_sha256(b)


def test_derive_seed_is_stable():
    assert derive_seed(1, "eu_vienna") == derive_seed(1, "eu_vienna")
    assert derive_seed(1, "eu_vienna") != derive_seed(2, "eu_vienna")
    import hashlib
    assert derive_seed(7, "x") == int.from_bytes(hashlib.sha256(b"7:x").digest()[:8], "big") >> 1


# ------------------------------------------------------------------------------------------ main pool

def test_hard_images_preferred_over_random(main_pool, main_result):
    res = main_result
    labelled = set(res["labelled"])
    hard_ids = {c["id"] for i, c in enumerate(main_pool) if is_hard(i)}
    rest = [c["id"] for c in main_pool if c["id"] not in labelled]
    base_rate = sum(i in hard_ids for i in rest) / len(rest)
    picked = [s["id"] for s in res["selected"] if s["reason"] == "hard"]
    assert len(picked) == MAIN["quota"] - len(labelled)
    frac = sum(i in hard_ids for i in picked) / len(picked)
    rng = np.random.default_rng(123)
    random_pick = rng.choice(rest, len(picked), replace=False)
    random_frac = sum(i in hard_ids for i in random_pick) / len(picked)
    assert frac >= 2 * base_rate, (frac, base_rate)
    assert frac > random_frac + 0.2, (frac, random_frac)
    # Predicted losses rank hard tiles above easy ones overall.
    pred = res["predicted_loss"]
    assert np.mean([pred[i] for i in hard_ids]) > np.mean([pred[c["id"]] for c in main_pool if c["id"] not in hard_ids])
    # Honest (held-out) losses of the labelled hard tiles exceed those of the labelled easy ones.
    ll = res["labelled_loss"]
    assert np.mean([ll[i] for i in labelled & hard_ids]) > np.mean([ll[i] for i in labelled - hard_ids])


def test_main_result_structure(main_pool, main_result):
    res = main_result
    ids = [c["id"] for c in main_pool]
    assert res["labelled"] == ids[:: MAIN["k"]]
    assert len(res["selected"]) == MAIN["quota"]
    sel = [s["id"] for s in res["selected"]]
    assert len(set(sel)) == len(sel) and sel == sorted(sel, key=ids.index)
    assert {s["id"] for s in res["selected"] if s["reason"] == "labelled"} == set(res["labelled"])
    assert {s["reason"] for s in res["selected"]} == {"labelled", "hard"}
    # The hard picks are the unselected candidates of highest predicted loss.
    pred = res["predicted_loss"]
    assert set(pred) == set(ids)
    hard = [s["id"] for s in res["selected"] if s["reason"] == "hard"]
    others = [i for i in ids if i not in set(sel)]
    assert min(pred[i] for i in hard) >= max(pred[i] for i in others)
    assert all(s["predicted_loss"] == pred[s["id"]] for s in res["selected"])
    rho = res["regressor"]["cv_spearman_rho"]
    assert isinstance(rho, float) and math.isfinite(rho) and -1 <= rho <= 1
    assert rho > 0.3  # hard tiles are recognisable from their features
    assert res["regressor"]["cv_folds"] == 5
    assert res["regressor"]["n_features"] == len(IMAGE_FEATURE_NAMES) + len(MODEL_FEATURE_NAMES)
    m = res["model"]
    assert m["folds"] == 3 and m["input_size"] == 64 and m["epochs"] == 4 and m["device"] in ("cpu", "cuda")
    assert m["params"] == sum(p.numel() for p in SmallUNet().parameters())
    assert len(m["weights_sha256"]) == 64 and len(set(m["fold_weights_sha256"])) == 3
    assert sum(m["train_sizes"]) == 2 * len(res["labelled"])  # each image trains 2 of the 3 fold models
    assert res["fallback"] is None
    assert all(v == round(v, 6) for v in pred.values())
    json.dumps(res, allow_nan=False)


# --------------------------------------------------------------------------------------- small pool

def test_determinism_every_kth_and_quota_split(small_pool):
    timings: dict = {}
    a = select_hard_images(small_pool, timings=timings, **SMALL)
    b = select_hard_images(small_pool, **SMALL)
    assert a == b
    assert set(timings) == {"read", "features", "training", "loss", "regression", "prediction"}
    ids = [c["id"] for c in small_pool]
    assert a["labelled"] == [ids[i] for i in range(0, 30, 2) if i != 4]
    reasons = [s["reason"] for s in a["selected"]]
    assert len(reasons) == 20
    assert reasons.count("labelled") == 14 and reasons.count("random") == 3 and reasons.count("hard") == 3
    c = select_hard_images(small_pool, **(SMALL | {"seed": 6}))
    assert c["model"]["weights_sha256"] != a["model"]["weights_sha256"]


def test_labelled_subset_larger_than_quota(small_pool):
    res = select_hard_images(small_pool, **(SMALL | {"quota": 10}))
    assert [s["reason"] for s in res["selected"]] == ["labelled"] * 10
    assert {s["id"] for s in res["selected"]} <= set(res["labelled"])
    # Half by seeded random choice, half by highest measured held-out loss among the rest, so the
    # labelled image of highest loss is always among them.
    loss = res["labelled_loss"]
    assert len(res["labelled"]) == 14
    assert max(loss, key=loss.get) in {s["id"] for s in res["selected"]}


def test_fewer_candidates_than_quota(small_pool):
    res = select_hard_images(small_pool[:12], quota=12, k=2, seed=1)
    assert [s["id"] for s in res["selected"]] == [c["id"] for c in small_pool[:12]]
    assert {s["reason"] for s in res["selected"]} == {"all"}
    assert res["model"] is None and res["regressor"] is None and "quota" in res["fallback"]


def test_too_few_labelled_falls_back_to_random(small_pool):
    pool = [dict(c, label=None) if i not in (0, 10, 20) else c for i, c in enumerate(small_pool)]
    res = select_hard_images(pool, quota=8, k=10, seed=3, size=32)
    assert res["model"] is None and "random" in res["fallback"]
    reasons = {s["id"]: s["reason"] for s in res["selected"]}
    assert len(reasons) == 8 and [i for i, r in reasons.items() if r == "labelled"] == ["t000", "t010", "t020"]
    assert res == select_hard_images(pool, quota=8, k=10, seed=3, size=32)
    other = select_hard_images(pool, quota=8, k=10, seed=4, size=32)
    assert {s["id"] for s in other["selected"]} != set(reasons)  # the seed drives the random draw


def test_invalid_arguments(small_pool):
    with pytest.raises(ValueError):
        select_hard_images(small_pool, quota=5, seed=0, size=30)
    with pytest.raises(ValueError):
        select_hard_images(small_pool, quota=5, seed=0, random_fraction=1.5)
    with pytest.raises(ValueError):
        select_hard_images(small_pool + small_pool[:1], quota=5, seed=0)


# ------------------------------------------------------------------------------------------- regions

def test_sample_region_counts(tmp_path):
    pool = make_pool(tmp_path, 75, 32, seed=4)
    kept = sample_region(pool[:70], seed=1, region="eu_vienna")
    assert len(kept["selected"]) == 70 and kept["model"] is None and kept["region"] == "eu_vienna"
    res = sample_region(pool, seed=1, region="eu_vienna", k=10, size=32, epochs=1, n_estimators=20)
    assert 50 <= len(res["selected"]) <= 70 and len(res["selected"]) == 60
    assert res["seed"] == res["region_seed"] == derive_seed(1, "eu_vienna")
    assert res["labelled"] == [pool[i]["id"] for i in range(0, 75, 10)]
    small = sample_region(pool, seed=1, region="eu_vienna", target=52, k=10, size=32, epochs=1, n_estimators=20)
    assert len(small["selected"]) == 52
    with pytest.raises(ValueError):
        sample_region(pool, seed=1, region="x", target=80)


def test_sample_region_keeps_released_images_and_fills_the_rest(tmp_path):
    pool = make_pool(tmp_path, 75, 32, seed=4)
    first = sample_region(pool, seed=1, region="eu_vienna", k=10, size=32, epochs=1, n_estimators=20)
    released = [s["id"] for s in first["selected"]]
    # later the region grows: the released images must all stay, the quota still holds
    grown = pool + make_pool(tmp_path / "more", 20, 32, seed=9, prefix="new")
    again = sample_region(grown, seed=1, region="eu_vienna", keep=released + ["not-a-candidate"], k=10, size=32,
                          epochs=1, n_estimators=20)
    ids = [s["id"] for s in again["selected"]]
    assert len(ids) == 60 and set(released) <= set(ids)
    assert again["kept"] == released
    assert {s["reason"] for s in again["selected"] if s["id"] in released} == {"released"}
    order = {c["id"]: i for i, c in enumerate(grown)}
    assert ids == sorted(ids, key=order.get)
    # fewer released than the quota: the rest comes from selection among the others
    part = sample_region(grown, seed=1, region="eu_vienna", keep=released[:20], k=10, size=32, epochs=1,
                         n_estimators=20)
    assert len(part["selected"]) == 60 and set(released[:20]) <= {s["id"] for s in part["selected"]}
    assert {s["reason"] for s in part["selected"]} - {"released"} <= {"labelled", "random", "hard"}
