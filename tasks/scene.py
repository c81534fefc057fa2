"""Per-scene tasks: prepare (grid plan or reject) -> tile -> label -> count segments.

Each writes one JSON record last, atomically, under ``data/work/<fingerprint>/scenes/<source>/<scene>/``;
the record's existence is the task's completion.  Heavy pixel work happens in :mod:`pipeline.raster.plan` and
:mod:`pipeline.raster.tiling`, one output tile at a time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import luigi
import numpy as np
import rasterio

from pipeline import atomic
from pipeline.errors import PipelineInputError
from tasks.base import PipelineTask
from tasks.config import done_dir, load_scene, processing_params, scene_dir
from tasks.sources import CatalogSource


def _read_json(target: luigi.LocalTarget) -> Any:
    return json.loads(Path(target.path).read_text())


class SceneTask(PipelineTask):
    source_name = luigi.Parameter()
    scene_id = luigi.Parameter()

    @property
    def folder(self) -> Path:
        return scene_dir(self.source_name, self.scene_id)

    @property
    def scene(self):
        return load_scene(self.source_name, self.scene_id)


class PrepareScene(SceneTask):
    """Inspect the scene and plan its local-UTM grid (GSD rule, resampling, radiometry) or reject it."""

    def requires(self):
        return CatalogSource(source_name=self.source_name)

    def output(self):
        return luigi.LocalTarget(str(self.folder / "plan.json"))

    def run(self):
        from pipeline.raster.plan import plan_scene

        params = processing_params()
        scene = self.scene
        self.set_status_message(f"planning {scene.key}")
        try:
            plan = plan_scene(scene, targets=params.target_gsds, tile_size=params.tile_size,
                              max_grid_pixels=params.max_grid_pixels)
        except PipelineInputError as exc:
            plan = {"status": "rejected", "file": exc.file, "reason": exc.reason, "stage": exc.stage}
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, plan)


class TileScene(SceneTask):
    """Warp the scene straight into 1024x1024 image tiles on its UTM grid (edge/nodata policy applied)."""

    def requires(self):
        return PrepareScene(source_name=self.source_name, scene_id=self.scene_id)

    def output(self):
        return luigi.LocalTarget(str(self.folder / "tiles.json"))

    def run(self):
        from pipeline.raster.tiling import write_scene_tiles

        plan = _read_json(self.input())
        tiles: list[dict] = []
        dropped: list[dict] = []
        reject = None
        if plan["status"] == "ok":
            params = processing_params()
            self.set_status_message(f"tiling {self.scene.key} onto {plan['grid']['crs']} at {plan['grid']['gsd']} m")
            try:
                tiles, dropped = write_scene_tiles(
                    self.scene, plan, self.folder,
                    tile_size=params.tile_size, max_nodata_fraction=params.max_nodata_fraction,
                )
            except PipelineInputError as exc:
                reject = {"file": exc.file, "reason": exc.reason, "stage": "tile"}
            if not tiles and not dropped and reject is None:
                g = plan["grid"]
                reject = {"file": plan["file"], "stage": "tile",
                          "reason": f"grid {g['width']}x{g['height']} px at {g['gsd']} m is smaller than one "
                                    f"{params.tile_size}x{params.tile_size} tile"}
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"tiles": tiles, "dropped": dropped, "reject": reject})


class LabelScene(SceneTask):
    """Each tile's 8-class label: a completed annotation (``done`` folder) wins, else the source's own
    labels warped onto the tile grid (mode/nearest, never interpolated), else the tile is pending.

    The output name carries a digest of this scene's completed annotations, so adding or changing one
    relabels the scene (and everything downstream) while untouched scenes are reused."""

    def requires(self):
        return TileScene(source_name=self.source_name, scene_id=self.scene_id)

    def output(self):
        from pipeline.labels.labelling import annotation_digest, tile_key

        digest = annotation_digest(done_dir(), prefix=tile_key(self.source_name, self.scene_id, ""))
        name = f"labels-{digest[:12]}.json" if digest else "labels.json"
        return luigi.LocalTarget(str(self.folder / name))

    def run(self):
        from pipeline.labels.labelling import apply_annotations
        from pipeline.labels.landcover import write_label_tiles

        tiled = _read_json(self.input())
        plan = _read_json(self.requires().input())
        tiles = tiled["tiles"]
        labels: list[dict] = []
        rejects: list[dict] = []
        if tiles:
            self.set_status_message(f"labelling {len(tiles)} tiles of {self.scene.key}")
            try:
                labels = write_label_tiles(self.scene, plan, tiles, self.folder)
            except PipelineInputError as exc:
                rejects.append({"file": exc.file, "reason": exc.reason, "stage": "annotation"})
                labels = [
                    {"tile_id": t["tile_id"], "status": "pending", "label": None, "class_pixels": {},
                     "unlabelled_pixels": 0}
                    for t in tiles
                ]
            labels, more = apply_annotations(self.scene, tiles, labels, self.folder, done_dir())
            rejects.extend(more)
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"labels": labels, "rejects": rejects})


class CountSegments(SceneTask):
    """Count segments (connected same-class pixels, OpenCV findContours) per class in each label tile."""

    def requires(self):
        return LabelScene(source_name=self.source_name, scene_id=self.scene_id)

    def output(self):
        name = Path(self.requires().output().path).name.replace("labels", "segments", 1)
        return luigi.LocalTarget(str(self.folder / name))

    def run(self):
        from pipeline.labels.segments import count_segments

        labels = _read_json(self.input())["labels"]
        out = []
        done = [r for r in labels if r["status"] == "labelled"]
        self.set_status_message(f"counting segments in {len(done)} label tiles of {self.source_name}/{self.scene_id}")
        for i, rec in enumerate(done):
            with rasterio.open(self.folder / rec["label"]) as ds:
                arr = ds.read(1)
            counts = count_segments(np.asarray(arr))
            out.append({"tile_id": rec["tile_id"], **counts})
            self.set_progress_percentage(int(100 * (i + 1) / len(done)))
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"segments": out})
