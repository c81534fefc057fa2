"""The options of a ``sources.yaml`` entry: what each kind accepts (types and defaults), which options only label
or select a source's images or say how its pixels are read (what its digests leave out), the region an entry sets
for a scene, and the checks of option values beyond their types (:func:`options_problem`)."""
from __future__ import annotations

import fnmatch
import re
from datetime import date
from typing import Any

from pipeline.constants import NUM_CLASSES

#: Options each kind accepts, with their types and defaults.  Unknown options are errors.
KIND_OPTIONS: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "demo": {"seed": (int, 0), "size": (str, "full")},
    "openearthmap": {"keep_splits": (bool, True)},
    "local": {"labels": (str, None), "footprints": (str, None), "pattern": (str, "*.tif")},
    "xbd": {"split": (str, "train"), "geotransforms": (str, None)},
    "inria": {"split": (str, "train"), "cities": (list, None)},
    "opencities": {"tiers": (list, [1]), "cities": (list, None), "endpoint_url": (str, None)},
    "spacenet": {"aois": (list, None), "endpoint_url": (str, None), "product": (str, "RGB-PanSharpen")},
    "openaerialmap": {
        "bbox": (list, None),
        "gsd_from": ((int, float), None),
        "gsd_to": ((int, float), 0.5),
        "acquisition_from": (str, None),
        "acquisition_to": (str, None),
        "limit": (int, 100),
        "max_items": (int, 50),
        # OpenAerialMap's STAC API by default; "meta" is the legacy /meta catalog
        "api": (str, "stac"),
        "collections": (list, None),
        "assets": (list, None),
        "non_cog": (str, "reject"),
    },
    # any STAC API or static catalog (pipeline/sources/stac/fetch.py)
    "stac": {
        "collections": (list, None),
        "bbox": (list, None),
        "datetime": (str, None),
        "query": (dict, None),
        "filter": ((dict, str), None),
        "assets": (list, None),
        "max_items": (int, 100),
        "limit": (int, 100),
        "endpoint_url": (str, None),
        "non_cog": (str, "reject"),
    },
}
#: Options every kind accepts.  ``region``: the region of every scene of the source; ``regions``: ``{glob pattern:
#: region}`` matched against scene ids (case-insensitive, first match in file order; for xBD a key may also be a
#: disaster name); ``region_override``: the former name of ``region`` (still accepted); ``acquired_range``: the
#: source's imagery period ``[start, end]`` for scenes without an acquisition time; ``bands``: the numbers (from 1)
#: of the bands to use as red, green and blue (default: the bands whose colour interpretation says so, else the
#: band-count rule of :mod:`pipeline.raster.plan`); ``classes``: ``{source label value or '#rrggbb' colour: class id
#: 0..8}`` for labels in another class scheme (every value met must be mapped: :mod:`pipeline.labels.landcover`);
#: ``crs``: the CRS of images that have a geotransform but no CRS (a world file without ``.prj``); ``licences``: the
#: licences whose images are kept (an OpenAerialMap or STAC source's images each have their own; the others are
#: catalog rejects naming their licence, :func:`pipeline.licences.licence_refused`); ``mosaic``: join the chips that
#: lie side by side into mosaic scenes (default: on for SpaceNet, off for others: :mod:`pipeline.sources.mosaic`).
COMMON_OPTIONS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "sha256": (dict, {}),
    "region": (str, None),
    "regions": (dict, {}),
    "region_override": (str, None),
    "acquired_range": (list, None),
    "bands": (list, None),
    "classes": (dict, None),
    "crs": (str, None),
    "licences": (list, None),
    "mosaic": (bool, None),
}
#: Options that say how a scene's pixels and labels are read from its files, not which files: they key its scenes'
#: work, not the content of its raw folder (:func:`pipeline.sources.object_store.source_digest`'s ``pixels``).
PIXEL_OPTIONS = ("bands", "classes", "crs", "mosaic")
#: A colour key of ``options.classes`` (a colour label's pixels).
COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")
#: Region names as OpenEarthMap writes them (and the manifest schema's ``name``).
REGION_NAME_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")

#: The fields of a source's entry that only label its images, never what its files or pixels are: the terms its
#: files are used on (in its fetch record, catalog and manifest records) and, among its options, the regions its
#: scenes are put in and the acquisition range of images without their own time (in its catalog and release).
TERMS = ("license", "attribution")
LABEL_OPTIONS = ("region", "regions", "region_override", "acquired_range")
#: Options that choose which of a source's scenes its catalog keeps (``licences``): no part of what its scenes' work
#: is made from, nor of what the raw folder of a source holds that downloads everything it lists
#: (:func:`pipeline.sources.object_store.source_digest` leaves them out); the catalog's digest carries them
#: (``tasks.plan.source_digests``), so changing them lists the scenes again and processes nothing again.
SELECT_OPTIONS = ("licences",)
#: The kinds whose fetch knows each image's licence before downloading it (the STAC item's or the OpenAerialMap
#: record's) and so refuses at fetch the images ``options.licences`` leaves out: not a byte of their pixels is
#: transferred.  Their raw folder's digest carries the option (what it holds depends on it); a folder made under
#: other licences starts the new one (:mod:`pipeline.sources.rawreuse`), so only the images the option now keeps
#: and the earlier one refused are downloaded.
FETCH_SELECT_KINDS = ("stac", "openaerialmap")
#: Options left out of a source's options when unset, so that the digests of sources made before they existed do not
#: change.
LEFT_OUT_UNSET = (*PIXEL_OPTIONS, *SELECT_OPTIONS)


def selection(options: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`SELECT_OPTIONS` a source sets (``{}`` when none: its catalog's digest is as before they existed)."""
    return {k: v for k, v in (options or {}).items() if k in SELECT_OPTIONS and v is not None}


def _iso_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _region_name_problem(key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not REGION_NAME_RE.match(value):
        slug = re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")
        return (f"key '{key}': {value!r} is not a region name (lower-case letters and digits joined by single '_'"
                + (f", e.g. '{slug}')" if slug else ")"))
    return None


def scene_region(options: dict[str, Any] | None, scene_id: str) -> str | None:
    """The region ``sources.yaml`` sets for one scene: ``options.region`` (or its former name
    ``region_override``), else the first ``options.regions`` glob pattern matching the scene id
    (case-insensitive), else None (the adapter's hint or the gazetteer decides)."""
    opts = options or {}
    if opts.get("region") or opts.get("region_override"):
        return str(opts.get("region") or opts.get("region_override"))
    for pattern, region in (opts.get("regions") or {}).items():
        if fnmatch.fnmatchcase(scene_id.lower(), str(pattern).lower()):
            return str(region)
    return None


def _regions_problem(options: dict[str, Any]) -> str | None:
    if options.get("region") and options.get("region_override"):
        return "keys 'options.region' and 'options.region_override' are the same option: set one"
    named = [(f"options.{key}", options[key]) for key in ("region", "region_override") if options.get(key) is not None]
    for pattern, region in (options.get("regions") or {}).items():
        if not isinstance(pattern, str) or not pattern:
            return f"key 'options.regions': pattern {pattern!r} must be a non-empty string"
        named.append((f"options.regions.{pattern}", region))
    return next((p for key, value in named if (p := _region_name_problem(key, value))), None)


def options_problem(options: dict[str, Any]) -> str | None:
    """What is wrong with a source's option values beyond their types (``options``: every option of its kind,
    types checked), or None; ``options.classes`` keys are normalised in place (strings: ``"2"``, ``"#0000ff"``)."""
    problem = _regions_problem(options)
    if problem:
        return problem
    bands = options.get("bands")
    if bands is not None and (len(bands) != 3 or not all(type(b) is int and b >= 1 for b in bands)):
        return (f"key 'options.bands' must be three band numbers from 1 (red, green, blue), "
                f"e.g. [3, 2, 1] for a blue-green-red-NIR file, got {bands!r}")
    tiers = options.get("tiers")
    if tiers is not None and (not tiers or not all(t in (1, 2) and type(t) is int for t in tiers)):
        return f"key 'options.tiers' lists the Open Cities AI training tiers to read, [1], [2] or [1, 2], got {tiers!r}"
    classes = options.get("classes")
    if classes is not None:
        bad = next((f"{k!r}: {v!r}" for k, v in classes.items() if not (type(k) is int or (
            isinstance(k, str) and COLOUR_RE.fullmatch(k))) or type(v) is not int or not 0 <= v <= NUM_CLASSES),
            None) if classes else "{}"
        if bad is not None:
            return (f"key 'options.classes' maps source label values (integers, or '#rrggbb' colours "
                    f"of a colour label) to class ids 0..{NUM_CLASSES} (0 unlabelled), e.g. "
                    f"{{2: 8, 3: 4}} or {{'#0000ff': 8}}, got {bad}")
        # one key type, sortable (digests dump options with sorted keys): "2", "#0000ff"
        options["classes"] = {str(k).lower(): v for k, v in classes.items()}
    if options.get("crs") is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(options["crs"])
        except CRSError:
            return f"key 'options.crs': {options['crs']!r} is not a CRS (e.g. EPSG:25832)"
    licences = options.get("licences")
    if licences is not None and (not licences or not all(isinstance(t, str) and t.strip() for t in licences)):
        return (f"key 'options.licences' must list the licences whose images are kept, e.g. "
                f"['CC-BY-4.0', 'CC-BY-SA-4.0'], got {licences!r}")
    rng = options.get("acquired_range")
    if rng is not None:
        days = [_iso_date(v) for v in rng]
        if len(rng) != 2 or None in days:
            return f"key 'options.acquired_range' must be two ISO dates [start, end], got {rng!r}"
        if days[0] > days[1]:  # type: ignore[operator]
            return f"key 'options.acquired_range': start {rng[0]} is after end {rng[1]}"
    return None
