"""End-to-end properties of the hard-image selection at the DEFAULT settings on a small synthetic pool
(``bench.selection_pool``: 6 regions x 120 candidates of 256 px with true labels; k=10 -> 72 labelled
tiles, quota 60, half random), and ``SelectTiles`` run through Luigi on the same pool: its record is the
one the library computes."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import luigi
import numpy as np
import pytest

from bench import selection_pool as poolgen
from pipeline.dataset.selection.config import MIN_POOLED, ModelConfig, SelectionConfig
from pipeline.dataset.selection.core import select
from pipeline.dataset.selection.result import Candidate
from tests.helpers_build import DEMO_SOURCES


def pool_candidates(index: dict, regions=None, with_labels: bool = True) -> dict[str, list[Candidate]]:
    """``{region: [Candidate, ...]}`` in the pool's stable order (all carry their true label by default)."""
    names = sorted(index["regions"]) if regions is None else regions
    return {r: [Candidate(t["id"], t["image"], t["label"] if with_labels else None) for t in index["regions"][r]]
            for r in names}


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> dict:
    return poolgen.generate_pool(poolgen.SMALL, tmp_path_factory.mktemp("selection-pool"), workers=2,
                                 verbose=False)


@pytest.fixture(scope="module")
def small_pool(small_index) -> dict[str, list[Candidate]]:
    return pool_candidates(small_index)


@pytest.fixture(scope="module")
def default_result(small_pool):
    """``select`` at the release defaults (k=10, 50-70 -> 60, half random, seed 42) on the small pool."""
    return select(small_pool, config=SelectionConfig())

def test_hard_picks_are_harder_than_random_picks(default_result):
    """The property users need: at k=10, half random, the hard picks' true loss (deployed model on the
    true label) exceeds the random picks' -- pooled over regions and in most regions."""
    res = default_result
    assert res.fallback is None and res.gate.passed
    ev = res.evaluation
    assert ev["regions_with_true_labels"] == 6
    assert ev["ratio"] >= 1.15, ev
    assert ev["regions_hard_gt_random"] >= 5, ev
    assert ev["candidate_rho"] >= 0.5, ev  # the predictions rank unseen candidates, not only the CV folds


def test_gate_records_n_rho_and_interval(default_result):
    g = default_result.gate
    assert g.n == 72 and g.cv_folds == 5 and g.bootstrap == 2000
    assert 0 < g.ci_low <= g.rho <= g.ci_high <= 1
    assert g.rho >= 0.5


def test_reasons_and_quota_at_defaults(default_result, small_pool):
    for name, reg in default_result.regions.items():
        ids = [c.id for c in small_pool[name]]
        assert reg.stage == "selected" and reg.quota == 60 and 50 <= len(reg.selected) <= 70
        reasons = Counter(t.reason for t in reg.selected)
        assert reasons == {"labelled": 12, "random": 24, "hard": 24}
        assert [t.id for t in reg.selected if t.reason == "labelled"] == ids[::10] == reg.labelled
        assert [t.id for t in reg.selected] == sorted((t.id for t in reg.selected), key=ids.index)
        # the hard picks have the highest predicted loss among the candidates not picked at random
        hard = [t.predicted_loss for t in reg.selected if t.reason == "hard"]
        assert all(v is not None for v in hard)
        assert all(t.predicted_loss is not None for t in reg.selected if t.reason == "random")
        assert all(t.measured_loss is not None for t in reg.selected)


def test_hard_picks_are_the_highest_predicted_losses_after_the_random_half(default_result):
    for reg in default_result.regions.values():
        pred = reg.predicted_loss
        reasons = {t.id: t.reason for t in reg.selected}
        assert len(pred) == 108 and not set(pred) & set(reg.labelled)  # every unlabelled candidate
        rest = [i for i in pred if reasons.get(i) not in ("random", "labelled")]
        top = sorted(rest, key=lambda i: -pred[i])[:24]
        assert {i for i, r in reasons.items() if r == "hard"} == set(top)
        assert all(t.predicted_loss == pred[t.id] for t in reg.selected if t.reason != "labelled")


def test_manifest_record_is_json_and_complete(default_result):
    d = default_result.to_dict()
    text = json.dumps(d, allow_nan=False)
    m = ModelConfig()
    assert len(d["model"]["weights_sha256"]) == 64 and len(d["model"]["fold_weights_sha256"]) == m.folds
    assert d["model"]["device"] in ("cpu", "cuda") and d["model"]["n_labelled"] == 72
    fold_train = 72 - 72 // m.folds  # folds are dealt evenly (72 = 6 regions x 12)
    assert d["model"]["steps"] == [int(np.ceil(m.epochs * n / m.batch_size)) for n in [fold_train] * m.folds + [72]]
    assert d["config"]["k"] == 10 and d["config"]["quota"] == 60 and d["config"]["seed"] == 42
    assert "timings" in d and "timings" not in default_result.to_dict(timings=False)
    assert "hard_true_loss" in text


def test_same_inputs_and_seed_give_the_same_result(small_index):
    """Determinism (any settings; a short training keeps the test lean): two runs are identical, and a
    different seed trains different weights."""
    pool = {r: c[:80] for r, c in pool_candidates(small_index, sorted(small_index["regions"])[:5]).items()}
    cfg = SelectionConfig(model=ModelConfig(epochs=1.0))  # 5 regions x 8 labelled = 40 = MIN_POOLED
    a = select(pool, config=cfg).to_dict(timings=False)
    assert a["model"] is not None
    b = select(pool, config=cfg).to_dict(timings=False)
    assert a == b
    c = select(pool, config=cfg.replace(seed=7)).to_dict(timings=False)
    assert c["model"]["weights_sha256"] != a["model"]["weights_sha256"]


def test_too_few_labelled_tiles_fall_back_to_seeded_random(small_index):
    pool = pool_candidates(small_index, sorted(small_index["regions"])[:3])  # 3 x 12 = 36 < 40 labelled
    res = select(pool)
    # the model is trained and its gate measured for the record (n >= MIN_DIAGNOSTIC), but never used
    assert res.model is not None and res.gate is not None and res.gate.n == 36 and not res.gate.passed
    assert res.gate.rho is not None and res.gate.ci_low is not None and res.gate.ci_high is not None
    assert res.fallback.startswith("only 36 labelled tiles") and str(MIN_POOLED) in res.fallback
    assert res.gate.reason == res.fallback and "not used" in res.fallback
    for reg in res.regions.values():
        assert Counter(t.reason for t in reg.selected) == {"labelled": 12, "random": 48}
    again = select(pool)
    assert again.to_dict(timings=False) == res.to_dict(timings=False)
    other = select(pool, config=SelectionConfig(seed=1))
    assert other.selected_ids != res.selected_ids  # the seed drives the random draw


def test_gate_failure_falls_back_and_says_why(small_index, tmp_path):
    """A labelled subset whose losses cannot be predicted: every labelled tile shows the same grey scene
    (plus a little noise) and is labelled, at random, entirely class 1 or entirely class 2.  Whatever the
    model learns, a tile's loss depends on its coin flip, not on its pixels, so the interval of rho must
    include 0 and selection must fall back instead of pretending."""
    import rasterio

    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": 256, "height": 256, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": rasterio.Affine(1.2, 0, 500000, 0, -1.2, 5000000)}
    pool = {}
    for name in sorted(small_index["regions"])[:4]:
        tiles = []
        for i, t in enumerate(small_index["regions"][name]):
            if i % 10:
                tiles.append(Candidate(t["id"], t["image"], None))
                continue
            img, lab = str(tmp_path / f"{t['id']}.tif"), str(tmp_path / f"{t['id']}_label.tif")
            with rasterio.open(img, "w", count=3, **profile) as dst:
                dst.write(np.clip(120 + rng.normal(0, 3, (3, 256, 256)), 0, 255).astype(np.uint8))
            with rasterio.open(lab, "w", count=1, **profile) as dst:
                dst.write(np.full((1, 256, 256), rng.integers(1, 3), np.uint8))
            tiles.append(Candidate(t["id"], img, lab))
        pool[name] = tiles
    res = select(pool, config=SelectionConfig(model=ModelConfig(epochs=1.0)))
    assert res.gate is not None and res.gate.n == 48 and not res.gate.passed and res.gate.ci_low <= 0
    assert res.fallback == res.gate.reason and "does not exclude 0" in res.fallback
    assert {t.reason for r in res.regions.values() for t in r.selected} == {"labelled", "random"}
    assert res.model is not None  # the model that was trained is still recorded, with its gate


def test_released_tiles_are_kept_and_count_towards_the_quota(small_index):
    pool = pool_candidates(small_index, sorted(small_index["regions"])[:3])  # fallback: cheap
    name = sorted(pool)[0]
    ids = [c.id for c in pool[name]]
    released = ids[1:30:2] + ["not-a-candidate"]
    res = select(pool, keep=released)
    reg = res.regions[name]
    reasons = {t.id: t.reason for t in reg.selected}
    assert len(reasons) == 60 and reg.kept == ids[1:30:2]
    assert all(reasons[i] == "released" for i in ids[1:30:2])
    assert Counter(reasons.values()) == {"released": 15, "labelled": 12, "random": 33}
    # more released than the quota: all of them stay, nothing else is added
    many = select(pool, keep=ids[:65])
    assert {t.reason for t in many.regions[name].selected} == {"released"}
    assert len(many.regions[name].selected) == 65


def test_regions_an_earlier_release_filled_predict_nothing(small_pool, default_result):
    """A rebuild that adds a region (the others filled by the previous release: their picks are released
    tiles): only the open region's candidates are predicted, and its picks are exactly those of the full
    selection (the pooled model and regressor are the same)."""
    names = sorted(small_pool)
    open_region = names[-1]
    released = [t.id for n in names[:-1] for t in default_result.regions[n].selected]
    res = select(small_pool, config=SelectionConfig(), keep=released)
    assert res.fallback is None and res.gate.rho == default_result.gate.rho
    unlabelled = len(small_pool[open_region]) - len(default_result.regions[open_region].labelled)
    assert res.timings["n_candidates"] == unlabelled  # the open region's only
    for n in names[:-1]:
        assert {t.reason for t in res.regions[n].selected} == {"released"}
        assert not res.regions[n].predicted_loss
    picks = lambda r: [(t.id, t.reason) for t in r.regions[open_region].selected]  # noqa: E731
    assert picks(res) == picks(default_result) and "hard" in {why for _, why in picks(res)}


def test_no_model_is_trained_when_no_region_has_picks_to_make(small_pool, default_result, monkeypatch):
    """Every sampled region filled by the previous release (a rebuild that adds a small region): the picks are the
    released tiles, which no model would change, so none is trained (no labelled tile is even read for it); the
    console says so."""
    from pipeline.dataset.selection import training
    from pipeline.dataset.selection.record import summary_lines

    released = [t.id for r in default_result.regions.values() for t in r.selected]
    monkeypatch.setattr(training, "cross_fit", lambda *a, **k: pytest.fail("a model was trained"))
    monkeypatch.setattr(training, "_read_pooled", lambda *a, **k: pytest.fail("the labelled set was read"))
    res = select(small_pool, config=SelectionConfig(), keep=released)
    assert res.model is None and res.gate is None and res.fallback is None
    assert sorted(res.selected_ids) == sorted(released)
    line = "Selection: no sampled region has picks left to make"
    record = {"regions": {n: {"stage": r.stage} for n, r in res.regions.items()}, "fallback": None, "rho": None}
    assert any(s.startswith(line) for s in summary_lines(record))
    assert not any(s.startswith(line) for s in summary_lines({**record, "regions": {"a": {"stage": "all"}}}))


def test_regions_at_or_below_n_max_keep_everything_and_pending_subsets_wait(small_index):
    names = sorted(small_index["regions"])[:5]
    pool = pool_candidates(small_index, names)
    pool[names[0]] = pool[names[0]][:70]
    pending = pool_candidates(small_index, [names[1]], with_labels=False)[names[1]]
    pool[names[1]] = pending
    res = select(pool, config=SelectionConfig(model=ModelConfig(epochs=1.0)))
    small = res.regions[names[0]]
    assert small.stage == "all" and len(small.selected) == 70 and {t.reason for t in small.selected} == {"all"}
    wait = res.regions[names[1]]
    assert wait.stage == "awaiting_labelled_subset"
    assert [t.id for t in wait.selected] == [c.id for c in pending[::10]] and "12 of its 12" in wait.note


@pytest.mark.parametrize("bad", [dict(k=0), dict(n_min=80), dict(random_fraction=1.5), dict(target=90)])
def test_invalid_settings_are_rejected(bad, small_pool):
    with pytest.raises(ValueError):
        select(small_pool, config=SelectionConfig(**bad))


def _pool_tiles(index: dict) -> list[dict]:
    """The small pool as ``AssembleTiles`` records it (the fields selection reads)."""
    return [{"key": t["id"], "region": r, "status": "labelled", "continent": "Europe", "_image_src": t["image"],
             "_label_src": t["label"]} for r, tiles in sorted(index["regions"].items()) for t in tiles]


def test_select_tiles_task_through_luigi_records_the_library_selection(small_index, default_result, tmp_path):
    """``SelectTiles`` at the default settings, run by Luigi on the small pool (``AssembleTiles``' output
    holds it): the recorded selection, model, gate and evaluation are what the library computes for the
    same pool and settings, and every selected tile has its reason."""
    from tasks import BuildRelease

    (tmp_path / "sources.yaml").write_text(DEMO_SOURCES)
    cfg = luigi.configuration.get_config()
    keys = ("data_dir", "sources_file", "previous_release")
    saved = {k: cfg.get("PipelineConfig", k) if cfg.has_option("PipelineConfig", k) else None for k in keys}
    cfg.set("PipelineConfig", "data_dir", str(tmp_path / "data"))
    cfg.set("PipelineConfig", "sources_file", str(tmp_path / "sources.yaml"))
    cfg.set("PipelineConfig", "previous_release", "none")
    luigi.task_register.Register.clear_instance_cache()
    try:
        task = BuildRelease().requires()["selection"]
        assert task.task_family == "SelectTiles"
        pool_path = Path(task.requires().output().path)
        pool_path.parent.mkdir(parents=True, exist_ok=True)
        pool_path.write_text(json.dumps({"tiles": _pool_tiles(small_index), "rejects": []}))
        assert task._params() == {"seed": 42, "n_min": 50, "n_max": 70, "k": 10, "epochs": 12,
                                  "random_fraction": 0.5}  # the defaults
        assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
        record = json.loads(Path(task.output().path).read_text())
    finally:
        luigi.task_register.Register.clear_instance_cache()
        for k, v in saved.items():
            if v is not None:
                cfg.set("PipelineConfig", k, v)
            elif cfg.has_option("PipelineConfig", k):
                cfg.remove_option("PipelineConfig", k)
    expected = default_result.to_dict(timings=False)
    for key in ("regions", "model", "gate", "evaluation"):
        got = record[key] if key != "regions" else {
            r: {k: v for k, v in reg.items() if k != "annotation_stage"} for r, reg in record[key].items()}
        assert got == expected[key], key
    assert record["selected"] == sorted(default_result.selected_ids)
    assert record["fallback"] is None and record["device"] in ("cpu", "cuda") and record["n"] == 72
    assert record["rho"]["value"] == expected["gate"]["rho"] and record["rho"]["ci95"][0] > 0
    assert record["hard_vs_random_true_loss"] == expected["evaluation"]["ratio"]
    assert record["counts"]["annotation_stages"] == {"complete": 6}
    reasons = Counter(s["reason"] for r in record["regions"].values() for s in r["selected"])
    assert reasons == {"labelled": 72, "random": 144, "hard": 144}
    assert json.loads(json.dumps(record, allow_nan=False)) == record
