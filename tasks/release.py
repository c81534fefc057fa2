"""The release task: ``luigi --module pipeline BuildRelease`` builds ``data/releases/<release>/``."""
from __future__ import annotations

import json
from pathlib import Path

import luigi

from pipeline import atomic
from pipeline.dataset.pool import footprint_rejects
from pipeline.dataset.splits.uda import uda_section
from pipeline.errors import ReleaseInvalid
from pipeline.release.writer import write_release
from pipeline.sources.adapters import acquired_range
from pipeline.sources.outcome import failure_of, failure_reject, manifest_failure
from tasks.base import PipelineTask
from tasks.config import active_sources, cfg, processing_params, release_dir
from tasks.dataset import AssembleTiles, ComputeStats, ExportAnnotationTodo, SelectTiles, SplitDataset
from tasks.sources import FetchSource


class BuildRelease(PipelineTask):
    """Build, validate and publish a release (the folder appears only once it is complete and valid)."""

    def requires(self):
        return {
            "pool": AssembleTiles(), "selection": SelectTiles(), "split": SplitDataset(), "stats": ComputeStats(),
            "todo": ExportAnnotationTodo(),
            "fetch": {s.name: FetchSource(source_name=s.name) for s in active_sources()},
        }

    def output(self):
        return luigi.LocalTarget(str(release_dir() / "manifest.json"))

    def partial_markers(self) -> list[Path]:
        """Beside the release folder, which is written whole (``releases/<release>.partial``)."""
        return [release_dir().parent / f"{release_dir().name}.partial"]

    def run(self):
        from pipeline.release.validate.report import validate_release

        c = cfg()
        params = processing_params()
        load = lambda target: json.loads(Path(target.path).read_text())  # noqa: E731
        pool = load(self.input()["pool"])
        split = load(self.input()["split"])
        selection = load(self.input()["selection"])
        todo = {e["key"]: e for e in load(self.input()["todo"])["exported"]}
        chosen = set(selection["selected"])
        pending = [
            {**t, "todo": f"{todo[t['key']]['tile']}.tif" if t["key"] in todo else "",
             "footprints_repaired": todo.get(t["key"], {}).get("repaired_polygons", 0),
             "footprints_dropped": todo.get(t["key"], {}).get("dropped_polygons", 0)}
            for t in pool["tiles"] if t["status"] == "pending" and t["key"] in chosen
        ]
        provenance = {name: load(target) for name, target in self.input()["fetch"].items()}
        failed = {name: f for name, rec in provenance.items() if (f := failure_of(rec))}  # partial release
        rejects = (pool["rejects"] + footprint_rejects(todo.values(), provenance)
                   + [failure_reject(name, f) for name, f in sorted(failed.items())])
        created_with = {
            **params.as_dict(),
            "seed": int(c.seed),
            "fingerprint": params.fingerprint(),
            "resampling": {
                "image": "average when downsampling by more than 1.2x, else bilinear",
                "label": "mode when downsampling by more than 1.2x, else nearest (never interpolated)",
            },
            "split": {"ratios": split["ratios"], "trials": split["trials"], "seed": split["seed"]},
            "selection": selection["params"],
        }
        sources = [
            {"name": s.name, "kind": s.kind, "location": s.location or "builtin:demo", "license": s.license,
             "attribution": s.attribution, "acquired_range": acquired_range(s),
             **({"failed": manifest_failure(failed[s.name])} if s.name in failed else {})}
            for s in active_sources()
        ]
        target = release_dir()
        images = split["images"]
        previous = _previous_manifest(split.get("previous_release"))
        uda = uda_section(images, seed=int(c.seed))
        self.set_status_message(f"writing release {c.release} ({len(images)} images)")
        with atomic.atomic_path(target) as tmp:
            write_release(
                tmp, release=str(c.release), images=images, rejects=rejects, pending=pending,
                split_infos=split["regions"], stats_dir=Path(self.input()["stats"].path),
                created_with=created_with, sources=sources, provenance=provenance,
                extra={"selection": {k: selection[k] for k in ("params", "counts", "warnings", "regions")}},
                previous_manifest=previous, uda=uda,
            )
            problems = validate_release(tmp)
            if problems:
                raise ReleaseInvalid(str(c.release), problems)
            viewer = self._write_viewer(tmp, target, split.get("previous_release")) if c.viewer else ""
        self.set_progress_percentage(100)
        print(f"\nRelease {c.release}: {len(images)} images, {len(pending)} pending annotation, "
              f"{len(rejects)} rejects -> {target.resolve()}\n{viewer}"
              f"Validate with: python -m pipeline validate {target}\n", flush=True)

    def _write_viewer(self, tmp: Path, target: Path, previous: dict | None) -> str:
        """The release browser (derived from the release's files, not listed in the manifest), reusing the
        thumbnails of the viewer it replaces and of the previous release's viewer."""
        from pipeline.release.viewer import summary_line, write_viewer

        self.set_status_message(f"writing the release browser of {cfg().release}")
        reuse = [target / "viewer"] + ([Path(previous["folder"]) / "viewer"] if previous else [])
        summary = write_viewer(tmp, tmp / "viewer", reuse=reuse)
        return summary_line({**summary, "index": target / "viewer" / "index.html"}) + "\n"


def _previous_manifest(record: dict | None) -> dict | None:
    """The manifest of the release that SplitDataset kept ids and splits from (``record`` is its
    ``previous_release`` entry), checked against the digest SplitDataset saw."""
    from pipeline.dataset.history import load_manifest

    return load_manifest(record["folder"], record["digest"]) if record else None
