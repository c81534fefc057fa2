"""Release statistics: the tables and figures of the OpenEarthMap paper, computed from manifest records.

Input: the manifest's image records (see ``pipeline/schemas/manifest.schema.json``); only ``id``,
``region``, ``country``, ``continent``, ``source``, ``split``, ``gsd``, ``bounds``, ``bounds_lonlat``,
``class_pixels``, ``unlabelled_pixels``, ``segments`` and ``segments_total`` are read.

Policies
--------
* Order never matters: records are sorted by ``id`` first; ids must be unique.  Every output is a pure
  function of the records, written byte-identically on every run (JSON with sorted keys, CSV with a fixed
  column order and ``\\n`` line ends, PNGs from matplotlib's Agg renderer with default rc settings, fixed
  dpi and no ``Software`` metadata).
* Classes are 1..8 (:data:`pipeline.scene.CLASS_NAMES`).  A class missing from ``class_pixels`` or
  ``segments`` counts 0; any other key (``"0"``, ``"9"``) or a negative count is an error.
  ``segments_total`` must equal the sum of ``segments``.
* *Share* of a class = its pixels / all **labelled** pixels (classes 1..8; unlabelled 0 excluded), in %,
  rounded to 4 decimals in the files (0.0 when there are no labelled pixels).  Pixel and segment counts
  are exact integers: the per-class pixel totals of Table 2 equal the sums over the images.
* Splits are always ``train``, ``val``, ``test`` (in that order, 0 when empty); another split name is an
  error.  Images per split sum to the number of images.
* Area = sum of the tiles' UTM bounds areas ((maxx - minx) * (maxy - miny), m²) in km², rounded to 6
  decimals.  Tiles do not overlap, so this is the covered ground area.
* Continents: the six of the manifest schema in fixed order (Africa, Asia, Europe, North America, South
  America, Oceania), always listed, followed by any other name met (sorted).  Sources are sorted by name.
* Segments histogram: bins ``[0, 100), [100, 200), ... [2900, 3000)`` and an overflow bin ``>= 3000``
  (:data:`HIST_EDGES`); values are the fraction of images per bin (sum 1, or all 0 without images).
* Regions: one row per region name (sorted).  Country / continent / sources list every distinct value
  met for the region, sorted and joined with ``"; "`` (normally one).  The centre is the centre of the
  lon/lat bounding box of the region's tiles (regions are assumed not to straddle the antimeridian).
  Urban share = building + road + developed space.
* World map: plate carrée lon/lat axes with a 30° graticule.  Country outlines are drawn only when the
  Natural Earth 1:110m countries shipped with the installed ``pyogrio`` package (its test fixtures) are
  present locally; nothing is downloaded.  Without them the map has the graticule only.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from pipeline import atomic
from pipeline.scene import CLASS_COLORS, CLASS_NAMES, NUM_CLASSES

CLASS_IDS: tuple[int, ...] = tuple(range(1, NUM_CLASSES + 1))
SPLITS: tuple[str, ...] = ("train", "val", "test")
CONTINENTS: tuple[str, ...] = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
#: developed space, road, building
URBAN_CLASSES: tuple[int, ...] = (3, 4, 8)
HIST_BIN_WIDTH = 100
#: Finite bin edges of the segments-per-image histogram; values >= the last edge go to an overflow bin.
HIST_EDGES: tuple[int, ...] = tuple(range(0, 3000 + HIST_BIN_WIDTH, HIST_BIN_WIDTH))
DPI = 100
SHARE_DECIMALS = 4

PNG_FILES: tuple[str, ...] = (
    "images_per_continent.png",
    "class_proportions.png",
    "segments_histogram.png",
    "world_map.png",
    "region_classes.png",
)
#: Every file :func:`write_stats` writes, relative to its ``out_dir`` (sorted).
STATS_FILES: tuple[str, ...] = tuple(sorted(PNG_FILES + (
    "README.md",
    "table1.json", "table1.csv",
    "table2.json", "table2.csv",
    "images_per_continent.json", "images_per_continent.csv",
    "segments_histogram.json", "segments_histogram.csv",
    "regions.csv",
)))

TABLE1_COLUMNS: tuple[str, ...] = (
    "classes", "images", "images_train", "images_val", "images_test", "countries", "regions", "continents",
    "area_km2", "segments", "gsd_min_m", "gsd_max_m", "labelled_pixels", "unlabelled_pixels",
)
TABLE2_COLUMNS: tuple[str, ...] = ("class", "name", "pixels", "share_pct", "segments") + tuple(
    f"{split}_{col}" for split in SPLITS for col in ("pixels", "share_pct", "segments")
)


def _slug(name: str) -> str:
    return name.replace(" ", "_")


REGION_COLUMNS: tuple[str, ...] = (
    ("region", "country", "continent", "sources", "images", "lon", "lat")
    + tuple(f"pct_{_slug(CLASS_NAMES[c])}" for c in CLASS_IDS)
    + ("pct_urban",)
)


# --------------------------------------------------------------------------------------------- input


def _class_counts(rec: dict, field: str) -> list[int]:
    counts = rec.get(field)
    if not isinstance(counts, dict):
        raise ValueError(f"image {rec.get('id')!r}: {field!r} must be an object of per-class counts")
    unknown = sorted(set(counts) - {str(c) for c in CLASS_IDS})
    if unknown:
        raise ValueError(f"image {rec['id']!r}: {field!r} has keys {unknown} outside the classes 1..8")
    values = [int(counts.get(str(c), 0)) for c in CLASS_IDS]
    if min(values) < 0:
        raise ValueError(f"image {rec['id']!r}: negative count in {field!r}")
    return values


def _prepare(images: Iterable[dict]) -> list[dict]:
    """Validated, normalised copies of the records, sorted by id."""
    out = []
    seen: set[str] = set()
    required = ("id", "region", "country", "continent", "source", "split", "gsd", "bounds", "bounds_lonlat",
                "class_pixels", "unlabelled_pixels", "segments", "segments_total")
    for rec in images:
        missing = [k for k in required if k not in rec]
        if missing:
            raise ValueError(f"image {rec.get('id')!r}: missing fields {missing}")
        iid = str(rec["id"])
        if iid in seen:
            raise ValueError(f"duplicate image id {iid!r}")
        seen.add(iid)
        if rec["split"] not in SPLITS:
            raise ValueError(f"image {iid!r}: split {rec['split']!r} is not one of {list(SPLITS)}")
        minx, miny, maxx, maxy = (float(v) for v in rec["bounds"])
        if not (maxx > minx and maxy > miny):
            raise ValueError(f"image {iid!r}: empty or inverted bounds {rec['bounds']}")
        pixels = _class_counts(rec, "class_pixels")
        segments = _class_counts(rec, "segments")
        if int(rec["segments_total"]) != sum(segments):
            raise ValueError(
                f"image {iid!r}: segments_total {rec['segments_total']} != sum of segments {sum(segments)}"
            )
        unlabelled = int(rec["unlabelled_pixels"])
        if unlabelled < 0:
            raise ValueError(f"image {iid!r}: negative unlabelled_pixels")
        out.append({
            "id": iid, "region": str(rec["region"]), "country": str(rec["country"]),
            "continent": str(rec["continent"]), "source": str(rec["source"]), "split": rec["split"],
            "gsd": float(rec["gsd"]), "area_m2": (maxx - minx) * (maxy - miny),
            "lonlat": [float(v) for v in rec["bounds_lonlat"]],
            "pixels": pixels, "unlabelled": unlabelled, "segments": segments, "segments_total": sum(segments),
        })
    out.sort(key=lambda r: r["id"])
    return out


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, SHARE_DECIMALS) if whole else 0.0


def _join(values: Iterable[str]) -> str:
    return "; ".join(sorted(set(values)))


# ------------------------------------------------------------------------------------------- compute


def _table1(recs: list[dict]) -> dict[str, Any]:
    per_split = {s: sum(1 for r in recs if r["split"] == s) for s in SPLITS}
    gsds = [r["gsd"] for r in recs]
    return {
        "classes": NUM_CLASSES,
        "images": len(recs),
        "images_per_split": per_split,
        "countries": len({r["country"] for r in recs}),
        "regions": len({r["region"] for r in recs}),
        "continents": len({r["continent"] for r in recs}),
        "area_km2": round(sum(r["area_m2"] for r in recs) / 1e6, 6),
        "segments": sum(r["segments_total"] for r in recs),
        "gsd_min_m": min(gsds) if gsds else None,
        "gsd_max_m": max(gsds) if gsds else None,
        "labelled_pixels": sum(sum(r["pixels"]) for r in recs),
        "unlabelled_pixels": sum(r["unlabelled"] for r in recs),
    }


def _class_totals(recs: list[dict]) -> tuple[list[int], list[int]]:
    pixels = [0] * NUM_CLASSES
    segments = [0] * NUM_CLASSES
    for r in recs:
        for i in range(NUM_CLASSES):
            pixels[i] += r["pixels"][i]
            segments[i] += r["segments"][i]
    return pixels, segments


def _table2(recs: list[dict]) -> dict[str, Any]:
    groups = {"all": recs, **{s: [r for r in recs if r["split"] == s] for s in SPLITS}}
    totals = {name: _class_totals(group) for name, group in groups.items()}
    classes = []
    for i, c in enumerate(CLASS_IDS):
        entry: dict[str, Any] = {"class": c, "name": CLASS_NAMES[c], "color": "%02x%02x%02x" % CLASS_COLORS[c]}
        for name in groups:
            pixels, segments = totals[name]
            row = {"pixels": pixels[i], "share_pct": _share(pixels[i], sum(pixels)), "segments": segments[i]}
            if name == "all":
                entry.update(row)
            else:
                entry.setdefault("splits", {})[name] = row
        classes.append(entry)
    total: dict[str, Any] = {}
    for name, group in groups.items():
        pixels, segments = totals[name]
        row = {
            "images": len(group), "pixels": sum(pixels), "unlabelled_pixels": sum(r["unlabelled"] for r in group),
            "share_pct": 100.0 if sum(pixels) else 0.0, "segments": sum(segments),
        }
        if name == "all":
            total.update(row)
        else:
            total.setdefault("splits", {})[name] = row
    return {"classes": classes, "total": total}


def _images_per_continent(recs: list[dict]) -> dict[str, Any]:
    sources = sorted({r["source"] for r in recs})
    continents = list(CONTINENTS) + sorted({r["continent"] for r in recs} - set(CONTINENTS))
    counts = {c: {s: 0 for s in sources} for c in continents}
    for r in recs:
        counts[r["continent"]][r["source"]] += 1
    return {
        "continents": continents,
        "sources": sources,
        "counts": counts,
        "totals": {c: sum(counts[c].values()) for c in continents},
        "source_totals": {s: sum(counts[c][s] for c in continents) for s in sources},
    }


def _segments_histogram(recs: list[dict]) -> dict[str, Any]:
    values = np.array([r["segments_total"] for r in recs], dtype=np.int64)
    # bin k holds HIST_EDGES[k] <= v < HIST_EDGES[k+1]; the last bin is the overflow bin (>= HIST_EDGES[-1])
    idx = np.minimum(values // HIST_BIN_WIDTH, len(HIST_EDGES) - 1)
    counts = np.bincount(idx, minlength=len(HIST_EDGES)).tolist()
    n = int(values.size)
    bins = []
    for k, count in enumerate(counts):
        lo = HIST_EDGES[k]
        hi = HIST_EDGES[k + 1] if k + 1 < len(HIST_EDGES) else None
        bins.append({"lo": lo, "hi": hi, "count": int(count), "fraction": round(count / n, 6) if n else 0.0})
    return {
        "images": n,
        "bin_width": HIST_BIN_WIDTH,
        "bins": bins,
        "mean": round(float(values.mean()), 4) if n else None,
        "median": float(np.median(values)) if n else None,
        "min": int(values.min()) if n else None,
        "max": int(values.max()) if n else None,
    }


def _regions(recs: list[dict]) -> list[dict[str, Any]]:
    by_region: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_region[r["region"]].append(r)
    rows = []
    for region in sorted(by_region):
        group = by_region[region]
        pixels, _ = _class_totals(group)
        labelled = sum(pixels)
        ll = np.array([r["lonlat"] for r in group], dtype=float)
        lon = (ll[:, 0].min() + ll[:, 2].max()) / 2
        lat = (ll[:, 1].min() + ll[:, 3].max()) / 2
        per_source = {}
        for source in sorted({r["source"] for r in group}):
            sl = np.array([r["lonlat"] for r in group if r["source"] == source], dtype=float)
            per_source[source] = [round(float((sl[:, 0].min() + sl[:, 2].max()) / 2), 6),
                                  round(float((sl[:, 1].min() + sl[:, 3].max()) / 2), 6)]
        row: dict[str, Any] = {
            "region": region,
            "country": _join(r["country"] for r in group),
            "continent": _join(r["continent"] for r in group),
            "sources": _join(r["source"] for r in group),
            "images": len(group),
            "lon": round(float(lon), 6),
            "lat": round(float(lat), 6),
        }
        for i, c in enumerate(CLASS_IDS):
            row[f"pct_{_slug(CLASS_NAMES[c])}"] = _share(pixels[i], labelled)
        row["pct_urban"] = _share(sum(pixels[c - 1] for c in URBAN_CLASSES), labelled)
        row["class_pixels"] = {str(c): pixels[i] for i, c in enumerate(CLASS_IDS)}
        row["centre_per_source"] = per_source
        rows.append(row)
    return rows


def compute_stats(images: list[dict]) -> dict[str, Any]:
    """All release statistics as one JSON-serialisable dict.

    Keys: ``table1`` (classes, images, images_per_split, countries, regions, continents, area_km2, segments,
    gsd_min_m, gsd_max_m, labelled_pixels, unlabelled_pixels), ``table2`` (``classes``: per class pixels,
    share_pct, segments for the whole release plus ``splits`` -> train/val/test with the same three;
    ``total``: the same sums), ``images_per_continent`` (continent x source counts), ``segments_histogram``
    (fixed bins of segments per image, fractions) and ``regions`` (one row per region, see
    :data:`REGION_COLUMNS`, plus exact ``class_pixels`` and ``centre_per_source``).
    Policies are in the module docstring.  Raises ``ValueError`` on malformed records.
    """
    recs = _prepare(images)
    return {
        "table1": _table1(recs),
        "table2": _table2(recs),
        "images_per_continent": _images_per_continent(recs),
        "segments_histogram": _segments_histogram(recs),
        "regions": _regions(recs),
    }


# ------------------------------------------------------------------------------------------ CSV / MD


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_fmt(row.get(c)) for c in columns])
    return buf.getvalue()


def _table1_row(t1: dict) -> dict:
    row = {k: v for k, v in t1.items() if k != "images_per_split"}
    for s in SPLITS:
        row[f"images_{s}"] = t1["images_per_split"][s]
    return row


def _table2_rows(t2: dict) -> list[dict]:
    rows = []
    for entry in t2["classes"] + [dict(t2["total"], **{"class": "total", "name": "all classes"})]:
        row = {k: entry.get(k) for k in ("class", "name", "pixels", "share_pct", "segments")}
        for s in SPLITS:
            for col in ("pixels", "share_pct", "segments"):
                row[f"{s}_{col}"] = entry["splits"][s][col]
        rows.append(row)
    return rows


def _continent_rows(ipc: dict) -> tuple[list[dict], list[str]]:
    columns = ["continent"] + ipc["sources"] + ["total"]
    rows = [dict(ipc["counts"][c], continent=c, total=ipc["totals"][c]) for c in ipc["continents"]]
    return rows, columns


def _histogram_rows(hist: dict) -> list[dict]:
    return [{"bin_lo": b["lo"], "bin_hi": b["hi"], "images": b["count"], "fraction": b["fraction"]}
            for b in hist["bins"]]


def _readme(stats: dict) -> str:
    t1, t2 = stats["table1"], stats["table2"]
    ps = t1["images_per_split"]
    gsd = ("n/a" if t1["gsd_min_m"] is None
           else f"{t1['gsd_min_m']:g}–{t1['gsd_max_m']:g} m")
    lines = [
        "# Release statistics",
        "",
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
        ", ".join(f"[`{f}`]({f})" for f in STATS_FILES if f != "README.md" and not f.endswith(".png")),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plots


def _natural_earth_shp() -> Optional[Path]:
    """Natural Earth 1:110m countries, if the installed pyogrio ships them (test fixtures); else None."""
    spec = importlib.util.find_spec("pyogrio")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
        if p.is_file():
            return p
    return None


def _country_outlines() -> list[np.ndarray]:
    """Exterior rings (lon/lat arrays) of Natural Earth countries when available locally, else []."""
    shp = _natural_earth_shp()
    if shp is None:
        return []
    try:
        import shapely
        from pyogrio.raw import read
    except ImportError:
        return []
    try:
        _, _, wkb, _ = read(shp, read_geometry=True, columns=[])
    except Exception:  # decoration only: an unreadable fixture must not fail the statistics
        return []
    rings = []
    for geom in shapely.from_wkb(wkb):
        if geom is None:
            continue
        for poly in getattr(geom, "geoms", [geom]):
            rings.append(np.asarray(poly.exterior.coords))
    return rings


def _source_colors(sources: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(sources) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(sources)}


def _class_color(c: int) -> tuple[float, float, float]:
    return tuple(v / 255 for v in CLASS_COLORS[c])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _plot_images_per_continent(fig, stats: dict) -> None:
    ipc = stats["images_per_continent"]
    ax = fig.add_subplot()
    x = np.arange(len(ipc["continents"]))
    bottom = np.zeros(len(x))
    colors = _source_colors(ipc["sources"])
    for s in ipc["sources"]:
        h = np.array([ipc["counts"][c][s] for c in ipc["continents"]], dtype=float)
        ax.bar(x, h, bottom=bottom, color=colors[s], label=s, edgecolor="black", linewidth=0.4)
        bottom += h
    ax.set_xticks(x, ipc["continents"], rotation=20, ha="right")
    ax.set_ylabel("images")
    ax.set_title("Images per continent")
    if ipc["sources"]:
        ax.legend(title="source", fontsize="small")


def _plot_class_proportions(fig, stats: dict) -> None:
    classes = stats["table2"]["classes"]
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    shares = [e["share_pct"] for e in classes]
    bars = ax.bar(x, shares, color=[_class_color(e["class"]) for e in classes], edgecolor="black", linewidth=0.6)
    for b, s in zip(bars, shares):
        ax.annotate(f"{s:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                    fontsize="small", xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [e["name"] for e in classes], rotation=30, ha="right")
    ax.set_ylabel("% of labelled pixels")
    ax.set_ylim(0, max(shares + [1.0]) * 1.15)
    ax.set_title("Class proportions")


def _plot_segments_histogram(fig, stats: dict) -> None:
    hist = stats["segments_histogram"]
    ax = fig.add_subplot()
    lo = np.array([b["lo"] for b in hist["bins"]], dtype=float)
    frac = np.array([b["fraction"] for b in hist["bins"]], dtype=float)
    ax.bar(lo, frac, width=HIST_BIN_WIDTH, align="edge", color="#4b7bb5", edgecolor="black", linewidth=0.4)
    ticks = list(HIST_EDGES[::5])
    labels = [str(t) for t in ticks]
    labels[-1] = f"≥{HIST_EDGES[-1]}" if ticks[-1] == HIST_EDGES[-1] else labels[-1]
    ax.set_xticks(ticks, labels)
    ax.set_xlim(0, HIST_EDGES[-1] + HIST_BIN_WIDTH)
    ax.set_xlabel("segments per image")
    ax.set_ylabel("fraction of images")
    ax.set_title(f"Segments per image ({hist['images']} images)")


def _plot_world_map(fig, stats: dict) -> None:
    from matplotlib.collections import LineCollection

    ax = fig.add_subplot()
    outlines = _country_outlines()
    if outlines:
        ax.add_collection(LineCollection(outlines, colors="#9a9a9a", linewidths=0.4, zorder=1))
    for lon in range(-180, 181, 30):
        ax.axvline(lon, color="#cccccc", linewidth=0.5, zorder=0)
    for lat in range(-90, 91, 30):
        ax.axhline(lat, color="#cccccc", linewidth=0.5, zorder=0)
    sources = stats["images_per_continent"]["sources"]
    colors = _source_colors(sources)
    for i, s in enumerate(sources):
        pts = [r["centre_per_source"][s] for r in stats["regions"] if s in r["centre_per_source"]]
        pts_arr = np.array(pts, dtype=float).reshape(-1, 2)
        # earlier sources drawn larger, so several sources at one place show as concentric dots
        size = 16 + 18 * (len(sources) - 1 - i)
        ax.scatter(pts_arr[:, 0], pts_arr[:, 1], s=size, color=colors[s], edgecolor="black", linewidth=0.4,
                   label=s, zorder=3 + i)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-90, 91, 30))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"Regions ({len(stats['regions'])})")
    if sources:
        ax.legend(title="source", fontsize="small", loc="lower left")


def _plot_region_classes(fig, stats: dict) -> None:
    regions = stats["regions"]
    ax = fig.add_subplot()
    y = np.arange(len(regions))
    left = np.zeros(len(regions))
    for c in CLASS_IDS:
        w = np.array([r[f"pct_{_slug(CLASS_NAMES[c])}"] for r in regions], dtype=float)
        ax.barh(y, w, left=left, color=_class_color(c), edgecolor="black", linewidth=0.3)
        left += w
    ax.set_yticks(y, [r["region"] for r in regions], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of labelled pixels")
    ax.set_title("Class shares per region")
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=_class_color(c), edgecolor="black", linewidth=0.3, label=CLASS_NAMES[c])
               for c in CLASS_IDS]
    ax.legend(handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _render_pngs(stats: dict) -> dict[str, bytes]:
    import matplotlib
    from matplotlib.figure import Figure

    n_regions = len(stats["regions"])
    specs = {
        "images_per_continent.png": ((7, 4.5), _plot_images_per_continent),
        "class_proportions.png": ((7, 4.5), _plot_class_proportions),
        "segments_histogram.png": ((7, 4.5), _plot_segments_histogram),
        "world_map.png": ((10, 5.6), _plot_world_map),
        "region_classes.png": ((9, 2.5 + 0.22 * max(n_regions, 1)), _plot_region_classes),
    }
    out = {}
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # ignore any user matplotlibrc: same bytes everywhere
        for name, (size, plot) in specs.items():
            fig = Figure(figsize=size, layout="constrained")
            plot(fig, stats)
            out[name] = _png(fig)
    return out


# ---------------------------------------------------------------------------------------------- write


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
    * the PNGs of :data:`PNG_FILES` and ``README.md`` (summary embedding the PNGs).
    """
    out_dir = Path(out_dir)
    stats = compute_stats(images)
    regions_public = [{k: v for k, v in r.items() if k in REGION_COLUMNS} for r in stats["regions"]]
    continent_rows, continent_columns = _continent_rows(stats["images_per_continent"])
    texts = {
        "table1.csv": _csv([_table1_row(stats["table1"])], TABLE1_COLUMNS),
        "table2.csv": _csv(_table2_rows(stats["table2"]), TABLE2_COLUMNS),
        "images_per_continent.csv": _csv(continent_rows, continent_columns),
        "segments_histogram.csv": _csv(_histogram_rows(stats["segments_histogram"]),
                                       ("bin_lo", "bin_hi", "images", "fraction")),
        "regions.csv": _csv(regions_public, REGION_COLUMNS),
        "README.md": _readme(stats),
    }
    for key in ("table1", "table2", "images_per_continent", "segments_histogram"):
        # the canonical form of atomic.write_json, encoded as UTF-8 whatever the locale
        texts[f"{key}.json"] = json.dumps(stats[key], indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    for name, text in texts.items():
        atomic.write_bytes(out_dir / name, text.encode("utf-8"))
    for name, data in _render_pngs(stats).items():
        atomic.write_bytes(out_dir / name, data)
    return list(STATS_FILES)
