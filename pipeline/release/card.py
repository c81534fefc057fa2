"""The release card: ``README.md`` at the root of every release, written from its manifest (no Luigi here).

What someone who downloads or re-publishes the release reads first, and what dataset hubs show: a YAML front
matter in the Hugging Face dataset card form (``pretty_name``, ``license``: the hub id of the images' one
licence, else ``other`` with ``license_name``/``license_link``; ``task_categories``, ``tags``, ``size_categories``),
then what the release holds (images, tile size, GSD, regions, countries, continents, area), its classes with
their colours and shares, its splits, three of its statistics figures, its sources with their licences,
attributions and image counts, what each licence asks of users (:func:`pipeline.licences.licence_terms`: every
image keeps its source's licence, and a mixed release says how to take the subset under one set of terms), the
publications its upstream datasets ask to be cited, the files, how to check the release, and how it was made.
Deterministic: the same manifest gives the same bytes (no date, no path of the machine).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from pipeline.constants import SPLITS
from pipeline.licences import hub_license, licence_terms

CARD = "README.md"
#: The hub's size buckets: (upper bound exclusive, label).
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def _size_category(n: int) -> str:
    return next((label for bound, label in _SIZES if n < bound), "1M<n<10M")


def _front_matter(release: str, images: Sequence[Mapping[str, Any]]) -> str:
    licence = hub_license({str(im.get("license") or "") for im in images})
    meta: dict[str, Any] = {"pretty_name": f"Land-cover release {release}", "license": licence}
    if licence == "other":
        meta.update({"license_name": "per-image", "license_link": f"{CARD}#licences"})  # the hub asks for both
    meta.update({
        "task_categories": ["image-segmentation"],
        "tags": ["remote-sensing", "land-cover", "semantic-segmentation", "geospatial", "openearthmap"],
        "size_categories": [_size_category(len(images))],
    })
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _overview(manifest: Mapping[str, Any], images: Sequence[Mapping[str, Any]]) -> list[str]:
    summary = manifest.get("summary") or {}
    sizes = sorted({(int(im["width"]), int(im["height"])) for im in images})
    gsds = sorted({float(im["gsd"]) for im in images})
    counts = {key: len(summary.get(key) or {im[field] for im in images})
              for key, field in (("regions", "region"), ("countries", "country"), ("continents", "continent"))}
    area = f", {summary['area_km2']:.2f} km² (the union of the tiles' footprints)" if "area_km2" in summary else ""
    previous, retired = manifest.get("previous_release"), manifest.get("retired") or []
    return [
        f"# {manifest['release']}", "",
        f"{_images(len(images))} of {' / '.join(f'{w}x{h}' for w, h in sizes)} px at "
        f"{' / '.join(f'{g:g}' for g in gsds)} m ground sampling distance (3-band uint8 Cloud-Optimized GeoTIFFs in "
        f"the local UTM zone), each with an 8-class land-cover label on the same grid, in "
        f"{_count(counts['regions'], 'region')} of {_count(counts['countries'], 'country', 'countries')} on "
        f"{_count(counts['continents'], 'continent')}{area}. Laid out as "
        "OpenEarthMap: `<region>/images/<id>.tif`, `<region>/labels/<id>.tif`, `train.txt`, `val.txt`, `test.txt`."
        + (f" It continues release `{previous}`: every image of it this release ships keeps its id and split"
           + (f"; {_images(len(retired))} of its lineage no longer shipped {'is' if len(retired) == 1 else 'are'} "
              "listed under `retired` in `manifest.json`." if retired else ".") if previous else ""),
    ]


def _classes(manifest: Mapping[str, Any], images: Sequence[Mapping[str, Any]]) -> list[str]:
    pixels: Counter[str] = Counter()
    for im in images:
        pixels.update({str(k): int(v) for k, v in (im.get("class_pixels") or {}).items()})
    total = sum(pixels.values()) or 1
    lines = ["", "## Classes", "", "Label pixel values; 0 is unlabelled.", "",
             "| value | class | colour | share of labelled pixels |", "|---:|---|---|---:|"]
    for c in manifest["classes"]:
        share = 100.0 * pixels[str(c["id"])] / total
        lines.append(f"| {c['id']} | {c['name']} | `#{c['color']}` | {share:.2f} % |")
    return lines


def _splits(manifest: Mapping[str, Any], images: Sequence[Mapping[str, Any]]) -> list[str]:
    per = Counter(im["split"] for im in images)
    split = manifest["created_with"]["split"]
    lines = ["", "## Splits", "",
             f"Per region {':'.join(f'{r:g}' for r in split['ratios'])} (train/val/test), the split with the least "
             f"class mismatch between train and test of {split['trials']} seeded trials; overlapping tiles share a "
             "split.", "",
             "| split | images | file |", "|---|---:|---|"]
    lines += [f"| {s} | {per[s]} | `{s}.txt` |" for s in SPLITS]
    pinned = sum(1 for im in images if im.get("upstream_split"))
    if pinned:
        lines += ["", f"{_images(pinned)} of a source benchmark {'keeps its' if pinned == 1 else 'keep their'} "
                  "benchmark split (`upstream_split` in `manifest.json` and the index): no benchmark test image is "
                  "trained on."]
    if manifest.get("uda"):
        lines += ["", "Domain-adaptation splits (source/target regions balanced over continents and urban/rural): "
                  "`uda/`, described in `manifest.json` (`uda`)."]
    return lines


#: The statistics figures the card shows (``stats/``, :data:`pipeline.dataset.stats.plots.PNG_FILES`), with captions.
FIGURES = (("world_map.png", "Regions, coloured by source"), ("class_proportions.png", "Class proportions"),
           ("images_per_continent.png", "Images per continent, by source"))


def _figures() -> list[str]:
    lines = ["", "## Figures", ""]
    for name, caption in FIGURES:
        lines += [f"![{caption}](stats/{name})", ""]
    return lines + ["More figures and the tables behind them: `stats/README.md`."]


def _sources(manifest: Mapping[str, Any], images: Sequence[Mapping[str, Any]]) -> list[str]:
    per = Counter(im["source"] for im in images)
    lines = ["", "## Sources", "", "| source | kind | images | licence | attribution |", "|---|---|---:|---|---|"]
    for s in manifest["sources"]:
        failed = " (failed: left out of this release)" if s.get("failed") else ""
        lines.append(f"| {_cell(s['name'])}{failed} | {_cell(s.get('kind'))} | {per[s['name']]} | "
                     f"{_cell(s.get('license'))} | {_cell(s.get('attribution'))} |")
    return lines


def _licences(images: Sequence[Mapping[str, Any]]) -> list[str]:
    by_licence: dict[str, Counter[str]] = {}
    for im in images:
        by_licence.setdefault(str(im.get("license") or "none stated"), Counter())[str(im["source"])] += 1
    lines = ["", "## Licences", "",
             "Every image keeps the licence of its source: `license` of each image in `manifest.json`, "
             "`index.parquet`, `index.gpkg` and the STAC items."]
    if len(by_licence) > 1:
        lines += ["", f"This release mixes {len(by_licence)} licences: it is a collection of separately licensed "
                  "images, not one work under one licence. To use or share it under one set of terms, take the "
                  "images of those licences, e.g. "
                  "`pandas.read_parquet(\"index.parquet\").query(\"license == '<licence>'\")`."]
    for text in sorted(by_licence):
        sources = by_licence[text]
        shares = ", ".join(f"`{s}` ({n})" for s, n in sorted(sources.items()))
        lines += ["", f"### {' '.join(text.split())}", "", f"{_images(sum(sources.values()))}, from {shares}. Terms: "
                  + "; ".join(licence_terms(text)) + "."]
    return lines


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _images(n: int) -> str:
    return _count(n, "image")


def _citations(manifest: Mapping[str, Any]) -> list[str]:
    """The publications the upstream datasets ask to be cited (each once, with the sources it covers)."""
    cited: dict[str, list[str]] = {}
    for s in manifest["sources"]:
        if s.get("citation"):
            cited.setdefault(str(s["citation"]), []).append(str(s["name"]))
    if not cited:
        return []
    lines = ["", "## Citation", "", "Cite the datasets this release is made from:", ""]
    lines += [f"- {text} (source{'s' if len(names) > 1 else ''} {', '.join(f'`{n}`' for n in names)})"
              for text, names in cited.items()]
    return lines


def _cell(value: Any) -> str:
    """``value`` as one table cell: on one line (a licence or attribution from a source's catalog may hold line
    breaks), its ``|`` escaped."""
    return " ".join(str(value or "").split()).replace("|", "\\|")


def _files_and_making(manifest: Mapping[str, Any]) -> list[str]:
    made = manifest["created_with"]
    return [
        "", "## Files", "",
        "- `manifest.json`: every image (id, region, country, continent, source, licence, split, bounds, class "
        "pixels, segments, checksums) and every other file with its sha256;",
        "- `index.parquet` (GeoParquet) and `index.gpkg` (GeoPackage): one footprint per image, for GIS;",
        "- `stac/collection.json`: a static STAC catalog, one item per image;",
        "- `zones/<epsg>.txt`: the images of each UTM zone (one torchgeo dataset per zone);",
        "- `stats/README.md`: class statistics, segment counts and figures; `stats/changes.md`: what changed since "
        "the previous release;",
        "- `rejects.csv` (what was left out, and why), `pending.csv` (selected tiles awaiting annotation), "
        "`provenance/<source>.json` (every fetched file with its URL, size and sha256).",
        "", "Check a copy against its manifest (checksums, alignment, splits): `python -m pipeline validate .`", "",
        "## How it was made", "",
        f"Built by oem-pipeline (code version `{made.get('code_version', '')}`, seed {made.get('seed', '')}): each "
        "scene reprojected to its local UTM zone at 0.3 or 0.5 m (images averaged or bilinear, labels by mode or "
        f"nearest, never interpolated), tiled at {made.get('tile_size', '')} px, sampled per region (`selection` in "
        "`manifest.json`: the hard images a model of per-image loss chose) and split per region. `created_with` "
        "in `manifest.json` records every parameter.",
    ]


def release_card(manifest: Mapping[str, Any]) -> str:
    """The ``README.md`` of the release whose manifest is ``manifest`` (module docstring)."""
    images = [im for im in manifest["images"] if isinstance(im, dict)]
    lines = (_overview(manifest, images) + _classes(manifest, images) + _splits(manifest, images) + _figures()
             + _sources(manifest, images) + _licences(images) + _citations(manifest) + _files_and_making(manifest))
    return _front_matter(str(manifest["release"]), images) + "\n" + "\n".join(lines) + "\n"
