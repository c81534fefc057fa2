"""The floor under "add a source to a release": the work no build that writes a complete new release folder of
this format can avoid, measured on the releases ``bench_rebuild`` just built (issue 15.6).

Adding a source to a 5,000-image release and building it alone differ in what the new release folder must hold
for the images carried over from the previous release, however cleverly that is done (every per-region result
kept, nothing computed twice).  Measured here in CPU seconds with the pipeline's own functions, in two tiers:

the **floor**, what no design avoids:

* ``links``: one directory entry per carried file (tiles, labels, STAC items, viewer thumbnails, ...): every
  file of the previous release hard-linked into a fresh folder, its folders made;
* ``figures``: the statistics' PNG figures of the new release's images less those of the added source's alone
  (a figure of ~100 regions is drawn, not copied: :func:`pipeline.dataset.stats.plots.render_pngs`; the tables
  behind them are not counted, a design could keep them as per-region partial sums);
* ``bytes``: the previous manifest read and the new one written as bytes (the carried images' lines copied, not
  parsed and serialised again);

and **whole documents** on top, what a design pays that re-makes the documents which list every image:

* ``manifest``: the previous manifest parsed and the new one serialised (:func:`pipeline.atomic.write_json`);
* ``index`` and ``collection``: the GeoParquet index and the STAC collection of the new release's images
  (:mod:`pipeline.release.geoparquet`, :func:`pipeline.release.stac.write_collection`), less those of the added
  source's images alone.

A ratio is (alone + CPU seconds / 2) / alone in wall seconds: the work spread over both cores of the reference
machine with neither ever idle, a lower bound on the add/alone ratio a design reaches.

    python bench/rebuild_floor.py PREVIOUS_RELEASE NEW_RELEASE ALONE_RELEASE   # prints one JSON object
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _links(previous: Path, scratch: Path) -> tuple[float, int]:
    """CPU seconds to make every folder of ``previous`` and hard-link every file of it into ``scratch``."""
    files = [p for p in previous.rglob("*") if p.is_file()]
    folders = sorted({p.parent.relative_to(previous) for p in files})
    c0 = _cpu()
    for rel in folders:
        (scratch / rel).mkdir(parents=True, exist_ok=True)
    for p in files:
        os.link(p, scratch / p.relative_to(previous))
    return _cpu() - c0, len(files)


def _timed(fn, *args, **kwargs) -> float:
    c0 = _cpu()
    fn(*args, **kwargs)
    return _cpu() - c0


def measure(previous: Path, new: Path, alone: Path) -> dict:
    """The floor's parts and the whole documents' (CPU seconds) for the release folders ``previous``
    (continued), ``new`` (the previous one plus the added source) and ``alone`` (the added source built alone)."""
    from pipeline import atomic
    from pipeline.dataset.stats.plots import render_pngs
    from pipeline.dataset.stats.tables import compute_stats
    from pipeline.release.geoparquet import write_index
    from pipeline.release.stac import write_collection

    new_m, alone_m = atomic.read_record(new / "manifest.json"), atomic.read_record(alone / "manifest.json")
    new_bytes = (new / "manifest.json").read_bytes()
    stats_new, stats_alone = compute_stats(new_m["images"]), compute_stats(alone_m["images"])
    parts: dict[str, float] = {}
    whole: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=new.parent, prefix=".floor-") as tmp:
        scratch = Path(tmp)
        for sub in ("warm", "new", "alone", "links"):
            (scratch / sub).mkdir()
        # imports and first-call costs out of the way (both builds pay them)
        write_index(scratch / "warm", alone_m["images"])
        write_collection(scratch / "warm", alone_m["images"], release="warm", sources=alone_m["sources"])
        render_pngs(stats_alone)
        parts["links"], files = _links(previous, scratch / "links")
        parts["figures"] = _timed(render_pngs, stats_new) - _timed(render_pngs, stats_alone)
        parts["bytes"] = (_timed((previous / "manifest.json").read_bytes)
                          + _timed(atomic.write_bytes, scratch / "new" / "bytes.json", new_bytes))
        whole["manifest"] = (_timed(atomic.read_record, previous / "manifest.json")
                             + _timed(atomic.write_json, scratch / "new" / "manifest.json", new_m))
        whole["index"] = (_timed(write_index, scratch / "new", new_m["images"])
                          - _timed(write_index, scratch / "alone", alone_m["images"]))
        whole["collection"] = (
            _timed(write_collection, scratch / "new", new_m["images"], release="new", sources=new_m["sources"])
            - _timed(write_collection, scratch / "alone", alone_m["images"], release="alone",
                     sources=alone_m["sources"]))
        shutil.rmtree(scratch / "links")
    parts = {k: round(max(v, 0.0), 3) for k, v in parts.items()}
    whole = {k: round(max(v, 0.0), 3) for k, v in whole.items()}
    return {"parts": parts, "cpu": round(sum(parts.values()), 3), "whole": whole,
            "whole_cpu": round(sum(parts.values()) + sum(whole.values()), 3), "files_linked": files,
            "images": {"new": len(new_m["images"]), "alone": len(alone_m["images"])}}


def floor_ratio(alone_wall: float, floor_cpu: float, cores: int = 2) -> float:
    """The lowest add/alone wall-time ratio with ``floor_cpu`` CPU seconds on top of the alone build, spread over
    ``cores`` cores that the alone build left idle."""
    return (alone_wall + floor_cpu / max(cores, 1)) / alone_wall


def run_floor(releases: Sequence[Path]) -> dict:
    """:func:`measure` in a fresh process (the benchmarks' own imports and memory out of it) on (the continued
    release, the one with the added source, the added source alone); ``{}`` when a build left no release,
    ``{"error": ...}`` when the measurement failed (the benchmark reports its builds all the same)."""
    if not all((Path(r) / "manifest.json").is_file() for r in releases):
        return {}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *map(str, releases)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout)


def floor_line(floor: dict, alone_wall: float) -> str:
    """One report line: the floor's parts and the ratios the floor and the whole documents give at best over the
    alone build's wall time."""
    if not floor or floor.get("error"):
        return f"  floor not measured: {floor.get('error') or 'a release is missing'}"
    shown = lambda parts: ", ".join(f"{k} {v:.2f}" for k, v in parts.items())  # noqa: E731
    return (f"  floor (work no design avoids when it writes the {floor['images']['new']}-image release folder, "
            f"CPU s): {floor['cpu']:.2f} = {shown(floor['parts'])} ({floor['files_linked']} files linked): "
            f"{floor_ratio(alone_wall, floor['cpu']):.2f}x the alone build's {alone_wall:.1f} s over both cores; "
            f"re-making the documents that list every image ({shown(floor['whole'])}) as well: "
            f"{floor['whole_cpu']:.2f} CPU s, {floor_ratio(alone_wall, floor['whole_cpu']):.2f}x")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print(json.dumps(measure(*(Path(a) for a in args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
