"""Write a release directory in the OpenEarthMap layout from the split pool (no Luigi here)."""
from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.manifest import build_manifest, file_entries, sha256_file, write_split_files
from pipeline.pool import REJECT_COLUMNS

PENDING_COLUMNS = ("source", "source_scene_id", "tile", "region", "reason")


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (work files are only ever replaced by rename, never rewritten in
    place, so the link stays intact), falling back to a copy across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def write_release(
    out: Path, *, release: str, pool: dict[str, list], assignment: dict[str, str], split_infos: list[dict],
    stats_dir: Path, created_with: dict[str, Any], sources: list[dict[str, Any]],
) -> dict:
    """Fill the (empty or new) folder ``out`` with images, labels, split files, rejects, pending tiles,
    statistics and ``manifest.json`` (written last). Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for im in pool["images"]:
        rec = {k: v for k, v in im.items() if not k.startswith("_")}
        name = f"{rec['id']}.tif"
        rec["image"] = f"{rec['region']}/images/{name}"
        rec["label"] = f"{rec['region']}/labels/{name}"
        rec["split"] = assignment[rec["id"]]
        _place(Path(im["_image_src"]), out / rec["image"])
        _place(Path(im["_label_src"]), out / rec["label"])
        rec["sha256_image"] = sha256_file(out / rec["image"])
        rec["sha256_label"] = sha256_file(out / rec["label"])
        images.append(rec)
    write_split_files(out, images)
    atomic.write_text(out / "rejects.csv", _csv(pool["rejects"], REJECT_COLUMNS))
    atomic.write_text(out / "pending.csv", _csv(pool["pending"], PENDING_COLUMNS))
    shutil.copytree(stats_dir, out / "stats")
    extra = ["train.txt", "val.txt", "test.txt", "rejects.csv", "pending.csv"] + sorted(
        str(p.relative_to(out)) for p in (out / "stats").rglob("*") if p.is_file()
    )
    manifest = build_manifest(
        release=release, created_with=created_with, sources=sources, images=images, splits_info=split_infos
    )
    manifest["files"] = file_entries(out, extra)
    atomic.write_json(out / "manifest.json", manifest)
    return manifest
