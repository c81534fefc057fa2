"""What ``SelectTiles`` writes and the manifest's ``selection`` section records: :func:`select_tiles`.

The record holds the build's selection parameters, the selected tile keys, per region its selection
(every selected tile with its reason), the pooled model (device included), the quality gate (n, the
cross-validated Spearman rho and its bootstrap 95 % interval), the fallback reason (None when the model was
used), the evaluation where candidates have true labels (mean true loss of the hard vs the random picks), and
the **annotation-loop stage** of every region (:func:`annotation_stage`):

* ``awaiting_labelled_subset``: the region needs sampling and some of its every-k-th tiles have no
  land-cover label yet; they are selected (and exported to ``annotation/todo/``) to be annotated first;
* ``awaiting_annotation``: selected, but some selected tiles still have no label (they are exported);
* ``complete``: every selected tile is labelled.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.dataset.balance import released_per_continent, under_represented
from pipeline.dataset.selection.config import ModelConfig, SelectionConfig
from pipeline.dataset.selection.result import Candidate

#: Annotation-loop stages of a region, in the order the loop goes through them.
ANNOTATION_STAGES = ("awaiting_labelled_subset", "awaiting_annotation", "complete")


def selection_config(params: Mapping[str, Any]) -> SelectionConfig:
    """The library's settings from the build's selection parameters (``seed, n_min, n_max, k, epochs,
    random_fraction``); everything else at its default."""
    return SelectionConfig(k=int(params["k"]), n_min=int(params["n_min"]), n_max=int(params["n_max"]),
                           random_fraction=float(params["random_fraction"]), seed=int(params["seed"]),
                           model=ModelConfig(epochs=float(params["epochs"])))


def pool_candidates(tiles: Sequence[Mapping[str, Any]]) -> dict[str, list[Candidate]]:
    """``{region: [Candidate]}`` from pool tiles, each region sorted by tile key (the stable order); a tile's
    label is used only when its status is ``labelled``."""
    by_region: dict[str, list[Mapping[str, Any]]] = {}
    for t in tiles:
        by_region.setdefault(t["region"], []).append(t)
    return {r: [Candidate(t["key"], t["_image_src"], t.get("_label_src") if t.get("status") == "labelled" else None)
                for t in sorted(ts, key=lambda t: t["key"])]
            for r, ts in sorted(by_region.items())}


def annotation_stage(region: Mapping[str, Any], labelled: Collection[str]) -> str:
    """The annotation-loop stage (module docstring) of a region record of :func:`select_tiles`."""
    if region["stage"] == "awaiting_labelled_subset":
        return "awaiting_labelled_subset"
    if any(s["id"] not in labelled for s in region["selected"]):
        return "awaiting_annotation"
    return "complete"


def select_tiles(tiles: Sequence[Mapping[str, Any]], *, params: Mapping[str, Any], released: Collection[str] = (),
                 device: str | None = None, progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Select the tiles of every region of the pool (:func:`pipeline.dataset.selection.core.select`) and
    return the JSON-able record (module docstring).  ``tiles``: the pool's tiles (``key, region, status,
    continent, _image_src, _label_src``); ``released``: keys released before (always kept)."""
    from pipeline.dataset.selection.core import select

    result = select(pool_candidates(tiles), config=selection_config(params), keep=released, device=device,
                    progress=progress)
    d = result.to_dict(timings=False)
    labelled = {t["key"] for t in tiles if t.get("status") == "labelled"}
    regions = d["regions"]
    for r in regions.values():
        r["annotation_stage"] = annotation_stage(r, labelled)
    chosen = set(result.selected_ids)
    per_continent = released_per_continent(tiles, chosen)  # labelled: what the split releases
    gate = d["gate"]
    return {
        "params": dict(params), "selected": sorted(chosen), "regions": regions,
        "counts": {"regions": {r: len(v["selected"]) for r, v in regions.items()},
                   "continents": dict(sorted(per_continent.items())),
                   "annotation_stages": dict(sorted(Counter(v["annotation_stage"] for v in regions.values()).items()))},
        "warnings": under_represented(per_continent),
        "method": ("pooled segmentation model with K-fold cross-fitting, one feature space, "
                   "ExtraTrees loss regressor gated by the bootstrap 95 % interval of its cross-validated rho"),
        "n": None if gate is None else gate["n"],
        "rho": None if gate is None else {"value": gate["rho"], "ci95": [gate["ci_low"], gate["ci_high"]]},
        "hard_vs_random_true_loss": d["evaluation"].get("ratio"),
        "device": None if d["model"] is None else d["model"]["device"],
        "model": d["model"], "gate": gate, "fallback": d["fallback"], "evaluation": d["evaluation"],
        "config": d["config"],
    }


def summary_lines(record: Mapping[str, Any]) -> list[str]:
    """Console lines: the model and gate (or the fallback), and the regions per annotation-loop stage."""
    lines = []
    if record.get("fallback"):
        lines.append(f"Selection: FALLBACK to seeded random sampling: {record['fallback']}")
    if record.get("rho"):
        lo, hi = record["rho"]["ci95"]
        ratio = record.get("hard_vs_random_true_loss")
        label = "Selection model (recorded, not used)" if record.get("fallback") else "Selection model"
        lines.append(f"{label}: n={record['n']} labelled tiles, "
                     f"cross-validated rho={_num(record['rho']['value'])} [95 % CI {_num(lo)}, {_num(hi)}], "
                     f"device {record.get('device')}"
                     + (f", hard/random true loss {ratio:.2f}" if ratio is not None else ""))
    sampled = any(r.get("stage") == "selected" for r in record.get("regions", {}).values())
    if sampled and not record.get("fallback") and not record.get("rho"):
        lines.append("Selection: no sampled region has picks left to make (their released tiles and labelled "
                     "subsets fill them): no model trained")
    stages = record.get("counts", {}).get("annotation_stages", {})
    if stages:
        lines.append("Annotation loop: " + ", ".join(f"{stages.get(s, 0)} {s.replace('_', ' ')}"
                                                     for s in ANNOTATION_STAGES) + " (regions)")
    return lines


def write_stage_stats(record: Mapping[str, Any], out_dir: Path) -> list[str]:
    """``stats/selection.json``: per region its selection stage, annotation-loop stage and counts, plus the
    counts per stage, the gate (n, rho, interval), the fallback and the evaluation."""
    regions = {name: {"stage": r["stage"], "annotation_stage": r["annotation_stage"],
                      "candidates": r["n_candidates"], "selected": len(r["selected"]),
                      "reasons": dict(sorted(Counter(s["reason"] for s in r["selected"]).items())),
                      "note": r.get("note")}
               for name, r in sorted(record["regions"].items())}
    atomic.write_json(Path(out_dir) / "selection.json", {
        "annotation_stages": record["counts"].get("annotation_stages", {}), "regions": regions,
        "n": record.get("n"), "rho": record.get("rho"), "fallback": record.get("fallback"),
        "hard_vs_random_true_loss": record.get("hard_vs_random_true_loss"), "device": record.get("device")})
    return ["selection.json"]


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
