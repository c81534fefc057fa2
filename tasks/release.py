"""The release task: ``luigi --module pipeline BuildRelease`` builds ``data/releases/<release>/``."""
from __future__ import annotations

import json
from pathlib import Path

import luigi

from pipeline import __version__, atomic
from pipeline.release import write_release
from tasks.config import active_sources, cfg, processing_params, release_dir
from tasks.dataset import AssembleTiles, ComputeStats, SplitDataset


class BuildRelease(luigi.Task):
    """Build, validate and publish a release (the folder appears only once it is complete and valid)."""

    def requires(self):
        return {"pool": AssembleTiles(), "split": SplitDataset(), "stats": ComputeStats()}

    def output(self):
        return luigi.LocalTarget(str(release_dir() / "manifest.json"))

    def run(self):
        from pipeline.validate import validate_release

        c = cfg()
        params = processing_params()
        pool = json.loads(Path(self.input()["pool"].path).read_text())
        split = json.loads(Path(self.input()["split"].path).read_text())
        created_with = {
            **params.as_dict(),
            "seed": int(c.seed),
            "fingerprint": params.fingerprint(),
            "resampling": {
                "image": "average when downsampling by more than 1.2x, else bilinear",
                "label": "mode when downsampling by more than 1.2x, else nearest (never interpolated)",
            },
            "split": {"ratios": split["ratios"], "trials": split["trials"], "seed": split["seed"]},
        }
        sources = [
            {"name": s.name, "kind": s.kind, "location": s.location or "builtin:demo", "license": s.license,
             "attribution": s.attribution}
            for s in active_sources()
        ]
        target = release_dir()
        self.set_status_message(f"writing release {c.release} ({len(pool['images'])} images)")
        with atomic.atomic_path(target) as tmp:
            write_release(
                tmp, release=str(c.release), pool=pool, assignment=split["assignment"],
                split_infos=split["regions"], stats_dir=Path(self.input()["stats"].path),
                created_with=created_with, sources=sources,
            )
            problems = validate_release(tmp)
            if problems:
                raise RuntimeError(f"release {c.release} failed validation:\n" + "\n".join(problems))
        self.set_progress_percentage(100)
        n = len(pool["images"])
        print(f"\nRelease {c.release}: {n} images, {len(pool['pending'])} pending, "
              f"{len(pool['rejects'])} rejects -> {target.resolve()}\n"
              f"Validate with: python -m pipeline validate {target}\n", flush=True)
