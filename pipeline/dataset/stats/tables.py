"""The numbers of the release statistics (Table 1, Table 2, images per continent, segments histogram,
regions) and their CSV rows (policies: the package docstring)."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipeline.constants import CLASS_COLORS, CLASS_IDS, CLASS_NAMES, CONTINENTS, NUM_CLASSES, SPLITS, URBAN_CLASSES
from pipeline.dataset.stats.area import recorded_groups, released_area
from pipeline.errors import ValidationError

HIST_BIN_WIDTH = 100
#: Finite bin edges of the segments-per-image histogram; values >= the last edge go to an overflow bin.
HIST_EDGES: tuple[int, ...] = tuple(range(0, 3000 + HIST_BIN_WIDTH, HIST_BIN_WIDTH))
SHARE_DECIMALS = 4

TABLE1_COLUMNS: tuple[str, ...] = (
    "classes", "images", "images_train", "images_val", "images_test", "countries", "regions", "continents",
    "area_km2", "segments", "gsd_min_m", "gsd_max_m", "labelled_pixels", "unlabelled_pixels",
)
TABLE2_COLUMNS: tuple[str, ...] = ("class", "name", "pixels", "share_pct", "segments") + tuple(
    f"{split}_{col}" for split in SPLITS for col in ("pixels", "share_pct", "segments")
)


def slug(name: str) -> str:
    return name.replace(" ", "_")


REGION_COLUMNS: tuple[str, ...] = (
    ("region", "country", "continent", "sources", "images", "area_km2", "lon", "lat")
    + tuple(f"pct_{slug(CLASS_NAMES[c])}" for c in CLASS_IDS)
    + ("pct_urban",)
)


def _class_counts(rec: dict, field: str) -> list[int]:
    counts = rec.get(field)
    if not isinstance(counts, dict):
        raise ValidationError(f"image {rec.get('id')!r}: {field!r} must be an object of per-class counts")
    unknown = sorted(set(counts) - {str(c) for c in CLASS_IDS})
    if unknown:
        raise ValidationError(f"image {rec['id']!r}: {field!r} has keys {unknown} outside the classes 1..8")
    values = [int(counts.get(str(c), 0)) for c in CLASS_IDS]
    if min(values) < 0:
        raise ValidationError(f"image {rec['id']!r}: negative count in {field!r}")
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
            raise ValidationError(f"image {rec.get('id')!r}: missing fields {missing}")
        iid = str(rec["id"])
        if iid in seen:
            raise ValidationError(f"duplicate image id {iid!r}")
        seen.add(iid)
        if rec["split"] not in SPLITS:
            raise ValidationError(f"image {iid!r}: split {rec['split']!r} is not one of {list(SPLITS)}")
        minx, miny, maxx, maxy = (float(v) for v in rec["bounds"])
        if not (maxx > minx and maxy > miny):
            raise ValidationError(f"image {iid!r}: empty or inverted bounds {rec['bounds']}")
        pixels = _class_counts(rec, "class_pixels")
        segments = _class_counts(rec, "segments")
        if int(rec["segments_total"]) != sum(segments):
            raise ValidationError(
                f"image {iid!r}: segments_total {rec['segments_total']} != sum of segments {sum(segments)}"
            )
        unlabelled = int(rec["unlabelled_pixels"])
        if unlabelled < 0:
            raise ValidationError(f"image {iid!r}: negative unlabelled_pixels")
        out.append({
            "id": iid, "region": str(rec["region"]), "country": str(rec["country"]),
            "continent": str(rec["continent"]), "source": str(rec["source"]), "split": rec["split"],
            "gsd": float(rec["gsd"]),
            "lonlat": [float(v) for v in rec["bounds_lonlat"]],
            "pixels": pixels, "unlabelled": unlabelled, "segments": segments, "segments_total": sum(segments),
        })
    out.sort(key=lambda r: r["id"])
    return out


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, SHARE_DECIMALS) if whole else 0.0


def _join(values: Iterable[str]) -> str:
    return "; ".join(sorted(set(values)))


def _table1(recs: list[dict], area_km2: float) -> dict[str, Any]:
    per_split = {s: sum(1 for r in recs if r["split"] == s) for s in SPLITS}
    gsds = [r["gsd"] for r in recs]
    return {
        "classes": NUM_CLASSES,
        "images": len(recs),
        "images_per_split": per_split,
        "countries": len({r["country"] for r in recs}),
        "regions": len({r["region"] for r in recs}),
        "continents": len({r["continent"] for r in recs}),
        "area_km2": area_km2,
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
        color = "".join(f"{v:02x}" for v in CLASS_COLORS[c])
        entry: dict[str, Any] = {"class": c, "name": CLASS_NAMES[c], "color": color}
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


def _regions(recs: list[dict], area: dict[str, float]) -> list[dict[str, Any]]:
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
            "area_km2": area[region],
            "lon": round(float(lon), 6),
            "lat": round(float(lat), 6),
        }
        for i, c in enumerate(CLASS_IDS):
            row[f"pct_{slug(CLASS_NAMES[c])}"] = _share(pixels[i], labelled)
        row["pct_urban"] = _share(sum(pixels[c - 1] for c in URBAN_CLASSES), labelled)
        row["class_pixels"] = {str(c): pixels[i] for i, c in enumerate(CLASS_IDS)}
        row["centre_per_source"] = per_source
        rows.append(row)
    return rows


def compute_stats(images: list[dict]) -> dict[str, Any]:
    """All release statistics as one JSON-serialisable dict.

    Keys: ``table1`` (classes, images, images_per_split, countries, regions, continents, area_km2 (the union
    of the footprints, :mod:`pipeline.dataset.stats.area`), segments,
    gsd_min_m, gsd_max_m, labelled_pixels, unlabelled_pixels), ``table2`` (``classes``: per class pixels,
    share_pct, segments for the whole release plus ``splits`` -> train/val/test with the same three;
    ``total``: the same sums), ``images_per_continent`` (continent x source counts), ``segments_histogram``
    (fixed bins of segments per image, fractions), ``regions`` (one row per region, see
    :data:`REGION_COLUMNS`, plus exact ``class_pixels`` and ``centre_per_source``) and ``area``
    (:func:`pipeline.dataset.stats.area.released_area`: union area overall, per region, country, continent).
    Policies are in the package docstring.  Raises :class:`~pipeline.errors.ValidationError` on malformed records.
    """
    recs = _prepare(images)
    area = released_area(images, recorded_groups(images))
    return {
        "table1": _table1(recs, area["area_km2"]),
        "table2": _table2(recs),
        "images_per_continent": _images_per_continent(recs),
        "segments_histogram": _segments_histogram(recs),
        "regions": _regions(recs, area["regions"]),
        "area": area,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_fmt(row.get(c)) for c in columns])
    return buf.getvalue()


def table1_row(t1: dict) -> dict:
    row = {k: v for k, v in t1.items() if k != "images_per_split"}
    for s in SPLITS:
        row[f"images_{s}"] = t1["images_per_split"][s]
    return row


def table2_rows(t2: dict) -> list[dict]:
    rows = []
    for entry in t2["classes"] + [dict(t2["total"], **{"class": "total", "name": "all classes"})]:
        row = {k: entry.get(k) for k in ("class", "name", "pixels", "share_pct", "segments")}
        for s in SPLITS:
            for col in ("pixels", "share_pct", "segments"):
                row[f"{s}_{col}"] = entry["splits"][s][col]
        rows.append(row)
    return rows


def continent_rows(ipc: dict) -> tuple[list[dict], list[str]]:
    columns = ["continent"] + ipc["sources"] + ["total"]
    rows = [dict(ipc["counts"][c], continent=c, total=ipc["totals"][c]) for c in ipc["continents"]]
    return rows, columns


def histogram_rows(hist: dict) -> list[dict]:
    return [{"bin_lo": b["lo"], "bin_hi": b["hi"], "images": b["count"], "fraction": b["fraction"]}
            for b in hist["bins"]]
