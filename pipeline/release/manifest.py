"""The release manifest (``manifest.json``), split files and checksums.

Policies
--------
* ``manifest.json`` follows ``pipeline/schemas/manifest.schema.json`` (JSON Schema 2020-12,
  ``schema_version`` :data:`SCHEMA_VERSION`).  :func:`build_manifest` assembles it, normalises values to
  plain JSON types (tuples -> lists, NumPy scalars -> Python numbers) and refuses to return a manifest
  that does not validate (:class:`ManifestError` lists every schema problem).
* Everything is sorted: images by id in natural order (``austin_2`` before ``austin_10``), sources by
  name, files by path, split-file lines in natural order, so equal inputs give byte-identical output.
* All paths inside the manifest are POSIX paths relative to the release folder.
* Split files (``train.txt``, ``val.txt``, ``test.txt``) hold the bare image file names (``austin_1.tif``),
  one per line, each line ``"\\n"``-terminated, no blank or comment lines, as the official OpenEarthMap
  loader expects; an empty split gives an empty file.  They are written atomically.
* Checksums are SHA-256 of the file bytes, lower-case hex, read in 1 MiB chunks.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Collection, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import jsonschema

from pipeline.atomic import write_text
from pipeline.constants import CLASS_COLORS, CLASS_NAMES, SPLITS
from pipeline.dataset.ids import natural_key
from pipeline.errors import ManifestError

SCHEMA_VERSION = "1.0"
SPLIT_FILES: dict[str, str] = {s: f"{s}.txt" for s in SPLITS}
_CHUNK = 1 << 20

#: Fields of one image record, all required by the schema (see ``$defs/image``).
IMAGE_FIELDS: tuple[str, ...] = (
    "id", "image", "label", "region", "country", "country_code", "continent", "source", "source_kind",
    "source_scene_id", "tile", "license", "attribution", "native_gsd", "native_crs", "crs", "gsd",
    "transform", "width", "height", "bounds", "bounds_lonlat", "split", "sha256_image", "sha256_label",
    "class_pixels", "unlabelled_pixels", "segments", "edge_segments", "segments_total", "acquired",
)
#: Optional fields of one image record, kept when the caller's record has them: the stable key across
#: releases (``<source>~<scene id>~<tile id>``, :mod:`pipeline.labels.keys`), the leakage group (see
#: :mod:`pipeline.dataset.splits.leakage`) and the retired image whose place and split a new image keeps
#: (:mod:`pipeline.dataset.splits.lineage`), and the split the image has in the benchmark it comes from (an
#: OpenEarthMap-layout source's split files: :mod:`pipeline.sources.adapters.openearthmap`), which it keeps.
IMAGE_OPTIONAL_FIELDS: tuple[str, ...] = ("key", "group", "same_place_as", "upstream_split")
#: Optional top-level sections: the release this one follows, the tile selection record, UDA splits.
OPTIONAL_SECTIONS: tuple[str, ...] = ("previous_release", "selection", "uda", "summary", "zones")
#: Fields of one source entry.
SOURCE_FIELDS: tuple[str, ...] = ("name", "kind", "license", "attribution", "location")


#: The errors ``Path.is_file`` answers False for (no such file, a path through a file, a loop): others propagate.
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def file_size(root: str | Path, rel: str) -> int | None:
    """Size of the regular file ``<root>/<rel>`` (symlinks followed), None when there is none, exactly where
    ``Path.is_file`` says False: one ``stat`` of a string, no path objects (a release names ~10,000 files so)."""
    try:
        st = os.stat(f"{os.fspath(root)}/{rel}")
    except ValueError:  # an embedded NUL
        return None
    except OSError as exc:
        if exc.errno in _NOT_THERE:
            return None
        raise
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def load_schema() -> dict[str, Any]:
    """The manifest JSON Schema shipped as package data ``pipeline/schemas/manifest.schema.json``."""
    text = resources.files("pipeline").joinpath("schemas", "manifest.schema.json").read_text("utf-8")
    return json.loads(text)


def format_json_path(path: Iterable[Any]) -> str:
    """``["images", 3, "license"]`` -> ``images[3].license``; non-identifier keys as ``["1"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _schema_errors(manifest: Any, schema: dict[str, Any], skip_images: Collection[int],
                   skip_files: Collection[int] = ()) -> list[Any]:
    """The schema errors of ``manifest``, the ``images`` and ``files`` members at the indices ``skip_images`` and
    ``skip_files`` left out (each other member validated against its array's item schema, its path
    ``images[i]...`` / ``files[i]...`` restored; neither array has a constraint across members)."""
    validator = jsonschema.Draft202012Validator(schema)
    skips = {"images": skip_images, "files": skip_files}
    members = {k: manifest.get(k) for k in skips} if isinstance(manifest, dict) else {}
    left = {k: v for k, v in members.items() if skips[k] and isinstance(v, list)}
    if not left:
        return list(validator.iter_errors(manifest))
    errors = list(validator.iter_errors({**manifest, **{k: [] for k in left}}))
    defs = schema.get("$defs", {})
    for key, values in left.items():
        sub = {"$ref": "#/$defs/image"} if key == "images" else schema["properties"][key]["items"]
        one = jsonschema.Draft202012Validator({"$defs": defs, **sub})
        for i, value in enumerate(values):
            if i in skips[key]:
                continue
            for err in one.iter_errors(value):
                err.path.extendleft([i, key])  # absolute_path = images[i]... / files[i]...
                errors.append(err)
    return errors


def schema_problems(manifest: Any, schema: dict[str, Any] | None = None, *,
                    skip_images: Collection[int] = (), skip_files: Collection[int] = ()) -> list[str]:
    """Every JSON-Schema error of ``manifest`` as ``"<path>: <message>"`` (or ``"<message>"`` at the root).

    Sorted by path (array indices numerically), then message, so the output is deterministic.
    ``skip_images`` / ``skip_files``: indices of ``images`` / ``files`` members known to be valid (the incremental
    check of :mod:`pipeline.release.validate.incremental`), not validated again; the problems of the others are
    the same.
    """
    errors = _schema_errors(manifest, schema if schema is not None else load_schema(), skip_images, skip_files)

    def key(err: jsonschema.ValidationError) -> tuple:
        return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in err.absolute_path), err.message

    lines = []
    for err in sorted(errors, key=key):
        where = format_json_path(err.absolute_path)
        lines.append(f"{where}: {err.message}" if where else err.message)
    return lines


_LEAVES = (str, int, float, bool, type(None))


def _plain(obj: Any) -> Any:
    """Convert to plain JSON types: tuples -> lists, NumPy scalars/arrays -> Python values, Paths -> str."""
    kind = type(obj)
    if kind in _LEAVES:  # exact types first: a manifest converts ~400,000 values, nearly all of them plain
        return obj
    if kind is dict:  # leaves inline: no call per plain value
        return {k if type(k) is str else str(k): v if type(v) in _LEAVES else _plain(v) for k, v in obj.items()}
    if kind is list:
        return [v if type(v) in _LEAVES else _plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy scalar or array
        return _plain(obj.tolist())
    return obj


def class_table() -> list[dict[str, Any]]:
    """The 8 classes as ``{"id", "name", "color"}`` with ``color`` lower-case ``rrggbb`` hex."""
    return [
        {"id": c, "name": CLASS_NAMES[c], "color": "".join(f"{v:02x}" for v in CLASS_COLORS[c])}
        for c in sorted(CLASS_NAMES)
    ]


def manifest_images(images: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's ``images``: each record reduced to :data:`IMAGE_FIELDS` plus the
    :data:`IMAGE_OPTIONAL_FIELDS` it has, as plain JSON values, in natural id order."""
    recs = [_plain({k: img[k] for k in IMAGE_FIELDS + IMAGE_OPTIONAL_FIELDS if k in img}) for img in images]
    recs.sort(key=lambda r: natural_key(str(r.get("id", ""))))
    return recs


def manifest_sources(sources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's ``sources`` (:func:`build_manifest`), sorted by name."""
    src = []
    for s in sources:
        entry: dict[str, Any] = {k: s[k] for k in ("name", "kind", "license") if k in s}
        entry.update({k: s.get(k, "") for k in ("attribution", "location")})
        if s.get("acquired_range"):
            entry["acquired_range"] = list(s["acquired_range"])
        if s.get("citation"):  # the publication the upstream dataset asks to be cited
            entry["citation"] = str(s["citation"])
        if s.get("failed"):  # left out of a partial release: where and why its fetch failed
            entry["failed"] = {k: str(v) for k, v in s["failed"].items() if k in ("stage", "file", "reason")}
        src.append(_plain(entry))
    src.sort(key=lambda s: str(s.get("name", "")))
    return src


def build_manifest(
    *,
    release: str,
    created_with: dict[str, Any],
    sources: list[dict[str, Any]],
    images: list[dict[str, Any]],
    splits_info: list[dict[str, Any]],
    files: list[dict[str, Any]] | None = None,
    previous_release: str | None = None,
    selection: dict[str, Any] | None = None,
    uda: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    valid_images: Sequence[dict[str, Any]] = (),
    retired: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble the manifest and check it against the schema.

    ``created_with`` is copied as given (it must hold at least ``seed, target_gsds, tile_size,
    max_nodata_fraction, resampling, code_version`` and ``split: {"ratios", "trials"[, "seed"]}``; other
    keys, e.g. a parameter fingerprint, are allowed).  Each source is reduced
    to ``name, kind, license, attribution, location`` (the last two default to ``""``) and its
    ``acquired_range`` when given (:func:`pipeline.sources.adapters.acquired_range`) and its upstream ``citation``
    when it has one (:func:`pipeline.sources.adapters.upstream_citation`); each image
    record to :data:`IMAGE_FIELDS` plus the :data:`IMAGE_OPTIONAL_FIELDS` it has (other keys of the
    caller's records are dropped, missing required ones are schema errors).  ``splits`` counts images per
    split; ``splits.regions`` is ``splits_info`` sorted by
    region.  ``files`` (optional, from :func:`file_entries`) lists other release files.
    ``previous_release`` (the release this one keeps splits from), ``selection`` (free-form record of the
    tile selection), ``uda`` (:func:`pipeline.dataset.splits.uda.uda_section`) and ``summary``
    (:func:`pipeline.release.summary.release_summary`) are added when not None; ``retired`` (the images of the
    lineage this release does not ship, :func:`pipeline.dataset.history.retired_images`) when not empty.

    ``valid_images``: image records known to follow the schema (those of a validated previous release checked by
    the same code, :mod:`pipeline.release.validate.incremental`); a record equal to one of them is not
    validated again.
    Raises :class:`ManifestError` when the result does not follow the schema.
    """
    recs = manifest_images(images)
    src = manifest_sources(sources)
    counts = {s: sum(1 for r in recs if r.get("split") == s) for s in SPLITS}
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "release": release,
        "created_with": _plain(dict(created_with)),
        "classes": class_table(),
        "sources": src,
        "splits": {**counts, "regions": _plain(sorted(splits_info, key=lambda d: str(d.get("region", ""))))},
        "images": recs,
    }
    if files is not None:
        manifest["files"] = _plain(sorted(files, key=lambda d: str(d.get("path", ""))))
    for name, value in (("previous_release", previous_release), ("selection", selection), ("uda", uda),
                        ("summary", summary)):
        if value is not None:
            manifest[name] = _plain(value)
    if retired:
        manifest["retired"] = _plain(sorted(retired, key=lambda d: str(d.get("key", ""))))
    known = {r.get("id"): r for r in valid_images if isinstance(r, dict)}
    problems = schema_problems(manifest, skip_images={i for i, r in enumerate(recs) if known.get(r.get("id")) == r})
    if problems:
        raise ManifestError(problems)
    return manifest


def split_lines(images: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}``: image file basenames per split, natural order."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for img in images:
        split = img["split"]
        if split not in out:
            raise ValueError(f"image {img.get('id')!r}: unknown split {split!r}")
        out[split].append(file_name(img["image"]))
    for s in SPLITS:
        names = out[s]
        if len(set(names)) != len(names):
            raise ValueError(f"{SPLIT_FILES[s]}: duplicate file names")
        names.sort(key=natural_key)
    return out


def write_split_files(release_dir: Path, images: list[dict[str, Any]]) -> None:
    """Write ``train.txt``, ``val.txt``, ``test.txt`` in ``release_dir`` (atomically, one name a line).

    Each line is the basename of the image path (``austin_1.tif``) terminated by ``"\\n"``; names are in
    natural order; an empty split gives an empty file.
    """
    for split, names in split_lines(images).items():
        write_text(Path(release_dir) / SPLIT_FILES[split], "".join(f"{n}\n" for n in names))


def file_entries(release_dir: Path, rel_paths: Iterable[str | Path],
                 known: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``[{"path", "sha256", "bytes"}]`` for files inside ``release_dir``, sorted by path.

    ``rel_paths`` are relative to ``release_dir``; absolute paths, ``..`` components and duplicates are
    refused (ValueError), as are missing files (FileNotFoundError).  ``known``: path -> entry of a file that is
    a hard link of a file of a validated release with that entry (a reused STAC item); the entry is taken, not
    hashed again, when the size still matches.
    """
    root = os.fspath(release_dir)
    out: dict[str, dict[str, Any]] = {}
    for rel in rel_paths:
        key = _entry_path(rel)
        if key in out:
            raise ValueError(f"{rel}: listed twice")
        full = f"{root}/{key}"  # a string, not a Path: a release lists ~5,000 STAC items
        size = file_size(root, key)
        if size is None:
            raise FileNotFoundError(f"{full}: missing")
        before = (known or {}).get(key)
        sha = before["sha256"] if before is not None and before.get("bytes") == size else sha256_file(full)
        out[key] = {"path": key, "sha256": sha, "bytes": size}
    return [out[k] for k in sorted(out)]


def _entry_path(rel: str | Path) -> str:
    """``rel`` as the POSIX path a ``files`` entry names (ValueError when it is not inside the release folder);
    a plain ``a/b/c`` string is taken as it is, without a path object."""
    if isinstance(rel, str) and "\\" not in rel:
        parts = rel.split("/")
        if "" not in parts and "." not in parts and ".." not in parts:
            return rel
    p = PurePosixPath(Path(rel).as_posix())
    if p.is_absolute() or any(part in ("..", ".") for part in p.parts) or not p.parts:
        raise ValueError(f"{rel}: not a path inside the release folder")
    return p.as_posix()


#: Folder of the unsupervised-domain-adaptation split files in a release.
UDA_DIR = "uda"


def file_name(path: str) -> str:
    """``PurePosixPath(path).name``, without making a path object for the usual ``<region>/images/<id>.tif``
    (a release names its 5,000 images so several times)."""
    name = path.rpartition("/")[2]
    return name if name and name not in (".", "..") else PurePosixPath(path).name


def continent_slug(continent: str) -> str:
    """``"North America"`` -> ``"north_america"`` (lower case, runs of other characters -> ``_``)."""
    return re.sub(r"[^a-z0-9]+", "_", continent.lower()).strip("_")


def uda_lines(images: Sequence[dict[str, Any]], uda: dict[str, Any]) -> dict[str, list[str]]:
    """The UDA split files implied by a manifest's ``uda`` section, ``{release-relative path: names}``.

    ``uda/regional_source.txt`` / ``uda/regional_target.txt`` list the images of the regions that
    ``uda["regional"]`` puts in that domain; for every continent of ``uda["continent"]``,
    ``uda/continent_<slug>_source.txt`` / ``_target.txt`` list the images of its ``source`` / ``target``
    regions.  Every split (train, val, test) of a region is listed; names are bare image file names
    (``austin_1.tif``) in natural order, as in the split files."""
    by_region: dict[str, list[str]] = {}
    for img in images:
        by_region.setdefault(img["region"], []).append(file_name(img["image"]))

    def names(regions: Iterable[str]) -> list[str]:
        return sorted((n for r in set(regions) for n in by_region.get(r, [])), key=natural_key)

    out: dict[str, list[str]] = {}
    regional = uda.get("regional") or {}
    for domain in ("source", "target"):
        out[f"{UDA_DIR}/regional_{domain}.txt"] = names(r for r, d in regional.items() if d == domain)
    for continent, sides in sorted((uda.get("continent") or {}).items()):
        for domain in ("source", "target"):
            out[f"{UDA_DIR}/continent_{continent_slug(continent)}_{domain}.txt"] = names(sides.get(domain, []))
    return dict(sorted(out.items()))


def write_uda_files(release_dir: Path, images: list[dict[str, Any]], uda: dict[str, Any]) -> list[str]:
    """Write the files of :func:`uda_lines` in ``release_dir`` (atomically, one name a line, ``"\\n"``
    after each, an empty domain gives an empty file); returns their release-relative paths."""
    files = uda_lines(images, uda)
    for rel, names in files.items():
        write_text(Path(release_dir) / rel, "".join(f"{n}\n" for n in names))
    return list(files)
