"""Per-scene tasks: prepare (grid plan or reject) -> tile -> label -> count segments.

Their outputs lie in the scene's work folder ``data/work/scenes/<source>/<scene>/``, each named by the digest
of the task's parameters (which include the scene digest, every upstream parameter and code version; the
source's ``raw`` and ``catalog`` digests only find the scene's record: a file added to a folder read in place
makes a new catalog, and only the new scene's work is done, :func:`tasks.scenekey.scene_digest`):
``plan-<d>.json``, ``tiles-<d>/`` (``tiles.json`` + ``images/``), ``labels-<d>/`` (``labels.json`` + ``labels/``)
and ``segments-<d>.json``.  A multi-file output writes its files first (each atomically) and its JSON record
last, atomically; the record's existence is the task's completion.  Heavy pixel work happens in
:mod:`pipeline.raster.plan` and :mod:`pipeline.raster.tiling`, one output tile at a time.  What reads a
file the source supplies (planning, tiling, the source's labels) runs in a forked child
(:func:`pipeline.forked.contained`): a file that crashes the decoder is a reject of its stage, not a dead task.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import luigi
import numpy as np
import rasterio

from pipeline import atomic, forked
from pipeline.errors import BuildError, PipelineInputError
from tasks.base import PipelineTask
from tasks.config import done_dir, load_scene, scene_dir
from tasks.params import CountParams, LabelParams, PrepareParams, TileParams
from tasks.sources import CatalogSource


def _read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def relocate(records: list[dict], key: str, src: Path, dst: Path) -> list[dict]:
    """``records`` with the path ``key`` (relative to folder ``src``) made relative to folder ``dst``."""
    return [{**r, key: os.path.relpath(src / r[key], dst)} if r.get(key) else r for r in records]


class SceneTask(PipelineTask):
    """Base of the four per-scene tasks: the scene's work folder and its catalog record."""

    source_name: str
    catalog: str
    scene_id: str

    @property
    def folder(self) -> Path:
        return scene_dir(self.source_name, self.scene_id)

    @property
    def scene(self):
        return load_scene(self.source_name, self.catalog, self.scene_id)


class PrepareScene(PrepareParams, SceneTask):
    """Inspect the scene and plan its local-UTM grid (GSD rule, resampling, radiometry) or reject it."""

    def requires(self):
        return self.clone(CatalogSource)

    def output(self):
        return luigi.LocalTarget(str(self.folder / f"plan-{self.digest()}.json"))

    def run(self):
        from pipeline.raster.plan import plan_scene

        scene = self.scene
        self.set_status_message(f"planning {scene.key}")
        try:
            plan = forked.contained(plan_scene, scene, targets=tuple(float(g) for g in self.target_gsds),
                                    tile_size=self.tile_size, max_grid_pixels=self.max_grid_pixels, file=scene.image)
        except PipelineInputError as exc:
            plan = {"status": "rejected", "file": exc.file, "reason": exc.reason, "stage": exc.stage}
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, plan)


class TileScene(TileParams, SceneTask):
    """Warp the scene straight into 1024x1024 image tiles on its UTM grid (edge/nodata policy applied)."""

    def requires(self):
        return self.clone(PrepareScene)

    @property
    def out_dir(self) -> Path:
        return self.folder / f"tiles-{self.digest()}"

    def output(self):
        return luigi.LocalTarget(str(self.out_dir / "tiles.json"))

    def run(self):
        from pipeline.raster.tiling import write_scene_tiles

        plan = _read_json(self.input().path)
        tiles: list[dict] = []
        dropped: list[dict] = []
        reject = None
        if plan["status"] == "ok":
            self.set_status_message(f"tiling {self.scene.key} onto {plan['grid']['crs']} at {plan['grid']['gsd']} m")
            try:
                tiles, dropped = forked.contained(
                    write_scene_tiles, self.scene, plan, self.out_dir, file=self.scene.image,
                    tile_size=self.tile_size, max_nodata_fraction=self.max_nodata_fraction,
                )
            except PipelineInputError as exc:
                reject = {"file": exc.file, "reason": exc.reason, "stage": "tile"}
            if not tiles and not dropped and reject is None:
                g = plan["grid"]
                reject = {"file": plan["file"], "stage": "tile",
                          "reason": f"grid {g['width']}x{g['height']} px at {g['gsd']} m is smaller than one "
                                    f"{self.tile_size}x{self.tile_size} tile" if not plan.get("tiling") else
                          "no tile of the mosaic's lattice that fits in its grid is centred in this block (the "
                          "neighbouring blocks' mosaics make the tiles around it)"}
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"tiles": tiles, "dropped": dropped, "reject": reject})


class LabelScene(LabelParams, SceneTask):
    """Each tile's 8-class label: a completed annotation (``done`` folder) wins, else the source's own
    labels warped onto the tile grid (mode/nearest, never interpolated), else the tile is pending.

    ``annotations`` is the digest of this scene's completed annotation files (computed once by the root from
    the annotation index); it is checked against the files before they are read, so a changed annotation
    is never labelled under a stale name."""

    def requires(self):
        return self.clone(TileScene)

    @property
    def out_dir(self) -> Path:
        return self.folder / f"labels-{self.digest()}"

    def output(self):
        return luigi.LocalTarget(str(self.out_dir / "labels.json"))

    def run(self):
        from pipeline.labels.landcover import write_label_tiles
        from tasks.plan import disk_scene_annotations

        found = disk_scene_annotations(done_dir(), self.source_name, self.scene_id)
        if found != self.annotations:
            raise BuildError(f"the completed annotations of scene {self.source_name}/{self.scene_id} in {done_dir()} "
                             "changed since this build was scheduled; run the build again")
        tile_task = self.requires()
        tiled = _read_json(tile_task.output().path)
        plan = _read_json(tile_task.input().path)
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        tiles = relocate(tiled["tiles"], "image", tile_task.out_dir, out)
        labels: list[dict] = []
        rejects: list[dict] = []
        if tiles:
            self.set_status_message(f"labelling {len(tiles)} tiles of {self.scene.key}")
            try:
                scene = self.scene
                read = scene.landcover or scene.building_mask or scene.footprints or scene.image
                labels = forked.contained(write_label_tiles, scene, plan, tiles, out, file=read)
            except PipelineInputError as exc:
                rejects.append({"file": exc.file, "reason": exc.reason, "stage": "annotation"})
                labels = [
                    {"tile_id": t["tile_id"], "status": "pending", "label": None, "class_pixels": {},
                     "unlabelled_pixels": 0}
                    for t in tiles
                ]
            labels, more = self._annotated(tiles, labels, out)
            rejects.extend(more)
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"labels": labels, "rejects": rejects})

    def _annotated(self, tiles: list[dict], labels: list[dict], out: Path) -> tuple[list[dict], list[dict]]:
        """The scene's completed annotations applied: read in a forked child when it has any
        (:func:`~pipeline.labels.labelling.apply_annotations_contained`), else nothing is read."""
        from pipeline.labels.labelling import apply_annotations, apply_annotations_contained

        apply = apply_annotations_contained if self.annotations else apply_annotations
        return apply(self.scene, tiles, labels, out, done_dir())


class CountSegments(CountParams, SceneTask):
    """Count segments (connected same-class pixels, OpenCV findContours) per class in each label tile."""

    def requires(self):
        return self.clone(LabelScene)

    def output(self):
        return luigi.LocalTarget(str(self.folder / f"segments-{self.digest()}.json"))

    def run(self):
        from pipeline.labels.segments import count_segments

        label_task = self.requires()
        labels = _read_json(label_task.output().path)["labels"]
        out = []
        done = [r for r in labels if r["status"] == "labelled"]
        self.set_status_message(f"counting segments in {len(done)} label tiles of {self.source_name}/{self.scene_id}")
        for i, rec in enumerate(done):
            with rasterio.open(label_task.out_dir / rec["label"]) as ds:
                arr = ds.read(1)
            counts = count_segments(np.asarray(arr))
            out.append({"tile_id": rec["tile_id"], **counts})
            self.set_progress_percentage(int(100 * (i + 1) / len(done)))
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"segments": out})
