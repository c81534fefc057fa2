"""The release task: ``luigi --module pipeline BuildRelease`` builds ``data/releases/<release>/``.

``BuildRelease`` is the root of the graph: its parameters default to ``[PipelineConfig]`` and the derived
digests are computed when it is created (``tasks.params.RootParams``), then passed down.  The release is
named by the ``release`` parameter alone: a release that exists is complete (rebuilding it runs nothing);
build another name to publish other content.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import luigi

from pipeline import atomic, forked
from pipeline.dataset.history import manifest_digest, remember_release
from pipeline.dataset.pool import footprint_rejects
from pipeline.dataset.splits.uda import uda_section
from pipeline.errors import ReleaseInvalid, ReleaseTaken
from pipeline.params import ProcessingParams
from pipeline.release.staging import drop_stage, take_stage
from pipeline.release.writer import write_release
from pipeline.sources.adapters import acquired_range, upstream_citation
from pipeline.sources.outcome import failure_of, failure_reject, manifest_failure
from tasks.base import PipelineTask
from tasks.config import cfg, history_dir, release_dir, work_dir
from tasks.dataset import AssembleTiles, ComputeStats, ExportAnnotationTodo, SelectTiles, SplitDataset
from tasks.params import RootParams, RootRegister, SplitParams
from tasks.plan import verified_sources
from tasks.sources import FetchSource
from tasks.versions import library_versions


class StageRelease(SplitParams, PipelineTask):
    """The release's tiles, STAC items, GeoParquet index and viewer thumbnails, placed ahead of its manifest in
    a stage folder that ``BuildRelease`` takes over by renaming (:mod:`pipeline.release.staging`).  They need
    the split only, so this runs beside ``ComputeStats``: with two workers, both are busy."""

    pause_collector = True  # records of every image (tasks.base, pipeline.gcpause)

    release = luigi.Parameter(description="release version: data/releases/<release>/")
    code_release = luigi.Parameter(description="code version of the release stage")
    viewer = luigi.BoolParameter(parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                 description="stage the viewer's thumbnails too")

    def requires(self):
        return self.clone(SplitDataset)

    def output(self):
        return luigi.LocalTarget(str(work_dir() / "release-stage" / f"{self.release}-{self.digest()}.json"))

    def run(self):
        from pipeline.release.staging import stage_folder, stage_release

        split = atomic.read_record(self.input().path)
        before = split.get("previous_release")  # SplitDataset's record of the release this one continues
        previous = _previous_manifest(before)
        viewers = [release_dir(self.release) / "viewer"] + ([Path(before["folder"]) / "viewer"] if before else [])
        sources = [{"name": s.name, "acquired_range": acquired_range(s)}
                   for s in verified_sources(cfg().sources_file, self.sources)]
        self.set_status_message(f"placing the tiles of {len(split['images'])} images")
        with atomic.atomic_path(stage_folder(Path(self.output().path))) as tmp:
            staged = stage_release(
                tmp, release=str(self.release), code_release=str(self.code_release), images=split["images"],
                sources=sources, tile_cache=work_dir() / "release-tiles",
                previous=(Path(before["folder"]), previous) if before and previous else None,
                thumbs_from=[v / "thumbs" for v in viewers] if self.viewer else None)
        atomic.write_record(self.output().path, staged)
        self.set_progress_percentage(100)


class BuildRelease(RootParams, PipelineTask, metaclass=RootRegister):
    """Build, validate and publish a release (the folder appears only once it is complete and valid)."""

    pause_collector = True  # records of every image (tasks.base, pipeline.gcpause)
    built_once = True  # an existing release built with other parameters refuses to be made (tasks.taken)

    def requires(self):
        return {
            "pool": self.clone(AssembleTiles), "selection": self.clone(SelectTiles),
            "split": self.clone(SplitDataset), "stats": self.clone(ComputeStats),
            "todo": self.clone(ExportAnnotationTodo), "stage": self.clone(StageRelease),
            "fetch": {name: FetchSource(source_name=name, raw=raw) for name, raw, _ in self.sources},
        }

    def output(self):
        return luigi.LocalTarget(str(release_dir(self.release) / "manifest.json"))

    def code_versions(self) -> dict[str, str]:
        return {**dict(self.codes), "release": self.code_release}

    def created_with(self, split: dict, selection: dict) -> dict:
        codes = self.code_versions()
        params = ProcessingParams(
            target_gsds=tuple(float(g) for g in self.target_gsds), tile_size=int(self.tile_size),
            max_nodata_fraction=float(self.max_nodata_fraction), max_grid_pixels=int(self.max_grid_pixels),
            code_version=hashlib.sha256(json.dumps(codes, sort_keys=True).encode()).hexdigest()[:12],
        )
        return {
            **params.as_dict(),
            "code_versions": codes,
            "libraries": library_versions(),  # those the code versions fold in (tasks.versions.LIBRARIES)
            "source_digests": {name: {"raw": raw, "catalog": catalog} for name, raw, catalog in self.sources},
            "seed": int(self.seed),
            "fingerprint": params.fingerprint(),
            "resampling": {
                "image": "average (integer box pre-reduction + bilinear when downsampling by 1.95x or more and "
                         "the source is all valid, GDAL average otherwise) when downsampling by more than 1.2x, "
                         "else bilinear",
                "label": "mode when downsampling by more than 1.2x, else nearest (never interpolated)",
            },
            "split": {"ratios": split["ratios"], "trials": split["trials"], "seed": split["seed"]},
            "selection": selection["params"],
            # what the task id is a digest of: a build of this release name with others refuses (tasks.taken)
            "build_parameters": self.to_str_params(only_significant=True),
        }

    def partial_markers(self) -> list[Path]:
        """Beside the release folder, which is written whole (``releases/<release>.partial``)."""
        folder = release_dir(self.release)
        return [folder.parent / f"{folder.name}.partial"]

    def run(self):
        load = lambda target: atomic.read_record(target.path)  # noqa: E731
        split = load(self.input()["split"])  # with the pool's pending tiles and rejects (SplitDataset)
        selection = load(self.input()["selection"])
        todo = {e["key"]: e for e in load(self.input()["todo"])["exported"]}
        pending = [
            {**t, "todo": f"{todo[t['key']]['tile']}.tif" if t["key"] in todo else "",
             "footprints_repaired": todo.get(t["key"], {}).get("repaired_polygons", 0),
             "footprints_dropped": todo.get(t["key"], {}).get("dropped_polygons", 0)}
            for t in split["pending"]
        ]
        provenance = {name: load(target) for name, target in self.input()["fetch"].items()}
        failed = {name: f for name, rec in provenance.items() if (f := failure_of(rec))}  # partial release
        rejects = (split["rejects"] + footprint_rejects(todo.values(), provenance)
                   + [failure_reject(name, f) for name, f in sorted(failed.items())])
        sources = [
            {"name": s.name, "kind": s.kind, "location": s.location or "builtin:demo", "license": s.license,
             "attribution": s.attribution, "acquired_range": acquired_range(s), "citation": upstream_citation(s),
             **({"failed": manifest_failure(failed[s.name])} if s.name in failed else {})}
            for s in verified_sources(cfg().sources_file, self.sources)
        ]
        target = release_dir(self.release)
        images = split["images"]
        previous = _previous_manifest(split.get("previous_release"))
        uda = uda_section(images, seed=int(self.seed))
        self.set_status_message(f"writing release {self.release} ({len(images)} images)")
        stage = Path(self.input()["stage"].path)
        try:
            viewer, written = self._write(target, split, selection, stage, rejects=rejects, pending=pending,
                                          sources=sources, provenance=provenance, previous=previous, uda=uda)
        except atomic.TargetExists:  # another build made this release while this one ran: that one is kept
            drop_stage(stage)
            self._made_meanwhile(target)
            return
        drop_stage(stage)
        if written is not None:  # what the next release continuing this one reads instead of its manifest
            remember_release(history_dir(), manifest_digest(target), written)
        self.set_progress_percentage(100)
        print(f"\nRelease {self.release}: {len(images)} images, {len(pending)} pending annotation, "
              f"{len(rejects)} rejects -> {target.resolve()}\n{viewer}"
              f"Validate with: python -m pipeline validate {target}\n", flush=True)

    def _write(self, target: Path, split: dict, selection: dict, stage: Path, **parts) -> tuple[str, dict | None]:
        """Write, check and rename the release into ``target`` (never over a release another build made
        meanwhile, :class:`pipeline.atomic.TargetExists`, only over a partial one of this release, which is
        made again); its viewer's summary line and its parsed manifest.
        ``parts``: the rejects, pending tiles, sources, provenance, previous manifest and UDA section."""
        from pipeline.release.validate.report import validate_release

        linked: dict[str, str] = {}
        reused: set[str] = set()
        staged = atomic.read_record(self.input()["stage"].path)
        previous = parts["previous"]
        # a release made without a source that failed is made again in place (tasks.base); any other is kept
        remake = any(marker.exists() for marker in self.partial_markers())
        with atomic.atomic_path(target, replace=remake) as tmp:
            thumbs = take_stage(stage, tmp)
            write_release(
                tmp, release=str(self.release), images=split["images"], rejects=parts["rejects"],
                pending=parts["pending"], split_infos=split["regions"], stats_dir=Path(self.input()["stats"].path),
                created_with=self.created_with(split, selection), sources=parts["sources"],
                provenance=parts["provenance"], extra={"selection": {k: v for k, v in selection.items()
                                                                      if k != "selected"}},
                previous_manifest=previous, uda=parts["uda"], tile_cache=work_dir() / "release-tiles",
                previous_dir=Path(split["previous_release"]["folder"]) if previous else None, linked=linked,
                reused_items=reused, staged=staged, retired=split.get("retired"),
            )
            written = _read_manifest(tmp)  # parsed once: the trust, the validation and the viewer read it
            trust = self._trust(tmp, linked, reused, split.get("previous_release"), previous, written)
            browsing = " and writing its browser" if self.viewer else ""
            self.set_status_message(f"checking release {self.release}{browsing}")
            # the browser is written by a forked process while this one checks the release (with two cores both
            # are busy); a release that is not valid fails with its problems, whatever became of the browser
            with (forked.start(self._write_viewer, tmp, target, split.get("previous_release"), thumbs,
                               staged["thumbs"], written) if self.viewer else forked.done(lambda: "")) as browser:
                problems = validate_release(tmp, trust=trust, manifest=written, concurrent=True)
                if problems:
                    raise ReleaseInvalid(str(self.release), problems)
                viewer = browser.result()
        return viewer, written

    def _made_meanwhile(self, target: Path) -> None:
        """The release folder appeared while this build wrote its own (another build of the same release name
        finished first; both passed the check at the root, :mod:`tasks.taken`): it is kept, and this build's is
        dropped.  Made with these settings, it is this task's output; with others, this build fails naming them;
        a folder that is no release (no manifest it can read) is never removed (it was before, to make room)."""
        from tasks.taken import differences, recorded_parameters, taken_message

        recorded = recorded_parameters(target)
        changed = differences(recorded, self.to_str_params(only_significant=True)) if recorded is not None else []
        if recorded is not None and not changed:
            print(f"\nRelease {self.release}: made by another build with the same settings while this one ran: "
                  f"{target.resolve()}\n", flush=True)
            return
        raise ReleaseTaken(f"another build made {target} while this one ran; this build's release is dropped: "
                           + (taken_message(str(self.release), target, recorded, changed) if recorded is not None
                              else f"{target} is no release (no readable manifest.json): move it away"))

    @staticmethod
    def _trust(tmp: Path, linked: dict[str, str], reused: set[str], record: dict | None, previous: dict | None,
               manifest: dict | None = None):
        """What the build's validation need not check again (:mod:`pipeline.release.validate.incremental`):
        ``linked`` are the tiles ``write_release`` placed as hard links of unchanged tile-cache entries,
        ``reused`` the STAC items it wrote from the previous release's."""
        from pipeline.release.validate.incremental import release_trust

        if record is None or previous is None:
            return None
        return release_trust(tmp, Path(record["folder"]), previous, linked, items=reused, manifest=manifest)

    def _write_viewer(self, tmp: Path, target: Path, previous: dict | None, thumbs: Path,
                      staged: dict | None, manifest: dict | None = None) -> str:
        """The release browser (derived from the release's files, not listed in the manifest) with the
        thumbnails staged by ``StageRelease`` (``thumbs``; ``staged``: their counts), reusing those of the
        viewer it replaces and of the previous release's viewer for any the stage left out; its summary line.
        Runs in a forked process (:meth:`run`): it reports no progress to Luigi."""
        from pipeline.release.viewer import summary_line, write_viewer

        reuse = [target / "viewer"] + ([Path(previous["folder"]) / "viewer"] if previous else [])
        summary = write_viewer(tmp, tmp / "viewer", reuse=reuse, thumbs_dir=thumbs, manifest=manifest)
        ahead = staged or {}  # thumbnails made by the stage and kept by the viewer: made all the same
        made = int(ahead.get("made", 0))
        summary = {**summary, "made": summary["made"] + made, "reused": summary["reused"] - made,
                   "seconds": summary["seconds"] + float(ahead.get("seconds", 0.0)),
                   "cpu_seconds": summary["cpu_seconds"] + float(ahead.get("cpu_seconds", 0.0))}
        return summary_line({**summary, "index": target / "viewer" / "index.html"}) + "\n"


def _read_manifest(folder: Path) -> dict | None:
    """The manifest the release writer left in ``folder``, parsed (None when it cannot be read or is not a JSON
    object: the validation then reads the file itself and names the problem, the viewer too).  Read as the
    ``validate`` command reads it (:func:`pipeline.release.validate.report.parse_manifest`: no ``NaN``), so the
    build accepts no release that command refuses."""
    from pipeline.release.validate.report import parse_manifest

    try:
        manifest = parse_manifest((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _previous_manifest(record: dict | None) -> dict | None:
    """The manifest of the release that SplitDataset kept ids and splits from (``record`` is its
    ``previous_release`` entry), checked against the digest SplitDataset saw."""
    from pipeline.dataset.history import load_manifest

    return load_manifest(record["folder"], record["digest"]) if record else None
