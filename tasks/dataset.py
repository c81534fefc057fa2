"""Dataset-level tasks: gather every scene's tiles into one pool, sample/select per region, export
pre-annotations, split, compute statistics.

Their outputs are named by ``inputs_digest()`` (enabled sources + completed annotations) and their own
parameters, so adding a source or an annotation rebuilds these cheap tasks while the per-scene work of
unchanged scenes is reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import luigi

from pipeline import atomic
from pipeline.dataset.balance import released_per_continent, under_represented
from pipeline.dataset.pool import assemble_pool, name_images
from pipeline.errors import SourceFailed
from pipeline.sources.config import scene_region
from pipeline.sources.outcome import failure_of
from tasks.base import PipelineTask
from tasks.config import (
    active_sources,
    cfg,
    inputs_digest,
    load_scene,
    previous_release_dir,
    scene_dir,
    source_config,
    todo_dir,
    work_dir,
)
from tasks.scene import CountSegments
from tasks.sources import CatalogSource

logger = logging.getLogger("luigi-interface")


def _load(path: Path):
    return json.loads(Path(path).read_text())


def _params_tag(**params) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def _previous_release() -> tuple[Path | None, str]:
    """The folder of the release this build continues (or None) and a digest of its manifest (``"none"``)."""
    from pipeline.dataset.history import manifest_digest

    folder = previous_release_dir()
    return folder, (manifest_digest(folder) if folder is not None else "none")


class AssembleTiles(PipelineTask):
    """Run the per-scene chain for every scene of every enabled source (dynamic dependencies), then
    gather all tiles with their stable key, region, country and continent into the pool."""

    def requires(self):
        return [CatalogSource(source_name=s.name) for s in active_sources()]

    def output(self):
        return luigi.LocalTarget(str(work_dir() / f"pool-{inputs_digest()}.json"))

    def run(self):
        catalogs = [_load(t.path) for t in self.input()]
        scene_tasks = [
            CountSegments(source_name=cat["source"], scene_id=s["scene_id"])
            for cat in catalogs for s in cat["scenes"]
        ]
        self.set_status_message(f"processing {len(scene_tasks)} scenes")
        yield scene_tasks  # per-scene work is scheduled here; run() resumes once all are complete

        failed = {c["source"]: f"{c['failed'].get('file')}: {c['failed']['reason']}" for c in catalogs if failure_of(c)}
        if failed and not cfg().allow_partial_release:
            raise SourceFailed(failed)  # after every other source's scenes were tiled and labelled
        self.set_status_message("assembling the tile pool")
        scenes = []
        for task in scene_tasks:
            label_task = task.requires()
            tile_task = label_task.requires()
            src = source_config(task.source_name)
            scenes.append({
                "scene": load_scene(task.source_name, task.scene_id),
                "region_override": scene_region(src.options, task.scene_id),
                "folder": scene_dir(task.source_name, task.scene_id),
                "plan": _load(tile_task.input().path),
                "tiles": _load(tile_task.output().path),
                "labels": _load(label_task.output().path),
                "segments": _load(task.output().path),
            })
        catalog_rejects = [r for cat in catalogs for r in cat.get("rejects", [])]
        roots = {cat["source"]: cat["root"] for cat in catalogs}
        pool = assemble_pool(scenes, catalog_rejects=catalog_rejects, source_roots=roots)
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, pool)


class SelectTiles(PipelineTask):
    """Per region: keep every tile when there are at most ``region_max``, else sample to the middle of
    [region_min, region_max] by seeded random sampling plus hard-image selection (a small U-Net trained
    on every k-th labelled tile, a regressor predicting each tile's loss, highest predicted loss first).
    Tiles released by the previous release are always kept (they count towards the quota), so a rebuild
    never drops a released image."""

    def requires(self):
        return AssembleTiles()

    def _params(self) -> dict:
        c = cfg()
        return {"seed": int(c.seed), "n_min": int(c.region_min), "n_max": int(c.region_max),
                "k": int(c.label_every), "epochs": int(c.selection_epochs),
                "random_fraction": float(c.random_fraction)}

    def output(self):
        _, prev = _previous_release()
        return luigi.LocalTarget(str(
            work_dir() / f"selection-{inputs_digest()}-{_params_tag(**self._params())}-prev{prev}.json"))

    def run(self):
        from pipeline.dataset.history import load_manifest, previous_maps
        from pipeline.dataset.selection.sampling import sample_region

        p = self._params()
        folder, digest = _previous_release()
        released = set(previous_maps(load_manifest(folder, digest))[0]) if folder is not None else set()
        pool = _load(self.input().path)
        by_region: dict[str, list[dict]] = {}
        for t in pool["tiles"]:
            by_region.setdefault(t["region"], []).append(t)
        regions = {}
        selected: list[str] = []
        for i, region in enumerate(sorted(by_region)):
            tiles = sorted(by_region[region], key=lambda t: t["key"])
            self.set_status_message(f"selecting images of {region} ({len(tiles)} candidates)")
            candidates = [{"id": t["key"], "image": t["_image_src"], "label": t.get("_label_src")} for t in tiles]
            result = sample_region(candidates, n_min=p["n_min"], n_max=p["n_max"], seed=p["seed"], region=region,
                                   k=p["k"], epochs=p["epochs"], random_fraction=p["random_fraction"],
                                   keep=[t["key"] for t in tiles if t["key"] in released])
            regions[region] = result
            selected.extend(s["id"] for s in result["selected"])
            self.set_progress_percentage(int(100 * (i + 1) / len(by_region)))
        chosen = set(selected)
        per_continent = released_per_continent(pool["tiles"], chosen)  # labelled: what the split releases
        warnings = under_represented(per_continent)
        for w in warnings:
            logger.warning(w)
        atomic.write_json(self.output().path, {
            "params": p, "selected": sorted(chosen), "regions": regions,
            "counts": {"regions": {r: len(v["selected"]) for r, v in regions.items()},
                       "continents": dict(sorted(per_continent.items()))},
            "warnings": warnings,
        })


class ExportAnnotationTodo(PipelineTask):
    """For each selected tile that has no 8-class label yet, export its building pre-annotation
    (GeoTIFF + GeoJSON + image) to ``<annotation>/todo/`` for annotators."""

    def requires(self):
        return {"pool": AssembleTiles(), "selection": SelectTiles()}

    def output(self):
        return luigi.LocalTarget(str(Path(self.input()["selection"].path).with_name(
            Path(self.input()["selection"].path).stem.replace("selection", "todo", 1) + ".json")))

    def run(self):
        from pipeline.labels.labelling import export_todo

        pool = _load(self.input()["pool"].path)
        chosen = set(_load(self.input()["selection"].path)["selected"])
        pending = [t for t in pool["tiles"] if t["status"] == "pending" and t["key"] in chosen]
        exported = []
        for i, t in enumerate(pending):
            scene = load_scene(t["source"], t["source_scene_id"])
            tile = {"tile_id": t["tile"], "crs": t["crs"], "transform": t["transform"],
                    "window": [0, 0, t["width"], t["height"]]}
            exported.append({"key": t["key"], **export_todo(scene, tile, Path(t["_image_src"]), todo_dir())})
            self.set_progress_percentage(int(100 * (i + 1) / max(1, len(pending))))
        self.set_status_message(f"exported {len(exported)} pre-annotations to {todo_dir()}")
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"todo_dir": str(todo_dir()), "exported": exported})


class SplitDataset(PipelineTask):
    """Name the released images (``<region>_<n>``) and split them per region 6:1:3 train/val/test: the
    best of ``split_trials`` seeded random trials (least class mismatch between train and test), never
    separating images whose footprints overlap (leakage groups).  Images of the previous release
    (``[PipelineConfig] previous_release``) keep their id and split; the output name carries a digest of
    that release's manifest, so a different previous release never reuses a stale split."""

    ratios = (6, 1, 3)

    def requires(self):
        return {"pool": AssembleTiles(), "selection": SelectTiles()}

    def output(self):
        c = cfg()
        sel = Path(self.input()["selection"].path).stem
        _, prev = _previous_release()
        return luigi.LocalTarget(str(work_dir() / f"split-{sel}-trials{c.split_trials}-prev{prev}.json"))

    def run(self):
        from pipeline.dataset.history import load_manifest, previous_maps
        from pipeline.dataset.splits.leakage import footprint, leakage_groups
        from pipeline.dataset.splits.trials import split_dataset

        c = cfg()
        folder, digest = _previous_release()
        previous = load_manifest(folder, digest) if folder is not None else None
        prev_splits, prev_ids = previous_maps(previous)
        pool = _load(self.input()["pool"].path)
        chosen = set(_load(self.input()["selection"].path)["selected"])
        self.set_status_message(f"splitting {len(chosen)} selected tiles ({c.split_trials} trials per region)")
        images = name_images([t for t in pool["tiles"] if t["status"] == "labelled" and t["key"] in chosen],
                             previous=prev_ids)
        groups = leakage_groups(images) if any(footprint(im) is not None for im in images) else {}
        assignment, infos = split_dataset(images, ratios=self.ratios, trials=int(c.split_trials), seed=int(c.seed),
                                          groups=groups, previous=prev_splits)
        for im in images:
            im["split"] = assignment[im["id"]]
            im["group"] = groups.get(im["id"], im["id"])
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {
            "seed": int(c.seed), "trials": int(c.split_trials), "ratios": list(self.ratios),
            "images": images, "regions": infos,
            "previous_release": None if previous is None else {
                "release": previous.get("release"), "folder": str(folder), "digest": digest},
        })


class ComputeStats(PipelineTask):
    """The paper's tables and figures for the released images, as JSON, CSV, PNG and a README."""

    def requires(self):
        return SplitDataset()

    def output(self):
        return luigi.LocalTarget(str(Path(self.input().path).with_suffix("").as_posix().replace("/split-", "/stats-")))

    def run(self):
        from pipeline.dataset.stats.write import write_stats

        images = _load(self.input().path)["images"]
        self.set_status_message(f"statistics over {len(images)} images")
        with atomic.atomic_path(self.output().path) as tmp:
            tmp.mkdir()
            write_stats(images, tmp)
        self.set_progress_percentage(100)
