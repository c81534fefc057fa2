"""Dataset-level tasks: gather every scene's tiles into one pool, split it, compute statistics."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import luigi

from pipeline import atomic
from pipeline.pool import assemble_pool
from tasks.config import (
    active_sources, catalog_path, cfg, load_scene, processing_params, scene_dir, source_config, work_dir,
)
from tasks.scene import CountSegments
from tasks.sources import CatalogSource


def _load(path: Path):
    return json.loads(Path(path).read_text())


class AssembleTiles(luigi.Task):
    """Run the per-scene chain for every scene of every enabled source (dynamic dependencies), then
    gather all tiles with their region, country, continent and release name into ``pool.json``."""

    def requires(self):
        return [CatalogSource(source_name=s.name) for s in active_sources()]

    def output(self):
        return luigi.LocalTarget(str(work_dir() / "pool.json"))

    def run(self):
        catalogs = [_load(t.path) for t in self.input()]
        scene_tasks = [
            CountSegments(source_name=cat["source"], scene_id=s["scene_id"])
            for cat in catalogs for s in cat["scenes"]
        ]
        self.set_status_message(f"processing {len(scene_tasks)} scenes")
        yield scene_tasks  # per-scene work is scheduled here; run() resumes once all are complete

        self.set_status_message("assembling the tile pool")
        scenes = []
        for task in scene_tasks:
            folder = scene_dir(task.source_name, task.scene_id)
            scene = load_scene(task.source_name, task.scene_id)
            src = source_config(task.source_name)
            scenes.append({
                "scene": scene,
                "region_override": src.options.get("region_override"),
                "folder": folder,
                "plan": _load(folder / "plan.json"),
                "tiles": _load(folder / "tiles.json"),
                "labels": _load(folder / "labels.json"),
                "segments": _load(folder / "segments.json"),
            })
        catalog_rejects = [r for cat in catalogs for r in cat.get("rejects", [])]
        roots = {cat["source"]: cat["root"] for cat in catalogs}
        pool = assemble_pool(scenes, catalog_rejects=catalog_rejects, source_roots=roots)
        atomic.write_json(self.output().path, pool)


class SplitDataset(luigi.Task):
    """Per region 6:1:3 train/val/test: the best of ``split_trials`` seeded random trials."""

    ratios = (6, 1, 3)

    def requires(self):
        return AssembleTiles()

    def output(self):
        c = cfg()
        return luigi.LocalTarget(str(work_dir() / f"split-seed{c.seed}-trials{c.split_trials}.json"))

    def run(self):
        from pipeline.splits import split_dataset

        c = cfg()
        pool = _load(self.input().path)
        assignment, infos = split_dataset(
            pool["images"], ratios=self.ratios, trials=int(c.split_trials), seed=int(c.seed)
        )
        atomic.write_json(self.output().path, {
            "seed": int(c.seed), "trials": int(c.split_trials), "ratios": list(self.ratios),
            "assignment": assignment, "regions": infos,
        })


class ComputeStats(luigi.Task):
    """The paper's tables and figures for the split pool, as JSON, CSV, PNG and a README."""

    def requires(self):
        return {"pool": AssembleTiles(), "split": SplitDataset()}

    def output(self):
        c = cfg()
        return luigi.LocalTarget(str(work_dir() / f"stats-seed{c.seed}-trials{c.split_trials}"))

    def run(self):
        from pipeline.stats import write_stats

        pool = _load(self.input()["pool"].path)
        split = _load(self.input()["split"].path)
        images = [dict(im, split=split["assignment"][im["id"]]) for im in pool["images"]]
        self.set_status_message(f"statistics over {len(images)} images")
        with atomic.atomic_path(self.output().path) as tmp:
            tmp.mkdir()
            write_stats(images, tmp)
