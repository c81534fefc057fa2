"""Dataset-level tasks: gather every scene's tiles into one pool, sample/select per region, export
pre-annotations, split, compute statistics.

Their outputs are ``data/work/dataset/<name>-<digest>`` where the digest covers the task's parameters: the
sources' digests, processing parameters, code versions, annotation index, selection and split settings and
the previous release's manifest digest (``tasks.params``).  Adding a source or an annotation gives new
dataset-level outputs while the per-scene work of unchanged scenes is reused.

Graph shape: ``AssembleTiles`` requires every source's ``CatalogSource`` and ``SourcePool`` (the source's share
of the pool, named by that source alone).  A ``SourcePool`` requires, when its catalog already exists when
the graph is built, the per-scene tasks of all its scenes (static requirements: any worker process that
schedules the build can run them); the scenes of a source whose catalog did not exist yet are yielded from
its ``run()`` (dynamic dependencies: run by the process that runs it); the next scheduling pass (``python -m
tasks.worker`` does one per phase) sees them statically.  Luigi expands only incomplete tasks, so the
per-scene tasks of a source whose share is complete are never even checked: adding a source schedules that
source's work, not the whole release's.
"""
from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import luigi

from pipeline import atomic, forked
from pipeline.dataset.copies import drop_copies
from pipeline.dataset.pool import assemble_pool, merge_pools, name_images, selected_pending, unmatched_annotations
from pipeline.errors import SourceFailed
from pipeline.sources.options import scene_region
from pipeline.sources.outcome import failure_of
from tasks.base import PipelineTask
from tasks.config import (
    annotation_cache_dir,
    catalog_scenes,
    cfg,
    history_dir,
    load_scene,
    raw_dir,
    releases_root,
    todo_dir,
    work_dir,
)
from tasks.params import PoolParams, SelectParams, SourcePoolParams, SplitParams
from tasks.plan import load_index, previous_folder, scene_keys, verified_sources
from tasks.scene import CountSegments, relocate
from tasks.scenekey import fetched_checksums, scene_digest
from tasks.sources import CatalogSource

logger = logging.getLogger("luigi-interface")


def _load(path: str | Path):
    return atomic.read_record(path)


def _write_record(path: str | Path, obj) -> None:
    """A dataset record (pool share, pool, selection, split: read by tasks, not by people) as compact canonical
    JSON, atomically (:func:`pipeline.atomic.write_record`)."""
    atomic.write_record(path, obj)


def dataset_target(task: PipelineTask, name: str, suffix: str = ".json") -> luigi.LocalTarget:
    """``data/work/dataset/<name>-<task digest><suffix>``."""
    return luigi.LocalTarget(str(work_dir() / "dataset" / f"{name}-{task.digest()}{suffix}"))


class PreviousRelease:
    """The release a dataset task continues (parameters ``previous`` and ``previous_digest``)."""

    previous: str
    previous_digest: str

    def previous_history(self) -> tuple[Path | None, str | None, dict[str, str], dict[str, str],
                                        dict[str, list[str]]]:
        """``(folder, release name, key -> split, key -> id, retired: key -> [id, split, last release])`` of the
        previous release (all empty without one), from its small history record
        (:func:`pipeline.dataset.history.release_history`)."""
        from pipeline.dataset.history import release_history

        folder = previous_folder(releases_root(), self.previous)
        if folder is None:
            return None, None, {}, {}, {}
        return (folder, *release_history(folder, self.previous_digest, history_dir()))

    def retired_after(self, history: tuple, keys: Collection[str]) -> list[dict]:
        """The lineage's images (``history``: :meth:`previous_history`) that a release of the stable keys ``keys``
        does not ship (:func:`pipeline.dataset.history.retired_images`), with their footprints, which are read only
        when there is such an image (:func:`pipeline.dataset.history.lineage_places`)."""
        from pipeline.dataset.history import lineage_places, retired_images

        folder, name, prev_splits, prev_ids, retired = history
        gone = folder is not None and bool((set(prev_splits) | set(retired)) - set(keys))
        places = lineage_places(folder, self.previous_digest, history_dir()) if gone else {}
        return retired_images(name, prev_splits, prev_ids, retired, keys, places)


class SourcePool(SourcePoolParams, PipelineTask):
    """One source's share of the tile pool: the per-scene chain of each of its scenes, then their tiles with
    stable key, region, country and continent, and the source's rejects (:func:`assemble_pool`).

    Its parameters are its source's digests, that source's annotations, the processing parameters and code
    versions: a source that did not change keeps its share when another is added, and Luigi does not even look
    at the per-scene tasks of a complete share (module docstring: static and dynamic scenes)."""

    def catalog_task(self) -> CatalogSource:
        return CatalogSource(source_name=self.source_name, raw=self.raw, catalog=self.catalog)

    def scene_tasks(self) -> list[CountSegments]:
        """The last per-scene task of every scene of the source (its catalog must exist), made once per instance:
        ``requires``, ``input`` and ``run`` ask for them again, and each scene's digest stats its files."""
        if "_scene_tasks" not in self.__dict__:
            index = load_index(str(annotation_cache_dir()), self.annotation_index)
            source = (self.source_name, self.raw, self.catalog)
            keys = scene_keys(cfg().sources_file, self.source_name, self.catalog, self.raw, fetched=self.fetched)
            scenes = catalog_scenes(self.source_name, self.catalog)
            self.__dict__["_scene_tasks"] = [
                CountSegments(**self.scene_params(source, sid, scene_digest(keys, scenes[sid]),
                                                  index.scene(self.source_name, sid)))
                for sid in sorted(scenes)]
        return self.__dict__["_scene_tasks"]

    def fetched(self) -> dict[str, str]:
        """Path -> SHA-256 of the files the source's fetch record lists, read once per instance (the scenes'
        keys of a downloaded source and the pool's copies check use them)."""
        if "_fetched" not in self.__dict__:
            self.__dict__["_fetched"] = fetched_checksums(raw_dir(self.source_name, self.raw) / "fetch.json")
        return self.__dict__["_fetched"]

    def static(self) -> bool:
        """Whether the catalog existed when the requirements were first asked for (fixed then, so the
        requirements do not change between scheduling and running)."""
        if "_static" not in self.__dict__:
            self.__dict__["_static"] = self.catalog_task().complete()
        return self.__dict__["_static"]

    def requires(self):
        return {"catalog": self.catalog_task(), "scenes": self.scene_tasks() if self.static() else []}

    def output(self):
        return dataset_target(self, f"source-{self.source_name}")

    def run(self):
        if not self.static():
            later = self.scene_tasks()
            if later:
                self.set_status_message(f"processing {len(later)} scenes")
                yield later  # scenes catalogued after scheduling; run() resumes once all are complete

        self.set_status_message(f"assembling the tile pool of {self.source_name}")
        (config,) = verified_sources(cfg().sources_file, [(self.source_name, self.raw, self.catalog)])
        catalog = _load(self.input()["catalog"].path)
        scenes = [self._scene_item(task, scene_region(config.options, task.scene_id)) for task in self.scene_tasks()]
        pool = assemble_pool(scenes, catalog_rejects=catalog.get("rejects", []),
                             source_roots={catalog["source"]: catalog["root"]},
                             image_sha256=self.fetched())
        self.set_progress_percentage(100)
        _write_record(self.output().path, pool)

    @staticmethod
    def _scene_item(task: CountSegments, region_override: str | None) -> dict:
        """One scene's records for :func:`pipeline.dataset.pool.assemble_pool`, paths relative to its folder."""
        label_task = task.requires()
        tile_task = label_task.requires()
        folder = task.folder
        tiles = _load(tile_task.output().path)
        labels = _load(label_task.output().path)
        return {
            "scene": task.scene,
            "region_override": region_override,
            "folder": folder,
            "plan": _load(tile_task.input().path),
            "tiles": {**tiles, "tiles": relocate(tiles["tiles"], "image", tile_task.out_dir, folder)},
            "labels": {**labels, "labels": relocate(relocate(labels["labels"], "label", label_task.out_dir, folder),
                                                    "partial", label_task.out_dir, folder)},
            "segments": _load(task.output().path),
        }


class AssembleTiles(PoolParams, PipelineTask):
    """Every enabled source's share of the pool (:class:`SourcePool`) merged into the pool: all tiles with their
    stable key, region, country and continent, and all rejects.  Fails with ``SourceFailed`` when a source could
    not be fetched or catalogued (after every other source's scenes were processed), unless partial releases
    are allowed."""

    pause_collector = True  # records of every image (tasks.base, pipeline.gcpause)

    def catalog_tasks(self) -> list[CatalogSource]:
        return [share.catalog_task() for share in self.source_pools()]

    def source_pools(self) -> list[SourcePool]:
        index = load_index(str(annotation_cache_dir()), self.annotation_index)
        return [self.clone(SourcePool, source_name=n, raw=r, catalog=c, annotations=index.source(n))
                for n, r, c in self.sources]

    def requires(self):
        return {"catalogs": self.catalog_tasks(), "sources": self.source_pools()}

    def output(self):
        return dataset_target(self, "pool")

    def run(self):
        self.set_status_message("assembling the tile pool")
        catalogs = [_load(t.path) for t in self.input()["catalogs"]]
        failed = {c["source"]: f"{c['failed'].get('file')}: {c['failed']['reason']}" for c in catalogs if failure_of(c)}
        if failed and not cfg().allow_partial_release:
            raise SourceFailed(failed)  # after every other source's scenes were tiled and labelled
        pool = merge_pools([_load(t.path) for t in self.input()["sources"]])
        pool["tiles"], copies = drop_copies(pool["tiles"], [n for n, _, _ in self.sources])  # one copy released
        if copies:
            pool["rejects"] = merge_pools([{"tiles": [], "rejects": pool["rejects"] + copies}])["rejects"]
        names = load_index(str(annotation_cache_dir()), self.annotation_index).names
        unused = unmatched_annotations(names, pool["tiles"], {n for n, _, _ in self.sources})
        if unused:  # completed annotations that name no tile: rejects rows, not silently ignored
            pool["rejects"] = merge_pools([{"tiles": [], "rejects": pool["rejects"] + unused}])["rejects"]
        self.set_progress_percentage(100)
        _write_record(self.output().path, pool)


class SelectTiles(SelectParams, PreviousRelease, PipelineTask):
    """Per region: keep every tile when there are at most ``region_max``, else sample to the middle of
    [region_min, region_max]: half seeded random, half hard-image selection (one segmentation model pooled
    over every region's every-k-th labelled tiles, cross-fitted; one loss regressor; highest predicted loss
    first), or seeded random only when the regressor fails its quality gate (``pipeline.dataset.selection``).
    Tiles released by the previous release are always kept (they count towards the quota), so a rebuild
    never drops a released image, and so are tiles on the place of an image of the lineage the pool no longer has
    (its key changed: :mod:`pipeline.dataset.splits.lineage`)."""

    def requires(self):
        return self.clone(AssembleTiles)

    def _params(self) -> dict:
        return {"seed": int(self.seed), "n_min": int(self.region_min), "n_max": int(self.region_max),
                "k": int(self.label_every), "epochs": int(self.selection_epochs),
                "random_fraction": float(self.random_fraction)}

    def output(self):
        return dataset_target(self, "selection")

    def run(self):
        from pipeline.dataset.selection.record import select_tiles, summary_lines
        from pipeline.dataset.splits.lineage import on_retired_places

        history = self.previous_history()
        prev_splits, retired = history[2], history[4]
        pool = _load(self.input().path)
        gone = self.retired_after(history, {t["key"] for t in pool["tiles"]})
        # tiles on the place of a lineage image the pool no longer has (its key changed) are kept like released ones
        released = set(prev_splits)
        if gone:
            lineage = released | retired.keys()
            released |= on_retired_places([t for t in pool["tiles"] if t["key"] not in lineage], gone)
        record = select_tiles(pool["tiles"], params=self._params(), released=released, progress=self._progress)
        for w in record["warnings"]:
            logger.warning(w)
        for line in summary_lines(record):  # the fallback's line is a warning: the console shows it
            logger.log(logging.WARNING if record["fallback"] else logging.INFO, line)
        _write_record(self.output().path, record)

    def _progress(self, message: str, fraction: float) -> None:
        self.set_status_message(message)
        self.set_progress_percentage(int(100 * fraction))


class ExportAnnotationTodo(SelectParams, PipelineTask):
    """For each selected tile that has no 8-class label yet, export its pre-annotation (GeoTIFF + GeoJSON +
    image: the source's buildings, and its classes where its label covers part of the tile) to
    ``<annotation>/todo/`` for annotators."""

    def requires(self):
        return {"pool": self.clone(AssembleTiles), "selection": self.clone(SelectTiles)}

    def output(self):
        return dataset_target(self, "todo")

    def run(self):
        from pipeline.labels.labelling import export_todo

        catalogs = {name: catalog for name, _, catalog in self.sources}
        pool = _load(self.input()["pool"].path)
        chosen = set(_load(self.input()["selection"].path)["selected"])
        pending = selected_pending(pool["tiles"], chosen)
        # scenes whose source labels killed the process reading them (LabelScene's reject): not read again here
        crashed = {(r["source"], r["scene_id"]): f"{r['file']}: {r['reason']}" for r in pool["rejects"]
                   if r.get("stage") == "annotation" and str(r.get("reason", "")).startswith(forked.DIED)}
        exported = []
        for i, t in enumerate(pending):
            scene = load_scene(t["source"], catalogs[t["source"]], t["source_scene_id"])
            tile = {"tile_id": t["tile"], "crs": t["crs"], "transform": t["transform"],
                    "window": [0, 0, t["width"], t["height"]]}
            partial = Path(t["_partial_src"]) if t.get("_partial_src") else None
            exported.append({"key": t["key"], **export_todo(scene, tile, Path(t["_image_src"]), todo_dir(),
                                                            crashed=crashed.get((t["source"], t["source_scene_id"])),
                                                            partial=partial)})
            self.set_progress_percentage(int(100 * (i + 1) / max(1, len(pending))))
        self.set_status_message(f"exported {len(exported)} pre-annotations to {todo_dir()}")
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, {"todo_dir": str(todo_dir()), "exported": exported})


class SplitDataset(SplitParams, PreviousRelease, PipelineTask):
    """Name the released images (``<region>_<n>``) and split them per region 6:1:3 train/val/test: the
    best of ``split_trials`` seeded random trials (least class mismatch between train and test), never
    separating images whose footprints overlap (leakage groups).  The record also carries the pool's selected
    tiles pending annotation and its rejects, which the release lists (so the release task does not parse the
    5 MB pool again).  Images of the previous release
    (parameters ``previous``, ``previous_digest``) keep their id and split, as do images released earlier in its
    lineage that come back (the record's ``retired`` lists those of the lineage this release does not ship, with
    their footprints), and a new image on the place of a retired one keeps its split (``same_place_as``,
    :mod:`pipeline.dataset.splits.lineage`); the output name carries the digest of that release's manifest, so a
    different previous release never reuses a stale split."""

    pause_collector = True  # records of every image (tasks.base, pipeline.gcpause)

    ratios = (6, 1, 3)

    def requires(self):
        return {"pool": self.clone(AssembleTiles), "selection": self.clone(SelectTiles)}

    def output(self):
        return dataset_target(self, "split")

    def run(self):
        from pipeline.dataset.ids import image_key
        from pipeline.dataset.splits.leakage import footprint, leakage_groups
        from pipeline.dataset.splits.lineage import lineage_anchors
        from pipeline.dataset.splits.trials import split_dataset

        folder, name, prev_splits, prev_ids, retired = self.previous_history()
        pool = _load(self.input()["pool"].path)
        chosen = set(_load(self.input()["selection"].path)["selected"])
        self.set_status_message(f"splitting {len(chosen)} selected tiles ({self.split_trials} trials per region)")
        # the lineage: an image the previous release retired gets its id and split back, and no new image gets
        # an id any release of the lineage used (pipeline.dataset.history)
        images = name_images([t for t in pool["tiles"] if t["status"] == "labelled" and t["key"] in chosen],
                             previous={**{k: v[0] for k, v in retired.items()}, **prev_ids})
        groups = leakage_groups(images) if any(footprint(im) is not None for im in images) else {}
        kept = {**{k: v[1] for k, v in retired.items()}, **prev_splits}
        gone = self.retired_after((folder, name, prev_splits, prev_ids, retired), {image_key(im) for im in images})
        anchors = lineage_anchors(images, groups, kept, gone)  # a new key on a retired image's place
        # the split of the benchmark an image comes from (pipeline.sources.adapters.openearthmap), below the lineage's
        upstream = {image_key(im): im["upstream_split"] for im in images if im.get("upstream_split")}
        assignment, infos = split_dataset(images, ratios=self.ratios, trials=int(self.split_trials),
                                          seed=int(self.seed), groups=groups,
                                          previous={**{k: split for k, (split, _) in anchors.items()}, **upstream,
                                                    **kept})
        for im in images:
            im["split"] = assignment[im["id"]]
            im["group"] = groups.get(im["id"], im["id"])
            if image_key(im) in anchors:
                im["same_place_as"] = anchors[image_key(im)][1]
        self.set_progress_percentage(100)
        _write_record(self.output().path, {
            "seed": int(self.seed), "trials": int(self.split_trials), "ratios": list(self.ratios),
            "images": images, "regions": infos,
            # what the release lists besides its images, so that it need not read the pool again
            "pending": selected_pending(pool["tiles"], chosen),
            "rejects": pool["rejects"],
            "previous_release": None if folder is None else {
                "release": name, "folder": str(folder), "digest": self.previous_digest},
            "retired": gone,
        })


class ComputeStats(SplitParams, PipelineTask):
    """The paper's tables and figures for the released images, as JSON, CSV, PNG and a README, and
    ``selection.json`` (every region's annotation-loop stage, the selection model's gate)."""

    pause_collector = True  # records of every image (tasks.base, pipeline.gcpause)

    def requires(self):
        return {"split": self.clone(SplitDataset), "selection": self.clone(SelectTiles)}

    def output(self):
        return dataset_target(self, "stats", suffix="")

    def run(self):
        from pipeline.dataset.selection.record import write_stage_stats
        from pipeline.dataset.stats.write import write_stats

        images = _load(self.input()["split"].path)["images"]
        self.set_status_message(f"statistics over {len(images)} images")
        with atomic.atomic_path(self.output().path) as tmp:
            tmp.mkdir()
            write_stats(images, tmp)
            write_stage_stats(_load(self.input()["selection"].path), tmp)
        self.set_progress_percentage(100)
