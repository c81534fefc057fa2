"""Writing every file of a release's ``stats/`` folder (:func:`write_stats`)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import atomic
from pipeline.dataset.stats.plots import PNG_FILES, render_pngs
from pipeline.dataset.stats.readme import readme_text
from pipeline.dataset.stats.tables import (
    REGION_COLUMNS,
    TABLE1_COLUMNS,
    TABLE2_COLUMNS,
    compute_stats,
    continent_rows,
    csv_text,
    histogram_rows,
    table1_row,
    table2_rows,
)

#: Every file :func:`write_stats` writes, relative to its ``out_dir`` (sorted).
STATS_FILES: tuple[str, ...] = tuple(sorted(PNG_FILES + (
    "README.md",
    "area.json",
    "table1.json", "table1.csv",
    "table2.json", "table2.csv",
    "images_per_continent.json", "images_per_continent.csv",
    "segments_histogram.json", "segments_histogram.csv",
    "regions.csv",
)))

def write_stats(images: list[dict], out_dir: Path) -> list[str]:
    """Compute the statistics of ``images`` and write every file of :data:`STATS_FILES` into ``out_dir``.

    Each file is written atomically (:mod:`pipeline.atomic`); the outputs are byte-identical for the same
    records in any order.  Returns the written paths relative to ``out_dir``, sorted.

    * ``table1.{json,csv}``: overview (one CSV row, columns :data:`TABLE1_COLUMNS`).
    * ``table2.{json,csv}``: per class pixels / share / segments; CSV: one row per class plus a ``total``
      row, the whole release first, then one column group per split (:data:`TABLE2_COLUMNS`).
    * ``images_per_continent.{json,csv}``: continent rows x source columns (+ ``total``).
    * ``segments_histogram.{json,csv}``: fixed bins (``bin_hi`` empty for the overflow bin).
    * ``regions.csv``: :data:`REGION_COLUMNS`.
    * ``area.json``: the released area (union of the footprints) overall, per region, country and continent.
    * the PNGs of :data:`PNG_FILES` and ``README.md`` (summary embedding the PNGs).
    """
    out_dir = Path(out_dir)
    stats = compute_stats(images)
    regions_public = [{k: v for k, v in r.items() if k in REGION_COLUMNS} for r in stats["regions"]]
    rows_by_continent, continent_columns = continent_rows(stats["images_per_continent"])
    texts = {
        "table1.csv": csv_text([table1_row(stats["table1"])], TABLE1_COLUMNS),
        "table2.csv": csv_text(table2_rows(stats["table2"]), TABLE2_COLUMNS),
        "images_per_continent.csv": csv_text(rows_by_continent, continent_columns),
        "segments_histogram.csv": csv_text(histogram_rows(stats["segments_histogram"]),
                                       ("bin_lo", "bin_hi", "images", "fraction")),
        "regions.csv": csv_text(regions_public, REGION_COLUMNS),
        "README.md": readme_text(stats, STATS_FILES),
    }
    for key in ("table1", "table2", "images_per_continent", "segments_histogram", "area"):
        # the canonical form of atomic.write_json, encoded as UTF-8 whatever the locale
        texts[f"{key}.json"] = json.dumps(stats[key], indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    for name, text in texts.items():
        atomic.write_bytes(out_dir / name, text.encode("utf-8"))
    for name, data in render_pngs(stats).items():
        atomic.write_bytes(out_dir / name, data)
    return list(STATS_FILES)
