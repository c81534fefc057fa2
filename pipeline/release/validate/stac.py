"""Offline validation of a release's STAC catalog.

The JSON schemas needed to validate the catalog ship in ``pipeline/schemas/stac/``: the STAC 1.1.0 core
(item, collection, catalog and their parts), GeoJSON ``Feature``/``Geometry``, the projection v1.2.0 (and
v2.0.0) and label v1.0.1 extension schemas and the JSON-Schema draft-07 meta-schema; ``schema-map.json`` maps each
canonical URL to its file.  :func:`validate_stac` validates the collection and every item against them
with ``jsonschema`` (no network), and checks that every item's assets exist.  The same map works with
the ``stac-validator`` CLI::

    stac-validator validate --recursive --schema-config pipeline/schemas/stac/schema-map.json \
        data/releases/<version>/stac/collection.json

and in Python ``StacValidate(path, recursive=True, schema_map=pipeline.release.validate.stac.schema_map())``.
"""
from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline import forked
from pipeline.atomic import compact_json
from pipeline.dataset.ids import natural_key
from pipeline.release.manifest import file_size
from pipeline.release.stac import COLLECTION, STAC_DIR, STAC_VERSION

_SCHEMA_PACKAGE_DIR = ("schemas", "stac")


def schema_dir() -> Path:
    """The folder of the shipped STAC JSON schemas (``pipeline/schemas/stac``)."""
    return Path(str(resources.files("pipeline").joinpath(*_SCHEMA_PACKAGE_DIR)))


def schema_map() -> dict[str, str]:
    """Canonical schema URL -> absolute path of the shipped copy (for ``stac-validator``'s ``schema_map``)."""
    d = schema_dir()
    raw = json.loads((d / "schema-map.json").read_text("utf-8"))["schemas"]
    return {url: str((d / rel).resolve()) for url, rel in raw.items()}


@lru_cache(maxsize=1)
def _registry():
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    resources_ = []
    for url, path in schema_map().items():
        contents = json.loads(Path(path).read_text("utf-8"))
        resources_.append((url, Resource.from_contents(contents, default_specification=DRAFT7)))

    def missing(uri: str):
        from referencing.exceptions import NoSuchResource

        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs alias mypy does not see; offline by design

    return Registry(retrieve=missing).with_resources(resources_)  # type: ignore[call-arg]  # attrs alias


@lru_cache(maxsize=64)
def _validator(schema_url: str):
    """One validator per schema, reused for every object (it keeps the ``$ref`` targets it resolved: 5,052 items
    26.5 -> 24.6 s)."""
    import jsonschema

    registry = _registry()
    return jsonschema.Draft7Validator(registry.contents(schema_url), registry=registry)


def _schema_problems(rel: str, obj: dict[str, Any], schema_url: str, links: Sequence[int] | None = None) -> list[str]:
    """``links``: the index in the original object of each member of ``obj["links"]`` (when some were left out)."""

    def path(err) -> list:
        p = list(err.absolute_path)
        if links is not None and len(p) > 1 and p[0] == "links" and isinstance(p[1], int):
            p[1] = links[p[1]]
        return p

    try:
        validator = _validator(schema_url)
    except Exception:  # noqa: BLE001
        return [f"{rel}: schema {schema_url} is not available offline (not in pipeline/schemas/stac)"]
    try:
        errors = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, path(e))), e.message))
    except Exception as exc:  # noqa: BLE001  (an unresolvable $ref)
        return [f"{rel}: cannot validate against {schema_url} ({exc})"]
    name = schema_url.rsplit("/", 3)[-3] if "stac-extensions" in schema_url else "core"
    out = []
    for err in errors:
        leaves = _leaf_errors(err)
        for leaf in leaves:
            where = "/".join(str(p) for p in path(leaf))
            line = f"{rel}: {name}: {where + ': ' if where else ''}{leaf.message[:300]}"
            if line not in out:
                out.append(line)
    return out


def _leaf_errors(err) -> list:
    """The most specific errors under ``err`` (through ``oneOf``/``anyOf``/``allOf`` contexts), leaving out
    the branches meant for another kind of object (those failing on ``type``, e.g. the Collection branch
    of an extension schema when an Item is checked), so messages name the offending fields."""
    if not err.context:
        return [err]
    branches: dict[Any, list] = {}
    for e in err.context:
        branches.setdefault(e.relative_schema_path[0] if e.relative_schema_path else None, []).append(e)

    def wrong_kind(errs: list) -> bool:
        return any(e.validator == "const" and list(e.relative_path) == ["type"] for e in errs)

    kept = [errs for errs in branches.values() if not wrong_kind(errs)] or list(branches.values())
    out = []
    for errs in kept:
        for e in errs:
            out.extend(_leaf_errors(e))
    return out


def _core_schema(obj: dict[str, Any]) -> str:
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(str(obj.get("type")), "item")
    version = obj.get("stac_version", STAC_VERSION)
    return f"https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"


def link_key(link: Any) -> str:
    """A link object as canonical JSON (how known-valid links are named)."""
    return compact_json(link)


def validate_stac_object(rel: str, obj: dict[str, Any], known_links: Collection[str] = ()) -> list[str]:
    """Schema problems of one STAC object (core schema + each of its ``stac_extensions``), offline.
    ``known_links``: link objects (:func:`link_key`) known to follow the schemas (the links of a validated
    previous release's collection, :mod:`pipeline.release.validate.incremental`); the schemas constrain links
    one by one, so leaving those out of the check changes no problem (paths keep the original indices)."""
    links, index = obj.get("links"), None
    if known_links and isinstance(links, list):
        index = [i for i, link in enumerate(links) if link_key(link) not in known_links]
        obj = {**obj, "links": [links[i] for i in index]}
    out = _schema_problems(rel, obj, _core_schema(obj), index)
    for ext in obj.get("stac_extensions") or []:
        out.extend(_schema_problems(rel, obj, str(ext), index))
    return out


def _items_problems(root: Path, collection: dict[str, Any], hrefs: Sequence[str],
                    trusted: Collection[str]) -> tuple[list[str], list[str]]:
    """The problems of the items the collection's item links ``hrefs`` name, and the ids seen (in link order);
    a trusted item is not read (its id is its file's name)."""
    out: list[str] = []
    seen: list[str] = []
    for href in hrefs:
        rel = posixpath.normpath(posixpath.join(STAC_DIR, href))
        if rel in trusted and file_size(root, rel) is not None:
            seen.append(posixpath.basename(rel).removesuffix(".json"))  # not read again: module docstring of
            continue  # pipeline.release.validate.incremental
        item = _read_item(root, href)
        if isinstance(item, str):
            out.append(item)
            continue
        out.extend(validate_stac_object(rel, item))
        seen.append(str(item.get("id")))
        if item.get("collection") != collection.get("id"):
            out.append(f"{rel}: collection {item.get('collection')!r}, expected {collection.get('id')!r}")
        assets = item.get("assets") or {}
        for key in ("image", "label"):
            a = assets.get(key)
            if not isinstance(a, dict):
                out.append(f"{rel}: no {key} asset")
                continue
            ahref = str(a.get("href", ""))
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), ahref))
            if "://" in ahref or ahref.startswith("/") or target.startswith("..") or not (root / target).is_file():
                out.append(f"{rel}: {key} asset {ahref} does not name a file of the release")
    return out, seen


def _read_item(root: Path, href: str) -> dict[str, Any] | str:
    """The item a collection's item link names (its JSON), or the problem line saying why it cannot be read."""
    if "://" in href or href.startswith("/"):
        return f"{COLLECTION}: item link {href} is not relative"
    rel = posixpath.normpath(posixpath.join(STAC_DIR, href))
    ipath = root / rel
    if not ipath.is_file():
        return f"{rel}: missing (linked from {COLLECTION})"
    try:
        item = json.loads(ipath.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{rel}: not valid JSON ({exc})"
    return item if isinstance(item, dict) else f"{rel}: not a JSON object"


#: Items to read and check from which :func:`validate_stac` with ``concurrent`` checks the second half of them in
#: a forked process (a build's few new items are checked in its own).
CONCURRENT_ITEMS = 64


def validate_stac(release_dir: str | Path, *, expected_ids: Iterable[str] | None = None,
                  trusted: Collection[str] = (), known_links: Collection[str] = (),
                  concurrent: bool = False) -> list[str]:
    """Problems of the release's STAC catalog (``[]`` = valid), each ``"<release-relative file>: ..."``:
    the collection and every item linked from it follow the STAC core and extension schemas (offline,
    see the module docstring), every item's ``image`` and ``label`` assets exist, items belong to the
    collection, and (with ``expected_ids``) there is exactly one item per expected image id.  Items whose
    release-relative file is in ``trusted`` (:mod:`pipeline.release.validate.incremental`) are not read again
    (their id is their file's name), and the collection's links in ``known_links`` skip the schema check
    (:func:`validate_stac_object`).  ``concurrent``: the second half of the items (from
    :data:`CONCURRENT_ITEMS` items on) is checked in a forked process (:mod:`pipeline.forked`) while this one
    checks the first half (the schema check of a 5,000-image catalog takes ~25 s); the problems are the same, in
    the same order."""
    root = Path(release_dir)
    path = root / COLLECTION
    if not path.is_file():
        return [f"{COLLECTION}: missing"]
    try:
        collection = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{COLLECTION}: not valid JSON ({exc})"]
    links = [str(link.get("href", "")) for link in collection.get("links", []) if link.get("rel") == "item"]
    half = len(links) // 2 if concurrent and len(links) - len(trusted) >= CONCURRENT_ITEMS else len(links)
    with (forked.start if half < len(links) else forked.done)(_items_problems, root, collection, links[half:],
                                                               trusted) as second:
        out = validate_stac_object(COLLECTION, collection, known_links)
        first, seen = _items_problems(root, collection, links[:half], trusted)
        more, seen_more = second.result()
    out += first + more
    seen += seen_more
    if expected_ids is not None:
        want = sorted(expected_ids, key=natural_key)
        counts = Counter(seen)
        dup = sorted((i for i, n in counts.items() if n > 1), key=natural_key)
        missing = sorted(set(want) - set(seen), key=natural_key)
        extra = sorted(set(seen) - set(want), key=natural_key)
        kinds = (("duplicate items", dup), ("no item for images", missing), ("items for unknown images", extra))
        for what, ids in kinds:
            if ids:
                out.append(f"{COLLECTION}: {what}: {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}")
    return out
