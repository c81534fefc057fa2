"""Parse and validate ``sources.yaml`` into typed :class:`SourceConfig` objects.

Every error names the file, the source and the key, e.g.
``sources.yaml: source 'inria': unknown kind 'inira'``.

The file is read with a strict loader (:class:`StrictLoader`, a ``yaml.SafeLoader``): anchors and aliases
are refused (an alias bomb expands a few hundred bytes into gigabytes), so are duplicate keys in a mapping
(YAML would silently keep the last), nesting deeper than :data:`MAX_DEPTH` and files over
``sources_max_bytes`` (:class:`pipeline.limits.Limits`, 1 MiB).  Unknown keys are refused at every level.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

from pipeline.constants import NUM_CLASSES
from pipeline.errors import SourcesError
from pipeline.limits import DEFAULT_LIMITS, human_bytes, human_sizes

KINDS = ("xbd", "inria", "spacenet", "openaerialmap", "local", "demo", "stac", "openearthmap")
ALLOWED_SCHEMES = ("http", "https", "s3")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
#: Deepest nesting of mappings and lists accepted in a sources file.
MAX_DEPTH = 16
#: Keys of the top-level mapping.
TOP_LEVEL_KEYS = ("sources",)


class StrictLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that refuses anchors, aliases, duplicate mapping keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed",
                                              event.start_mark)
        if isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.anchor is not None:
            raise yaml.composer.ComposerError(None, None, f"anchors (&{event.anchor}) are not allowed",
                                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it
                break
            if duplicate:
                name = next((v.value for k, v in node.value if isinstance(v, yaml.ScalarNode)
                             and getattr(k, "value", None) == "name"), None)
                where = f" in source {name!r}" if name else ""
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(key)[:80]!r}{where}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)

#: Options each kind accepts, with their types and defaults.  Unknown options are errors.
KIND_OPTIONS: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "demo": {"seed": (int, 0), "size": (str, "full")},
    "openearthmap": {"keep_splits": (bool, True)},
    "local": {"labels": (str, None), "footprints": (str, None), "pattern": (str, "*.tif")},
    "xbd": {"split": (str, "train"), "geotransforms": (str, None)},
    "inria": {"split": (str, "train"), "cities": (list, None)},
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
#: ``crs``: the CRS of images that have a geotransform but no CRS (a world file without ``.prj``).
COMMON_OPTIONS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "sha256": (dict, {}),
    "region": (str, None),
    "regions": (dict, {}),
    "region_override": (str, None),
    "acquired_range": (list, None),
    "bands": (list, None),
    "classes": (dict, None),
    "crs": (str, None),
}
#: Options that say how a scene's pixels and labels are read from its files, not which files: they key its scenes'
#: work, not the content of its raw folder (:func:`pipeline.sources.object_store.source_digest`'s ``pixels``).
#: Left out of a source's options when unset, so that the digests of sources made before they existed do not change.
PIXEL_OPTIONS = ("bands", "classes", "crs")
#: A colour key of ``options.classes`` (a colour label's pixels).
COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")
#: Region names as OpenEarthMap writes them (and the manifest schema's ``name``).
REGION_NAME_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    location: str
    license: str
    attribution: str
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """``http``, ``https``, ``s3`` or ``file`` (a local path)."""
        parsed = urlparse(self.location)
        return parsed.scheme if parsed.scheme in ALLOWED_SCHEMES else "file"

    def option(self, key: str) -> Any:
        return self.options[key]


def _err(path: Path, source: str | None, msg: str) -> SourcesError:
    where = f"{path.name}: source '{source}': " if source is not None else f"{path.name}: "
    return SourcesError(where + msg)


def _check_type(path: Path, name: str, key: str, value: Any, typ) -> None:
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        tname = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise _err(path, name, f"key '{key}' must be {tname}, got {type(value).__name__} {value!r}")


def _check_location(path: Path, name: str, kind: str, location: str) -> None:
    parsed = urlparse(location)
    if parsed.scheme and len(parsed.scheme) > 1 and parsed.scheme not in ALLOWED_SCHEMES:
        # a one-letter scheme is a Windows drive letter, i.e. a local path
        raise _err(
            path, name, f"key 'location': unsupported scheme '{parsed.scheme}' in {location!r} "
            f"(allowed: {', '.join(ALLOWED_SCHEMES)} or a local path)"
        )
    if parsed.scheme in ("http", "https", "s3") and not parsed.netloc:
        raise _err(path, name, f"key 'location': {location!r} has no host")
    if kind == "spacenet" and parsed.scheme not in ("s3", "http", "https", ""):
        raise _err(path, name, "key 'location': spacenet needs an s3:// location or a local path")


def _iso_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _iso_text(value: Any) -> Any:
    """An unquoted YAML date or timestamp (``datetime: 2024-06-01``, which YAML reads as a ``date``) as ISO
    text (``2024-06-01``; a timestamp as UTC ``2024-06-01T10:00:00Z``), also inside a list; else ``value``."""
    if isinstance(value, list):
        return [_iso_text(v) for v in value]
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat() if isinstance(value, date) else value


#: The fields of a source's entry that only label its images, never what its files or pixels are: the terms its
#: files are used on (in its fetch record, catalog and manifest records) and, among its options, the regions its
#: scenes are put in and the acquisition range of images without their own time (in its catalog and release).
TERMS = ("license", "attribution")
LABEL_OPTIONS = ("region", "regions", "region_override", "acquired_range")


def _check_region_name(path: Path, name: str, key: str, value: Any) -> None:
    if not isinstance(value, str) or not REGION_NAME_RE.match(value):
        slug = re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")
        raise _err(path, name, f"key '{key}': {value!r} is not a region name (lower-case letters and digits "
                               f"joined by single '_'" + (f", e.g. '{slug}')" if slug else ")"))


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


def _check_options(path: Path, name: str, options: dict[str, Any]) -> None:
    """Checks of option values beyond their type (named errors)."""
    if options.get("region") and options.get("region_override"):
        raise _err(path, name, "keys 'options.region' and 'options.region_override' are the same option: set one")
    for key in ("region", "region_override"):
        if options.get(key) is not None:
            _check_region_name(path, name, f"options.{key}", options[key])
    for pattern, region in (options.get("regions") or {}).items():
        if not isinstance(pattern, str) or not pattern:
            raise _err(path, name, f"key 'options.regions': pattern {pattern!r} must be a non-empty string")
        _check_region_name(path, name, f"options.regions.{pattern}", region)
    bands = options.get("bands")
    if bands is not None and (len(bands) != 3 or not all(type(b) is int and b >= 1 for b in bands)):
        raise _err(path, name, f"key 'options.bands' must be three band numbers from 1 (red, green, blue), "
                               f"e.g. [3, 2, 1] for a blue-green-red-NIR file, got {bands!r}")
    classes = options.get("classes")
    if classes is not None:
        bad = next((f"{k!r}: {v!r}" for k, v in classes.items() if not (type(k) is int or (
            isinstance(k, str) and COLOUR_RE.fullmatch(k))) or type(v) is not int or not 0 <= v <= NUM_CLASSES),
            None) if classes else "{}"
        if bad is not None:
            raise _err(path, name, f"key 'options.classes' maps source label values (integers, or '#rrggbb' colours "
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
            raise _err(path, name, f"key 'options.crs': {options['crs']!r} is not a CRS (e.g. EPSG:25832)") from None
    rng = options.get("acquired_range")
    if rng is not None:
        days = [_iso_date(v) for v in rng]
        if len(rng) != 2 or None in days:
            raise _err(path, name, f"key 'options.acquired_range' must be two ISO dates [start, end], got {rng!r}")
        if days[0] > days[1]:  # type: ignore[operator]
            raise _err(path, name, f"key 'options.acquired_range': start {rng[0]} is after end {rng[1]}")


def parse_sources(data: Any, path: Path) -> list[SourceConfig]:
    """Validate the loaded YAML document ``data`` (from ``path``) and return its sources."""
    if not isinstance(data, dict) or "sources" not in data:
        raise _err(path, None, "top level must be a mapping with a 'sources' list")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise _err(path, None, f"unknown top-level key {str(key)[:80]!r}")
    items = data["sources"]
    if not isinstance(items, list):
        raise _err(path, None, "key 'sources' must be a list")
    out: list[SourceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _err(path, None, f"entry {i + 1} of 'sources' must be a mapping")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _err(path, None, f"entry {i + 1} of 'sources': missing key 'name'")
        if not _NAME_RE.match(name):
            raise _err(path, name, "key 'name' must be lower-case letters, digits, '_' or '-'")
        if name in seen:
            raise _err(path, name, "duplicate source name")
        seen.add(name)
        known = {"name", "kind", "location", "license", "attribution", "enabled", "options"}
        for key in item:
            if key not in known:
                raise _err(path, name, f"unknown key '{key}'")
        kind = item.get("kind")
        if kind is None:
            raise _err(path, name, "missing key 'kind'")
        if kind not in KINDS:
            raise _err(path, name, f"unknown kind '{kind}' (expected one of {', '.join(KINDS)})")
        for key in ("license", "attribution"):
            if key not in item:
                raise _err(path, name, f"missing key '{key}'")
            _check_type(path, name, key, item[key], str)
            if not item[key].strip():
                raise _err(path, name, f"key '{key}' is empty")
        location = item.get("location", "")
        if kind != "demo" and not location:
            raise _err(path, name, "missing key 'location'")
        _check_type(path, name, "location", location, str)
        _check_location(path, name, kind, location)
        enabled = item.get("enabled", True)
        _check_type(path, name, "enabled", enabled, bool)
        raw_opts = item.get("options") or {}
        if not isinstance(raw_opts, dict):
            raise _err(path, name, "key 'options' must be a mapping")
        spec = {**COMMON_OPTIONS, **KIND_OPTIONS[kind]}
        options: dict[str, Any] = {}
        for key, value in raw_opts.items():
            if key not in spec:
                raise _err(path, name, f"unknown option 'options.{key}' for kind '{kind}'")
            value = _iso_text(value)
            if value is not None:
                _check_type(path, name, f"options.{key}", value, spec[key][0])
            options[key] = value
        for key, (_, default) in spec.items():
            options.setdefault(key, default)
        for key in PIXEL_OPTIONS:  # unset: left out (PIXEL_OPTIONS)
            if options[key] is None:
                del options[key]
        _check_options(path, name, options)
        if kind in ("stac", "openaerialmap"):
            from pipeline.sources.stac.options import option_problem

            problem = option_problem(kind, options)
            if problem:
                raise _err(path, name, f"key 'options.{problem[0]}': {problem[1]}")
        out.append(
            SourceConfig(
                name=name, kind=kind, location=location, license=item["license"],
                attribution=item["attribution"], enabled=enabled, options=options,
            )
        )
    return out


def _read_text(path: Path, max_bytes: int) -> str:
    from pipeline.sources.localfs import file_problem

    why = file_problem(path, max_bytes=1 << 62)
    if why is not None:
        raise SourcesError(f"{path}: {why}")
    size = path.stat().st_size
    if size > max_bytes:
        shown, limit = human_sizes(size, max_bytes)
        raise SourcesError(f"{path.name}: file is {shown}, over sources_max_bytes ({limit})")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise SourcesError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:
        raise SourcesError(f"{path.name}: file is over sources_max_bytes ({human_bytes(max_bytes)})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourcesError(f"{path.name}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def load_sources(path: str | Path, *, max_bytes: int | None = None) -> list[SourceConfig]:
    """Read and validate a sources file; raises :class:`SourcesError` naming file, source and key.

    ``max_bytes`` (default ``sources_max_bytes`` of :data:`pipeline.limits.DEFAULT_LIMITS`) caps the file."""
    path = Path(path)
    if not path.exists():
        raise SourcesError(f"{path}: cannot read: No such file or directory")
    text = _read_text(path, DEFAULT_LIMITS.sources_max_bytes if max_bytes is None else int(max_bytes))
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise SourcesError(f"{path.name}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SourcesError(f"{path.name}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    return parse_sources(data, path)


def enabled_sources(path: str | Path, *, max_bytes: int | None = None) -> list[SourceConfig]:
    return [s for s in load_sources(path, max_bytes=max_bytes) if s.enabled]
