"""Unit tests of the parts of ``pipeline.dataset.selection``: quota filling, the quality gate, features, reading,
the annotation-loop stages and the synthetic pool generator (``bench.selection_pool``)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from bench import selection_pool as poolgen
from pipeline.dataset.selection.config import RegressorConfig
from pipeline.dataset.selection.features import IMAGE_FEATURES, MODEL_FEATURES, image_stats, model_stats
from pipeline.dataset.selection.io import TileReadError, read_image, read_label
from pipeline.dataset.selection.model import SegNet, assign_folds, random_crops, weights_sha256
from pipeline.dataset.selection.record import annotation_stage, summary_lines
from pipeline.dataset.selection.regressor import bootstrap_ci, fit_with_gate, spearman
from pipeline.dataset.selection.sampling import fill_region, keep_all
from pipeline.errors import PipelineInputError
from pipeline.rng import derive_seed

# ------------------------------------------------------------------------------------------ sampling

def test_fill_region_order_random_first_then_hard():
    pred = np.arange(100, dtype=float)  # position i has predicted loss i
    r = fill_region(100, quota=60, labelled=list(range(0, 100, 10)), kept=[], random_fraction=0.5, seed=3,
                    predicted=pred)
    assert len(r) == 60 and sum(v == "labelled" for v in r.values()) == 10
    rand = [i for i, v in r.items() if v == "random"]
    hard = [i for i, v in r.items() if v == "hard"]
    assert len(rand) == 25 and len(hard) == 25
    left = [i for i in range(100) if i not in r]
    assert min(hard) > max(left)  # hard = highest predicted among those not already picked
    assert r == fill_region(100, quota=60, labelled=list(range(0, 100, 10)), kept=[], random_fraction=0.5,
                            seed=3, predicted=pred)
    assert rand != [i for i, v in fill_region(100, quota=60, labelled=list(range(0, 100, 10)), kept=[],
                                                 random_fraction=0.5, seed=4, predicted=pred).items() if v == "random"]


def test_fill_region_fallback_overflow_and_released():
    r = fill_region(90, quota=60, labelled=[0, 10], kept=[5, 6], random_fraction=0.5, seed=1, predicted=None)
    assert r[5] == r[6] == "released" and r[0] == r[10] == "labelled"
    assert sum(v == "random" for v in r.values()) == 56
    # labelled subset larger than what is left: half random, half highest measured loss
    lab = list(range(0, 90, 2))
    loss = {i: float(i) for i in lab}
    r = fill_region(90, quota=20, labelled=lab, kept=[], random_fraction=0.5, seed=1, labelled_loss=loss)
    assert len(r) == 20 and set(r.values()) == {"labelled"} and 88 in r
    assert keep_all(3, [1]) == {0: "all", 1: "released", 2: "all"}


# ------------------------------------------------------------------------------------------ regressor

def test_gate_passes_on_signal_and_fails_on_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = np.exp(x[:, 0] + 0.3 * rng.normal(size=120))
    regions = [f"r{i % 6}" for i in range(120)]
    cfg = RegressorConfig(bootstrap=500)
    good = fit_with_gate(x, y, regions, cfg, seed=1)
    assert good.report.passed and good.report.rho > 0.7 and good.report.ci_low > 0.5
    assert spearman(good.predict(x), y) > 0.9
    noise = fit_with_gate(x, np.exp(rng.normal(size=120)), regions, cfg, seed=1)
    assert not noise.report.passed and noise.report.ci_low <= 0 and "does not exclude 0" in noise.report.reason
    with pytest.raises(RuntimeError):
        noise.predict(x)
    few = fit_with_gate(x[:39], y[:39], regions[:39], cfg, seed=1)
    assert not few.report.passed and few.report.reason.startswith("only 39 labelled tiles")


def test_bootstrap_interval_brackets_rho():
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    lo, hi = bootstrap_ci(a, b, 1000, seed=0)
    assert lo < spearman(a, b) < hi and hi - lo < 0.3


# ------------------------------------------------------------------------------------------ features and model

def test_image_stats_are_label_free_fixed_length_and_respond_to_texture():
    rng = np.random.default_rng(0)
    flat = np.full((2, 256, 256, 3), 120, np.uint8)
    busy = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    f, b = image_stats(flat), image_stats(busy)
    assert f.shape == b.shape == (2, len(IMAGE_FEATURES)) and np.all(np.isfinite(b))
    col = {n: i for i, n in enumerate(IMAGE_FEATURES)}
    for name in ("grad_mean", "edge_frac", "colour_entropy", "log_lap_var"):
        assert b[0, col[name]] > f[0, col[name]]
    assert f[0, col["r_mean"]] == 120 and np.array_equal(image_stats(busy), b)


def test_model_stats_and_loss():
    torch.manual_seed(0)
    m = SegNet().eval()
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(1, 9, (3, 64, 64), dtype=np.uint8)
    labels[2] = 0  # no labelled pixel -> NaN loss
    feats, loss = model_stats(m, imgs, labels, torch.device("cpu"))
    assert feats.shape == (3, len(MODEL_FEATURES)) and np.all(np.isfinite(feats))
    assert np.allclose(feats[:, 6:14].sum(1), 1.0)  # predicted class fractions
    assert np.isfinite(loss[:2]).all() and np.isnan(loss[2]) and 0 < loss[0] < 10


def test_training_crops_are_per_tile_windows_with_aligned_labels():
    """The training crop takes a seeded window per tile, the same window of the image and of its label."""
    rows, cols = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    tile = np.stack([rows, cols, rows ^ cols], -1).astype(np.uint8)
    imgs = torch.from_numpy(np.stack([tile] * 6))
    labels = torch.from_numpy(np.stack([(rows + 2 * cols) % 251] * 6).astype(np.uint8))
    x, y = random_crops(imgs, labels, 32, torch.Generator().manual_seed(3))
    assert x.shape == (6, 32, 32, 3) and y.shape == (6, 32, 32)
    oy, ox = x[:, 0, 0, 0].long(), x[:, 0, 0, 1].long()
    assert len(set(zip(oy.tolist(), ox.tolist()))) > 1 and int(oy.max()) <= 32 and int(ox.max()) <= 32
    for i in range(6):
        assert torch.equal(x[i], imgs[i, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32])
        assert torch.equal(y[i], labels[i, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32])
    x2, _ = random_crops(imgs, labels, 32, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2)
    whole = random_crops(imgs, labels, 64, torch.Generator().manual_seed(3))
    assert whole[0] is imgs and whole[1] is labels


def test_weights_hash_and_folds_within_regions():
    torch.manual_seed(0)
    a = SegNet()
    torch.manual_seed(0)
    b = SegNet()
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.head[0].bias[0] += 1e-6
    assert weights_sha256(a) != weights_sha256(b)
    groups = ["a"] * 8 + ["b"] * 5
    folds = assign_folds(groups, 4, seed=1)
    assert sorted(np.bincount(folds, minlength=4)) == [3, 3, 3, 4]
    assert len(set(folds[:8])) == 4  # a region's labelled tiles are spread over the folds
    assert derive_seed(7, "x") == derive_seed(7, "x") != derive_seed(8, "x")


# ------------------------------------------------------------------------------------------ reading and pool

def test_pool_is_deterministic_cached_and_stored_as_cogs(tmp_path):
    p = poolgen.PoolParams(n_regions=2, min_tiles=3, max_tiles=4, px=1024, seed=5)
    a = poolgen.generate_pool(p, tmp_path / "a", workers=1, verbose=False)
    b = poolgen.generate_pool(p, tmp_path / "b", workers=2, verbose=False)
    ta = [t for v in a["regions"].values() for t in v]
    tb = [t for v in b["regions"].values() for t in v]
    assert len(a["regions"]) == 2 and 6 <= len(ta) <= 8
    for x, y in zip(ta, tb):
        assert open(x["image"], "rb").read() == open(y["image"], "rb").read()
        assert open(x["label"], "rb").read() == open(y["label"], "rb").read()
    assert poolgen.generate_pool(p, tmp_path / "a", verbose=False) == a  # cached
    assert poolgen.PoolParams(seed=6).key() != poolgen.PoolParams().key()
    with rasterio.open(ta[0]["image"]) as src:
        assert src.overviews(1) == [2, 4, 8] and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.block_shapes[0] == (512, 512) and src.count == 3
    with rasterio.open(ta[0]["label"]) as src:
        lab = src.read(1)
        assert src.overviews(1) == [2, 4, 8] and lab.max() <= 8 and len(np.unique(lab)) >= 3
    img = read_image(ta[0]["image"], 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    small = read_label(ta[0]["label"], 256)
    assert small.shape == (256, 256) and set(np.unique(small)) <= set(np.unique(lab))


def test_unreadable_tile_names_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(TileReadError, match="broken.tif") as exc:
        read_image(bad, 256)
    assert isinstance(exc.value, PipelineInputError) and exc.value.file == str(bad)


# ------------------------------------------------------------------------------------------ annotation loop

def test_annotation_stages_and_console_lines():
    sel = [{"id": "a", "reason": "labelled"}, {"id": "b", "reason": "random"}]
    assert annotation_stage({"stage": "awaiting_labelled_subset", "selected": sel}, {"a", "b"}) \
        == "awaiting_labelled_subset"
    assert annotation_stage({"stage": "selected", "selected": sel}, {"a"}) == "awaiting_annotation"
    assert annotation_stage({"stage": "all", "selected": sel}, {"a", "b"}) == "complete"
    record = {"fallback": "only 3 labelled tiles with labelled pixels in the pooled set (< 40): seeded random",
              "counts": {"annotation_stages": {"awaiting_annotation": 2, "complete": 1}}, "rho": None}
    lines = summary_lines(record)
    assert lines[0].startswith("Selection: FALLBACK to seeded random sampling: only 3 labelled")
    assert lines[-1] == ("Annotation loop: 0 awaiting labelled subset, 2 awaiting annotation, 1 complete (regions)")
    ok = {"fallback": None, "n": 72, "rho": {"value": 0.61, "ci95": [0.45, 0.74]}, "device": "cpu",
          "hard_vs_random_true_loss": 1.5, "counts": {}}
    assert summary_lines(ok) == ["Selection model: n=72 labelled tiles, cross-validated rho=0.610 "
                                 "[95 % CI 0.450, 0.740], device cpu, hard/random true loss 1.50"]


def test_region_results_serialise_as_asdict_would_after_cleaning():
    """``SelectionResult.to_dict`` turns the region results into dicts in one pass (no ``asdict`` deep copies):
    the same JSON as ``asdict`` then cleaning, floats rounded, NaN/inf None, tuples lists."""
    from dataclasses import asdict

    from pipeline.dataset.selection.result import RegionResult, SelectionResult, TileDecision, _clean

    region = RegionResult(region="austin", n_candidates=3, quota=2, stage="selected", labelled=["a"], kept=["b"],
                          selected=[TileDecision("a", "labelled", 0.123456789, float("nan")),
                                    TileDecision("c", "hard", float("inf"))],
                          predicted_loss={"a": 1 / 3, "c": 2.0}, hard_true_loss=None, random_true_loss=0.5)
    result = SelectionResult(config={"k": (1, 2.0000004)}, regions={"austin": region}, model=None, gate=None,
                             fallback=None, evaluation={})
    assert result.to_dict(timings=False)["regions"]["austin"] == _clean(asdict(region))
    assert result.to_dict(timings=False)["regions"]["austin"]["selected"][0] == {
        "id": "a", "reason": "labelled", "predicted_loss": 0.123457, "measured_loss": None}
