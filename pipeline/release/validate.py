"""Check a built release folder against its ``manifest.json``: ``python -m pipeline validate <dir>``.

:func:`validate_release` returns problem lines; an empty list means the release is valid.  Every line
starts with the release-relative file it concerns (``manifest.json``, ``austin/images/austin_1.tif``,
``train.txt`` or, for a name found in several split files, ``train.txt, test.txt``), then ``": "`` and
what is wrong.  Lines come in a fixed order: manifest, then images and labels in manifest order, then
stray rasters, then ``files`` entries, then split files.

Checks
------
1. ``manifest.json`` exists and parses as JSON (else that single problem is returned).
2. ``schema_version`` is :data:`pipeline.release.manifest.SCHEMA_VERSION` (else that single problem is returned,
   because the rest cannot be interpreted); then full JSON-Schema validation, one line per error as
   ``manifest.json: schema: <path>: <message>`` (e.g. ``images[3].license``).
3. Manifest consistency: ids and image file names unique; ``image``/``label`` equal
   ``<region>/images/<id>.tif`` / ``<region>/labels/<id>.tif``; ``splits.train/val/test`` equal the number
   of images per split; each ``splits.regions`` entry's counts equal its region's images per split.
4. Each image and label: exists, SHA-256 equals the manifest's, opens with rasterio; image 3-band uint8,
   label 1-band uint8 with values in 0..8; the image's CRS, transform (each coefficient within 1e-9)
   and width x height equal the manifest's ``crs``/``transform``/``width``/``height``; the label's grid
   equals its image's (or the manifest's when the image cannot be read), reported as one
   ``grid differs from its image (<what> <label> vs <image>; ...)`` line; the label's pixel counts per
   class and of 0 equal ``class_pixels`` / ``unlabelled_pixels``.
5. No ``*/images/*.tif`` or ``*/labels/*.tif`` that the manifest does not reference.
6. ``files`` entries exist with the recorded SHA-256 and byte size.
7. Split files ``train.txt``, ``val.txt``, ``test.txt`` exist; lines are bare, non-blank file names
   without surrounding whitespace; no name twice in a file; every listed name is a manifest image; a name
   is in one split file only and it matches its manifest split; every manifest image is listed.
8. Split audit (lines start with ``manifest.json``, except leakage lines):

   * **ratios**: per region (sorted), each split's image count is within
     :func:`split_tolerance` ``= max(1, 10 % of the region's images)`` of
     :func:`pipeline.dataset.splits.split_counts` for the ``created_with.split.ratios`` (default 6:1:3):
     ``manifest.json: region austin: 2 train images, expected 6 ± 1 (ratios 6:1:3 of 10 images)``;
   * **class coverage**: every class with pixels in a region has pixels in that region's train images:
     ``manifest.json: region austin: class 6 (water) has pixels in the region but none in train``;
   * **leakage**: two images whose footprints overlap (:func:`pipeline.dataset.splits.overlapping_pairs`) are in
     the same split, else ``austin/images/austin_1.tif, austin/images/austin_2.tif: footprints overlap
     (12.5% of the smaller) but splits differ (train vs test)``, pairs in natural order;
   * **UDA**: when the manifest has ``uda.regional``, it names exactly the manifest's regions.
9. UDA split files: with a ``uda`` section, every file of :func:`pipeline.release.manifest.uda_lines` exists and
   lists exactly the image file names it implies, one a line in natural order
   (``uda/regional_source.txt: differs from the manifest's uda section (missing austin_1.tif; extra
   ghost_1.tif)``); ``uda.continent`` equals the continent-wise split of the images' regions; any other
   file under ``uda/`` is reported.
10. Changes report: when ``stats/changes.json`` exists it parses, names this release and the manifest's
   ``previous_release``, its current split counts equal the manifest's, and it lists no split moves (a
   release never moves an image it already released to another split).
11. Outputs for users (releases whose ``created_with.tile_format`` is ``COG``): every image and label is a
   valid Cloud-Optimized GeoTIFF (:func:`pipeline.raster.cog.validate_cog`; rio-cogeo warnings are not problems),
   ``austin/images/austin_1.tif: not a valid COG: ...``; the STAC catalog ``stac/collection.json`` follows
   the STAC 1.1.0, projection and label schemas (validated offline) with one item per image and both
   assets present (:func:`pipeline.release.stac.validate_stac`); ``index.parquet`` exists.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import numpy as np

from pipeline.release.manifest import (
    SCHEMA_VERSION, SPLIT_FILES, SPLITS, UDA_DIR, natural_key, schema_problems, sha256_file, uda_lines,
)
from pipeline.scene import CLASS_NAMES
from pipeline.dataset.splits import DEFAULT_RATIOS, continent_splits, overlapping_pairs, split_counts

MANIFEST = "manifest.json"
TRANSFORM_TOLERANCE = 1e-9
MAX_LABEL_VALUE = 8
#: Allowed deviation of a region's split counts from split_counts(): this share of its images, at least 1.
SPLIT_TOLERANCE_SHARE = 0.10
_COUNT_WORDS = {2: "two", 3: "three"}


def _short(digest: str) -> str:
    return f"{digest[:12]}…"


def _safe_rel(rel: Any) -> Optional[str]:
    """``rel`` as a POSIX path when it is a string naming something inside the release, else None."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", ".") for part in rel.split("/")):
        return None
    return p.as_posix()


def _exc_text(exc: Exception, root: Path) -> str:
    """An exception message with the release folder prefix removed from paths."""
    return str(exc).replace(f"{root}/", "")


def _crs_str(crs: Any) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _fmt_transform(t: Any) -> str:
    return "[" + ", ".join(repr(float(v)) for v in t) + "]"


def _transform_equal(a: Any, b: Any) -> bool:
    try:
        a, b = [float(v) for v in a], [float(v) for v in b]
    except (TypeError, ValueError):
        return False
    return len(a) == len(b) == 6 and all(math.isclose(x, y, rel_tol=0, abs_tol=TRANSFORM_TOLERANCE) for x, y in zip(a, b))


def _read_raster(path: Path, read_band: bool) -> dict[str, Any]:
    """Grid, band count, dtypes and (optionally) band 1 of a raster; raises on unreadable files."""
    import rasterio

    with rasterio.open(path) as ds:
        info = {
            "crs": _crs_str(ds.crs),
            "transform": list(ds.transform)[:6],
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": sorted(set(ds.dtypes)),
        }
        if read_band and ds.count >= 1:
            info["band1"] = ds.read(1)
    return info


def _grid_vs_manifest(rel: str, got: dict[str, Any], rec: dict[str, Any], out: list[str]) -> None:
    w, h = rec.get("width"), rec.get("height")
    if (got["width"], got["height"]) != (w, h):
        out.append(f"{rel}: shape {got['width']}x{got['height']}, expected {w}x{h} (width/height in manifest)")
    if got["crs"] != rec.get("crs"):
        out.append(f"{rel}: CRS {got['crs']}, expected {rec.get('crs')} (crs in manifest)")
    if not _transform_equal(got["transform"], rec.get("transform")):
        exp = rec.get("transform")
        exp_s = _fmt_transform(exp) if isinstance(exp, list) and len(exp) == 6 else repr(exp)
        out.append(f"{rel}: transform {_fmt_transform(got['transform'])}, expected {exp_s} (transform in manifest)")


def _grid_vs_image(rel: str, label: dict[str, Any], image: dict[str, Any], out: list[str]) -> None:
    diffs = []
    if label["crs"] != image["crs"]:
        diffs.append(f"CRS {label['crs']} vs {image['crs']}")
    if not _transform_equal(label["transform"], image["transform"]):
        diffs.append(f"transform {_fmt_transform(label['transform'])} vs {_fmt_transform(image['transform'])}")
    if (label["width"], label["height"]) != (image["width"], image["height"]):
        diffs.append(f"shape {label['width']}x{label['height']} vs {image['width']}x{image['height']}")
    if diffs:
        out.append(f"{rel}: grid differs from its image ({'; '.join(diffs)})")


def _check_file_hash(root: Path, rel: str, expected: Any, out: list[str]) -> Optional[bool]:
    """Report a missing file or a checksum mismatch: None when missing, else whether the hash matched."""
    path = root / rel
    if not path.is_file():
        out.append(f"{rel}: missing")
        return None
    if isinstance(expected, str):
        actual = sha256_file(path)
        if actual != expected:
            out.append(f"{rel}: sha256 mismatch (manifest {_short(expected)}, file {_short(actual)})")
            return False
    return True


def _check_class_pixels(rel: str, band: np.ndarray, rec: dict[str, Any], out: list[str]) -> None:
    """The label's per-class pixel counts (1..8) and its 0-pixels must equal ``class_pixels`` and
    ``unlabelled_pixels`` of the manifest (skipped when the manifest values are malformed)."""
    cp, unl = rec.get("class_pixels"), rec.get("unlabelled_pixels")
    if not isinstance(cp, dict) or not isinstance(unl, int):
        return
    if band.dtype == np.uint8:
        hist = np.bincount(band.ravel(), minlength=256)
        got = {v: int(hist[v]) for v in range(MAX_LABEL_VALUE + 1)}
    else:
        values, counts = np.unique(band, return_counts=True)
        got = {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist()) if float(v).is_integer()}
    diffs = [f"class {c}: manifest {cp.get(str(c))}, file {got.get(c, 0)}"
             for c in range(1, MAX_LABEL_VALUE + 1) if cp.get(str(c)) != got.get(c, 0)]
    if unl != got.get(0, 0):
        diffs.append(f"unlabelled: manifest {unl}, file {got.get(0, 0)}")
    if diffs:
        out.append(f"{rel}: pixel counts differ from the manifest ({'; '.join(diffs)})")


def _check_record_files(root: Path, rec: dict[str, Any], out: list[str]) -> None:
    image_rel, label_rel = _safe_rel(rec.get("image")), _safe_rel(rec.get("label"))
    image_info = None
    if image_rel and _check_file_hash(root, image_rel, rec.get("sha256_image"), out) is not None:
        try:
            image_info = _read_raster(root / image_rel, read_band=False)
        except Exception as exc:  # rasterio raises several types for unreadable files
            out.append(f"{image_rel}: cannot be read as a raster ({_exc_text(exc, root)})")
        if image_info is not None:
            if image_info["count"] != 3:
                out.append(f"{image_rel}: {image_info['count']} bands, expected 3")
            bad = [d for d in image_info["dtypes"] if d != "uint8"]
            if bad:
                out.append(f"{image_rel}: dtype {', '.join(bad)}, expected uint8")
            _grid_vs_manifest(image_rel, image_info, rec, out)
    if label_rel and _check_file_hash(root, label_rel, rec.get("sha256_label"), out) is not None:
        try:
            label_info = _read_raster(root / label_rel, read_band=True)
        except Exception as exc:
            out.append(f"{label_rel}: cannot be read as a raster ({_exc_text(exc, root)})")
            return
        if label_info["count"] != 1:
            out.append(f"{label_rel}: {label_info['count']} bands, expected 1")
        bad = [d for d in label_info["dtypes"] if d != "uint8"]
        if bad:
            out.append(f"{label_rel}: dtype {', '.join(bad)}, expected uint8")
        band = label_info.get("band1")
        if band is not None:
            if band.dtype == np.uint8:
                hist = np.bincount(band.ravel(), minlength=256)
                outside = [int(v) for v in np.nonzero(hist[MAX_LABEL_VALUE + 1:])[0] + MAX_LABEL_VALUE + 1]
            else:
                values = np.unique(band)
                outside = [v.item() for v in values if not (0 <= v <= MAX_LABEL_VALUE and float(v).is_integer())]
            if outside:
                shown = outside[:20] + (["…"] if len(outside) > 20 else [])
                out.append(f"{label_rel}: label values outside 0..{MAX_LABEL_VALUE}: [{', '.join(map(str, shown))}]")
            _check_class_pixels(label_rel, band, rec, out)
        if image_info is not None:
            _grid_vs_image(label_rel, label_info, image_info, out)
        else:
            _grid_vs_manifest(label_rel, label_info, rec, out)


def _check_consistency(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    ids = Counter(r.get("id") for r in records if isinstance(r.get("id"), str))
    for i in sorted((i for i, n in ids.items() if n > 1), key=natural_key):
        out.append(f"{MANIFEST}: id {i} is used by {ids[i]} images")
    names = Counter(PurePosixPath(r["image"]).name for r in records if isinstance(r.get("image"), str))
    for n in sorted((n for n, c in names.items() if c > 1), key=natural_key):
        out.append(f"{MANIFEST}: file name {n} is used by {names[n]} images")
    for idx, r in enumerate(manifest.get("images", [])):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("region"), str):
            continue
        for kind, folder in (("image", "images"), ("label", "labels")):
            expected = f"{r['region']}/{folder}/{r['id']}.tif"
            if isinstance(r.get(kind), str) and r[kind] != expected:
                out.append(f"{MANIFEST}: images[{idx}].{kind} is {r[kind]!r}, expected {expected!r}")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return
    actual = Counter(r.get("split") for r in records)
    for s in SPLITS:
        if isinstance(splits.get(s), int) and splits[s] != actual.get(s, 0):
            out.append(f"{MANIFEST}: splits.{s} is {splits[s]} but {actual.get(s, 0)} images have split {s!r}")
    regions = splits.get("regions")
    if isinstance(regions, list):
        for idx, info in enumerate(regions):
            if not isinstance(info, dict) or not isinstance(info.get("counts"), dict):
                continue
            reg = info.get("region")
            got = Counter(r.get("split") for r in records if r.get("region") == reg)
            have = {s: got.get(s, 0) for s in SPLITS}
            if {s: info["counts"].get(s) for s in SPLITS} != have:
                out.append(f"{MANIFEST}: splits.regions[{idx}] ({reg}) counts {info['counts']} "
                           f"differ from its images' splits {have}")


def _check_stray_rasters(root: Path, records: list[dict[str, Any]], out: list[str]) -> None:
    referenced = {r.get(k) for r in records for k in ("image", "label")}
    found = [p.relative_to(root).as_posix() for pattern in ("*/images/*.tif", "*/labels/*.tif") for p in root.glob(pattern)]
    for rel in sorted((f for f in found if f not in referenced), key=natural_key):
        out.append(f"{rel}: not in the manifest")


def _check_files_entries(root: Path, manifest: dict[str, Any], out: list[str]) -> None:
    entries = manifest.get("files")
    if not isinstance(entries, list):
        return
    for e in entries:
        if not isinstance(e, dict):
            continue
        rel = _safe_rel(e.get("path"))
        if rel is None:
            continue  # reported by the schema
        if _check_file_hash(root, rel, e.get("sha256"), out):  # size only matters when the hash matched
            size = (root / rel).stat().st_size
            if isinstance(e.get("bytes"), int) and size != e["bytes"]:
                out.append(f"{rel}: {size} bytes, manifest says {e['bytes']}")


def _check_split_files(root: Path, records: list[dict[str, Any]], out: list[str]) -> None:
    listed: dict[str, list[str]] = {}
    for s in SPLITS:
        fname = SPLIT_FILES[s]
        path = root / fname
        if not path.is_file():
            out.append(f"{fname}: missing")
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            out.append(f"{fname}: not UTF-8 text")
            continue
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        names = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                out.append(f"{fname}: line {no} is blank")
            elif line != line.strip():
                out.append(f"{fname}: line {no} {line!r} has surrounding whitespace")
            elif "/" in line or "\\" in line:
                out.append(f"{fname}: line {no} {line!r} is not a bare file name")
            else:
                names.append(line)
        for name, n in sorted(Counter(names).items(), key=lambda kv: natural_key(kv[0])):
            if n > 1:
                out.append(f"{fname}: {name} is listed {n} times")
        listed[s] = names

    by_name: dict[str, str] = {}
    for r in records:
        if isinstance(r.get("image"), str):
            by_name.setdefault(PurePosixPath(r["image"]).name, r.get("split"))
    sets = {s: set(names) for s, names in listed.items()}
    for name in sorted(set().union(*sets.values()) if sets else set(), key=natural_key):
        where = [s for s in SPLITS if name in sets.get(s, ())]
        if name not in by_name:
            for s in where:
                out.append(f"{SPLIT_FILES[s]}: {name} is listed but is not an image of the manifest")
        elif len(where) > 1:
            files = ", ".join(SPLIT_FILES[s] for s in where)
            out.append(f"{files}: {name} is in {_COUNT_WORDS.get(len(where), len(where))} splits")
        elif by_name[name] != where[0]:
            out.append(f"{SPLIT_FILES[where[0]]}: {name} is listed but its manifest split is {by_name[name]!r}")
    for name in sorted(by_name, key=natural_key):
        split = by_name[name]
        if split in sets and not any(name in names for names in sets.values()):
            out.append(f"{SPLIT_FILES[split]}: {name} is not listed (its manifest split is {split!r})")


def split_tolerance(n: int) -> float:
    """How many images a split of a region of ``n`` images may deviate from :func:`split_counts`:
    ``max(1, 0.1 * n)``."""
    return max(1.0, SPLIT_TOLERANCE_SHARE * n)


def _ratios_of(manifest: dict[str, Any]) -> Optional[tuple]:
    cw = manifest.get("created_with")
    split = cw.get("split") if isinstance(cw, dict) else None
    ratios = split.get("ratios") if isinstance(split, dict) else None
    if ratios is None:
        return tuple(DEFAULT_RATIOS)
    try:
        split_counts(3, ratios)
    except (TypeError, ValueError):
        return None  # reported by the schema
    return tuple(ratios)


def _fmt_ratio(r: Any) -> str:
    return str(int(r)) if float(r).is_integer() else repr(float(r))


def _check_split_audit(manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    usable = [r for r in records if isinstance(r.get("region"), str) and r.get("split") in SPLITS]
    by_region: dict[str, list[dict[str, Any]]] = {}
    for r in usable:
        by_region.setdefault(r["region"], []).append(r)
    ratios = _ratios_of(manifest)
    for region in sorted(by_region):
        recs = by_region[region]
        n = len(recs)
        if ratios is not None:
            target = split_counts(n, ratios)
            tol = split_tolerance(n)
            have = Counter(r["split"] for r in recs)
            shown = ":".join(_fmt_ratio(x) for x in ratios)
            for s, t in zip(SPLITS, target):
                if abs(have.get(s, 0) - t) > tol:
                    out.append(f"{MANIFEST}: region {region}: {have.get(s, 0)} {s} images, expected {t} ± "
                               f"{tol:g} (ratios {shown} of {n} images)")
        region_px = Counter()
        train_px = Counter()
        for r in recs:
            cp = r.get("class_pixels")
            if not isinstance(cp, dict):
                continue
            for c in range(1, MAX_LABEL_VALUE + 1):
                v = cp.get(str(c))
                if isinstance(v, int) and v > 0:
                    region_px[c] += v
                    if r["split"] == "train":
                        train_px[c] += v
        for c in sorted(region_px):
            if not train_px.get(c):
                out.append(f"{MANIFEST}: region {region}: class {c} ({CLASS_NAMES.get(c, '?')}) has pixels in the "
                           f"region but none in train")
    with_ids = [r for r in usable if isinstance(r.get("id"), str) and isinstance(r.get("image"), str)]
    by_id = {r["id"]: r for r in with_ids}
    try:
        pairs = overlapping_pairs(with_ids)
    except Exception as exc:  # a malformed CRS or bounds (reported by the schema) must not stop the report
        out.append(f"{MANIFEST}: footprints cannot be compared ({exc})")
        pairs = []
    for a, b, frac in pairs:
        ra, rb = by_id[a], by_id[b]
        if ra["split"] != rb["split"]:
            out.append(f"{ra['image']}, {rb['image']}: footprints overlap ({100 * frac:.1f}% of the smaller) "
                       f"but splits differ ({ra['split']} vs {rb['split']})")
    uda = manifest.get("uda")
    regional = uda.get("regional") if isinstance(uda, dict) else None
    if isinstance(regional, dict):
        regions = set(by_region)
        for reg in sorted(set(regional) - regions):
            out.append(f"{MANIFEST}: uda.regional names {reg}, which has no images")
        for reg in sorted(regions - set(regional)):
            out.append(f"{MANIFEST}: uda.regional does not assign region {reg}")


def _read_names(path: Path) -> Optional[list[str]]:
    try:
        return path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def _check_uda_files(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    uda = manifest.get("uda")
    usable = [r for r in records if isinstance(r.get("region"), str) and isinstance(r.get("image"), str)]
    expected: dict[str, list[str]] = {}
    if isinstance(uda, dict) and isinstance(uda.get("regional"), dict):
        continent = uda.get("continent")
        if isinstance(continent, dict):
            with_continent = [r for r in usable if isinstance(r.get("continent"), str)]
            if continent != continent_splits(with_continent, by="region"):
                out.append(f"{MANIFEST}: uda.continent differs from the continent-wise split of the images' regions")
        try:
            expected = uda_lines(usable, uda)
        except (AttributeError, TypeError):
            expected = {}  # malformed section, reported by the schema
    for rel, names in expected.items():
        path = root / rel
        if not path.is_file():
            out.append(f"{rel}: missing")
            continue
        got = _read_names(path)
        if got is None:
            out.append(f"{rel}: not UTF-8 text")
            continue
        if got != names:
            missing = sorted(set(names) - set(got), key=natural_key)
            extra = sorted(set(got) - set(names), key=natural_key)
            what = "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "",
            ) if part) or "order or duplicate lines"
            out.append(f"{rel}: differs from the manifest's uda section ({what})")
    folder = root / UDA_DIR
    if folder.is_dir():
        for p in sorted(folder.rglob("*"), key=lambda q: natural_key(q.as_posix())):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in expected:
                out.append(f"{rel}: not implied by the manifest's uda section")


CHANGES = "stats/changes.json"


def _check_changes(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    path = root / CHANGES
    if not path.is_file():
        return
    try:
        changes = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.append(f"{CHANGES}: not valid JSON ({exc})")
        return
    if not isinstance(changes, dict):
        out.append(f"{CHANGES}: not a JSON object")
        return
    if changes.get("release") != manifest.get("release"):
        out.append(f"{CHANGES}: release is {changes.get('release')!r}, manifest says {manifest.get('release')!r}")
    if changes.get("previous_release") != manifest.get("previous_release"):
        out.append(f"{CHANGES}: previous_release is {changes.get('previous_release')!r}, manifest says "
                   f"{manifest.get('previous_release')!r}")
    current = (changes.get("splits") or {}).get("current") if isinstance(changes.get("splits"), dict) else None
    have = Counter(r.get("split") for r in records)
    if isinstance(current, dict) and {s: current.get(s) for s in SPLITS} != {s: have.get(s, 0) for s in SPLITS}:
        out.append(f"{CHANGES}: current split counts {current} differ from the manifest's images "
                   f"{ {s: have.get(s, 0) for s in SPLITS} }")
    moves = changes.get("split_moves")
    if isinstance(moves, list) and moves:
        ids = ", ".join(str(m.get("id")) for m in moves[:5] if isinstance(m, dict)) + (" ..." if len(moves) > 5 else "")
        out.append(f"{CHANGES}: {len(moves)} released image{'s' if len(moves) != 1 else ''} moved to another split "
                   f"since {changes.get('previous_release')} ({ids})")


def _check_user_outputs(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    created = manifest.get("created_with")
    if not isinstance(created, dict) or created.get("tile_format") != "COG":
        return
    from pipeline.raster.cog import validate_cog

    for rec in records:
        for key in ("image", "label"):
            rel = _safe_rel(rec.get(key))
            if rel and (root / rel).is_file():
                errors = [p.split(": ", 1)[-1] for p in validate_cog(root / rel) if ": warning: " not in p]
                if errors:
                    out.append(f"{rel}: not a valid COG: {'; '.join(errors)}")
    from pipeline.release.stac import validate_stac

    ids = [r["id"] for r in records if isinstance(r.get("id"), str)]
    out.extend(validate_stac(root, expected_ids=ids))
    if not (root / "index.parquet").is_file():
        out.append("index.parquet: missing")


def validate_report(release_dir: str | Path) -> dict[str, Any]:
    """Validate a release folder; ``{"valid", "problems", "images", "release", "release_dir"}``.

    ``images`` is the number of image records in the manifest (0 when it cannot be read) and
    ``release`` the manifest's ``release`` (None when unknown).
    """
    root = Path(release_dir)
    out: list[str] = []
    report: dict[str, Any] = {"valid": False, "problems": out, "images": 0, "release": None,
                              "release_dir": str(root)}
    mpath = root / MANIFEST
    if not mpath.is_file():
        out.append(f"{MANIFEST}: missing")
        return report
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.append(f"{MANIFEST}: not valid JSON ({exc})")
        return report
    if not isinstance(manifest, dict):
        out.append(f"{MANIFEST}: not a JSON object")
        return report
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        shown = "missing" if version is None else f"{version!r} is not supported"
        out.append(f"{MANIFEST}: schema_version {shown} (expected {SCHEMA_VERSION})")
        return report
    report["release"] = manifest.get("release") if isinstance(manifest.get("release"), str) else None
    out.extend(f"{MANIFEST}: schema: {line}" for line in schema_problems(manifest))

    images = manifest.get("images")
    records = [r for r in images if isinstance(r, dict)] if isinstance(images, list) else []
    report["images"] = len(images) if isinstance(images, list) else 0
    _check_consistency(manifest, records, out)
    for rec in records:
        _check_record_files(root, rec, out)
    _check_stray_rasters(root, records, out)
    _check_files_entries(root, manifest, out)
    _check_split_files(root, records, out)
    _check_split_audit(manifest, records, out)
    _check_uda_files(root, manifest, records, out)
    _check_changes(root, manifest, records, out)
    _check_user_outputs(root, manifest, records, out)
    report["valid"] = not out
    return report


def validate_release(release_dir: Path) -> list[str]:
    """Problem lines of the release in ``release_dir`` (module docstring); ``[]`` means valid."""
    return validate_report(release_dir)["problems"]


# --- command line ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``validate`` sub-command."""
    parser.add_argument("release_dir", metavar="release-dir", type=Path, help="release folder holding manifest.json")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead of problem lines")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 valid, 1 problems found, 2 when the release folder does not exist.

    Problem lines go to stdout, one per line, then a summary to stderr; with ``--json`` a report
    ``{"valid", "problems", "images", "release", "release_dir"}`` goes to stdout.  A valid release
    prints ``valid: <dir> (<n> images)``.
    """
    root: Path = args.release_dir
    if not root.is_dir():
        print(f"{root}: not a directory", file=sys.stderr)
        return 2
    report = validate_report(root)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        for line in report["problems"]:
            print(line)
        if report["valid"]:
            print(f"valid: {root} ({report['images']} images)")
        else:
            print(f"invalid: {root} ({len(report['problems'])} problems)", file=sys.stderr)
    return 0 if report["valid"] else 1


def main(argv: Optional[list[str]] = None) -> int:
    """``validate <release-dir> [--json]`` as a stand-alone command (usage errors return 2)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline validate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)
