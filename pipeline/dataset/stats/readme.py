"""The README of a release's ``stats/`` folder: Table 1, Table 2, the figures with captions, the file list."""
from __future__ import annotations

from collections.abc import Sequence

from pipeline.dataset.stats.plots import PNG_FILES


def readme_text(stats: dict, files: Sequence[str]) -> str:
    """The Markdown README for ``stats`` (:func:`~pipeline.dataset.stats.tables.compute_stats`), linking the
    data ``files`` (PNGs and ``README.md`` itself are left out of the file list)."""
    t1, t2 = stats["table1"], stats["table2"]
    ps = t1["images_per_split"]
    gsd = ("n/a" if t1["gsd_min_m"] is None
           else f"{t1['gsd_min_m']:g}–{t1['gsd_max_m']:g} m")
    lines = [
        "# Release statistics",
        "",
        # the module's old path, kept: this README is part of every release and its checksum in the manifest
        "Computed from `manifest.json` by `pipeline/stats.py`. Tables as CSV and JSON beside this file.",
        "",
        "## Table 1 – overview",
        "",
        "| classes | images | train / val / test | countries | regions | continents | area (km²) | segments | GSD |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {t1['classes']} | {t1['images']} | {ps['train']} / {ps['val']} / {ps['test']} | {t1['countries']} | "
        f"{t1['regions']} | {t1['continents']} | {t1['area_km2']:.3f} | {t1['segments']} | {gsd} |",
        "",
        f"Labelled pixels: {t1['labelled_pixels']}; unlabelled (class 0) pixels: {t1['unlabelled_pixels']}.",
        "",
        "## Table 2 – classes",
        "",
        "Share = % of labelled pixels. Whole release, then per split (`table2.csv`: one row per class, "
        "columns `<split>_pixels`, `<split>_share_pct`, `<split>_segments`).",
        "",
        "| class | pixels | share % | segments | train share % | val share % | test share % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in t2["classes"]:
        sp = e["splits"]
        lines.append(
            f"| {e['class']} {e['name']} | {e['pixels']} | {e['share_pct']:.2f} | {e['segments']} | "
            f"{sp['train']['share_pct']:.2f} | {sp['val']['share_pct']:.2f} | {sp['test']['share_pct']:.2f} |"
        )
    tot = t2["total"]
    lines.append(f"| **total** | {tot['pixels']} | {tot['share_pct']:.2f} | {tot['segments']} | | | |")
    hist = stats["segments_histogram"]
    captions = {
        "images_per_continent.png": "Images per continent, stacked by source (Fig. 2).",
        "class_proportions.png": "Class proportions, % of labelled pixels (Fig. 4a).",
        "segments_histogram.png": (
            "Segments per image, normalised histogram (Fig. 4b)"
            + (f"; mean {hist['mean']:g}, median {hist['median']:g}." if hist["images"] else ".")
        ),
        "world_map.png": "Region locations, coloured by source.",
        "region_classes.png": "Class shares per region (`regions.csv`).",
    }
    lines += ["", "## Figures", ""]
    for png in PNG_FILES:
        lines += [f"![{captions[png]}]({png})", "", captions[png], ""]
    lines += [
        "## Files",
        "",
        ", ".join(f"[`{f}`]({f})" for f in files if f != "README.md" and not f.endswith(".png")),
        "",
    ]
    return "\n".join(lines)
