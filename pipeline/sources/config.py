"""Parse and validate ``sources.yaml`` into typed :class:`SourceConfig` objects.

Every error names the file, the source and the key, e.g.
``sources.yaml: source 'inria': unknown kind 'inira'``.

The file is read with a strict loader (:class:`StrictLoader`, a ``yaml.SafeLoader``): anchors and aliases
are refused (an alias bomb expands a few hundred bytes into gigabytes), so are duplicate keys in a mapping
(YAML would silently keep the last), nesting deeper than :data:`MAX_DEPTH` and files over
``sources_max_bytes`` (:class:`pipeline.limits.Limits`, 1 MiB).  Unknown keys are refused at every level.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

from pipeline.errors import SourcesError
from pipeline.limits import DEFAULT_LIMITS, human_bytes, human_sizes
from pipeline.sources.options import COMMON_OPTIONS, KIND_OPTIONS, LEFT_OUT_UNSET, options_problem

KINDS = ("xbd", "inria", "spacenet", "openaerialmap", "local", "demo", "stac", "openearthmap", "opencities")
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


def _iso_text(value: Any) -> Any:
    """An unquoted YAML date or timestamp (``datetime: 2024-06-01``, which YAML reads as a ``date``) as ISO
    text (``2024-06-01``; a timestamp as UTC ``2024-06-01T10:00:00Z``), also inside a list; else ``value``."""
    if isinstance(value, list):
        return [_iso_text(v) for v in value]
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat() if isinstance(value, date) else value


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
        for key in LEFT_OUT_UNSET:
            if options[key] is None:
                del options[key]
        problem = options_problem(options)
        if problem:
            raise _err(path, name, problem)
        if kind in ("stac", "openaerialmap"):
            from pipeline.sources.stac.options import option_problem

            stac_problem = option_problem(kind, options)
            if stac_problem:
                raise _err(path, name, f"key 'options.{stac_problem[0]}': {stac_problem[1]}")
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
