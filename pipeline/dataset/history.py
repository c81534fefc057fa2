"""Release history: which earlier release a build continues, and what it fixed (no Luigi here).

Policies
--------
* A release folder is a direct sub-folder of ``<data>/releases/`` that holds ``manifest.json``; names
  starting with ``.`` (unfinished atomic writes) are never releases.
* :func:`find_previous_release`: ``requested`` None or ``""`` means *auto*: the newest release *older* than
  ``current`` in natural version order (``v0.10.0`` after ``v0.9.0``), so rebuilding ``v0.1.0`` while
  ``v0.2.0`` exists never continues from ``v0.2.0``; ``"none"`` (any case) means no
  previous release; anything else names a release folder under the releases root, or a path to a release
  folder, which must hold ``manifest.json`` (else :class:`~pipeline.errors.PreviousReleaseNotFound` naming it).
* :func:`manifest_digest`: the first 12 hex digits of the SHA-256 of the manifest's bytes; dataset work
  files that depend on the previous release carry it in their name, so a changed previous release is
  never answered by a stale work file.
* :func:`previous_maps`: stable key (:func:`pipeline.dataset.ids.image_key`) -> split and -> id of every
  image of a manifest; the next build keeps both for images it releases again.
* Lineage: a release remembers the images its predecessors released that it does not (its manifest's
  ``retired``: key, id, split and the last release that shipped each, :func:`retired_images`), so an image
  dropped and released again later gets its id and split back, and a new image never gets an id that named
  another image anywhere in the lineage (ids are numbered after every id the lineage used).  Retired images
  carry their footprint (``crs``, ``bounds``; the record's ``places``, :func:`lineage_places`): a new image on
  one keeps its split (:mod:`pipeline.dataset.splits.lineage`).
* :func:`release_history`: those maps, the retired images and the release's name, kept in a small record
  named by the manifest's digest (:func:`remember_release`, written when a release is built; or by the first
  build that reads the manifest for them): a build continuing a 5,000-image release reads ~0.3 MB instead of
  parsing its 7.6 MB manifest twice (selection and split).  Named by the digest of the manifest's bytes, it can
  only describe that manifest; one that cannot be read, or was written before lineages (no ``retired``), is
  made again from the manifest.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.dataset.ids import image_key, natural_key
from pipeline.dataset.splits.leakage import finite_bounds
from pipeline.errors import BuildError, ConfigError, PreviousReleaseNotFound

MANIFEST = "manifest.json"
NONE = "none"


def release_names(releases_root: str | Path) -> list[str]:
    """Names of the complete release folders under ``releases_root``, in natural order (oldest first)."""
    root = Path(releases_root)
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()]
    return sorted(names, key=natural_key)


def find_previous_release(releases_root: str | Path, current: str, requested: str | None = None) -> Path | None:
    """The folder of the release that the release ``current`` continues, or None (module docstring)."""
    root = Path(releases_root)
    if requested is None or str(requested).strip() == "":
        names = [n for n in release_names(root) if natural_key(n) < natural_key(current)]
        return root / names[-1] if names else None
    requested = str(requested).strip()
    if requested.lower() == NONE:
        return None
    folder = root / requested
    if not (folder / MANIFEST).is_file() and ("/" in requested or Path(requested).is_absolute()):
        folder = Path(requested)
    if not (folder / MANIFEST).is_file():
        raise PreviousReleaseNotFound(f"previous_release {requested!r}: {folder / MANIFEST} does not exist")
    if folder.resolve() == (root / current).resolve():
        raise ConfigError(f"previous_release {requested!r} is the release being built ({current})")
    return folder


@functools.lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:12]


def manifest_digest(release_folder: str | Path) -> str:
    """12 hex digits of the SHA-256 of ``<release_folder>/manifest.json`` (cached per file version)."""
    p = Path(release_folder) / MANIFEST
    st = p.stat()
    return _digest(str(p), st.st_mtime_ns, st.st_size)


def load_manifest(release_folder: str | Path, digest: str | None = None) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a release folder; with ``digest`` (:func:`manifest_digest` taken
    earlier) a :class:`~pipeline.errors.BuildError` when the file has changed since."""
    path = Path(release_folder) / MANIFEST
    raw = path.read_bytes()
    if digest is not None and hashlib.sha256(raw).hexdigest()[:12] != digest:
        raise BuildError(f"{path} changed while this build ran (digest {digest}); run the build again")
    return atomic.parse_record(raw)


def previous_maps(manifest: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """``(key -> split, key -> id)`` over the images of ``manifest`` (both empty for None)."""
    splits: dict[str, str] = {}
    ids: dict[str, str] = {}
    for img in (manifest or {}).get("images", []) or []:
        key = image_key(img)
        splits[key] = img["split"]
        ids[key] = img["id"]
    return splits, ids


def _place(record: Mapping[str, Any]) -> list[Any] | None:
    """``[crs, x0, y0, x1, y1]`` of an image or retired record that has a CRS string and four finite bounds."""
    crs, bounds = record.get("crs"), finite_bounds(record.get("bounds"))
    return [crs, *bounds] if isinstance(crs, str) and bounds is not None else None


def release_maps(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The history record of ``manifest``: ``{"release": name, "images": {key: [id, split]}, "retired": {key:
    [id, split, last release]}, "places": {key: [crs, x0, y0, x1, y1]}}`` (``retired``: the manifest's, empty for a
    manifest without one; ``places``: the footprint of every image and retired image that has one, which the
    next release anchors new images on when it no longer ships these, :mod:`pipeline.dataset.splits.lineage`)."""
    splits, ids = previous_maps(manifest)
    retired = {str(r["key"]): [str(r["id"]), str(r["split"]), str(r["last_release"])]
               for r in manifest.get("retired") or []}
    places = {str(r["key"]): p for r in manifest.get("retired") or [] if (p := _place(r)) is not None}
    places.update({image_key(im): p for im in manifest.get("images", []) or [] if (p := _place(im)) is not None})
    return {"release": manifest.get("release"), "images": {k: [ids[k], splits[k]] for k in splits},
            "retired": retired, "places": places}


def retired_images(previous: str | None, splits: Mapping[str, str], ids: Mapping[str, str],
                   retired: Mapping[str, Sequence[str]], keys: Collection[str],
                   places: Mapping[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """The ``retired`` list of a release whose images have the stable keys ``keys``, continuing the release
    ``previous`` (its key -> split and key -> id maps, and its own ``retired``: key -> [id, split, last
    release]): every image of the lineage this release does not ship, as ``{"key", "id", "split",
    "last_release"}`` sorted by key (the images of ``previous`` last shipped there), with ``crs`` and ``bounds``
    where ``places`` (:func:`lineage_places`) has its footprint."""
    out = {k: list(v) for k, v in retired.items() if k not in keys}
    out.update({k: [ids[k], splits[k], str(previous)] for k in ids if k not in keys})
    places = places or {}
    return [{"key": k, "id": v[0], "split": v[1], "last_release": v[2],
             **({"crs": places[k][0], "bounds": list(places[k][1:])} if k in places else {})}
            for k, v in sorted(out.items())]


def remember_release(history_dir: str | Path, digest: str, manifest: Mapping[str, Any]) -> Path:
    """Write the history record of ``manifest`` (whose :func:`manifest_digest` is ``digest``) as
    ``<history_dir>/<digest>.json`` (compact JSON, atomically); returns its path."""
    return _write_record(Path(history_dir) / f"{digest}.json", release_maps(manifest))


def _write_record(path: Path, record: dict[str, Any]) -> Path:
    atomic.write_record(path, record)
    return path


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = atomic.read_record(path)
    except (OSError, ValueError):
        return None
    images = record.get("images") if isinstance(record, dict) else None
    retired = record.get("retired") if isinstance(record, dict) else None  # none: written before lineages
    places = record.get("places") if isinstance(record, dict) else None  # none: written before lineage places
    if not isinstance(places, dict):
        return None
    if not isinstance(images, dict) or not isinstance(retired, dict) or not all(
            isinstance(v, list) and len(v) == n and all(isinstance(x, str) for x in v)
            for values, n in ((images, 2), (retired, 3)) for v in values.values()):
        return None
    return record


def _history_record(folder: str | Path, digest: str, history_dir: str | Path | None) -> dict[str, Any]:
    path = Path(history_dir) / f"{digest}.json" if history_dir is not None else None
    record = _read_record(path) if path is not None and os.path.isfile(path) else None
    if record is None:
        record = release_maps(load_manifest(folder, digest))
        if path is not None:
            _write_record(path, record)
    return record


def lineage_places(folder: str | Path, digest: str, history_dir: str | Path | None = None
                   ) -> dict[str, list[Any]]:
    """key -> ``[crs, x0, y0, x1, y1]``: the footprints of the images and retired images of the release in
    ``folder`` (its history record's ``places``, :func:`release_maps`; read as :func:`release_history` reads it)."""
    places = _history_record(folder, digest, history_dir)["places"]
    return {str(k): v for k, v in places.items() if isinstance(v, list) and len(v) == 5 and isinstance(v[0], str)
            and all(isinstance(x, (int, float)) for x in v[1:])}


def release_history(folder: str | Path, digest: str, history_dir: str | Path | None = None
                    ) -> tuple[str | None, dict[str, str], dict[str, str], dict[str, list[str]]]:
    """``(release name, key -> split, key -> id, retired: key -> [id, split, last release])`` of the release in
    ``folder`` whose manifest has digest ``digest``: from its history record in ``history_dir`` when there (module
    docstring), else from the manifest (:func:`load_manifest`: a :class:`~pipeline.errors.BuildError` when it
    changed since), leaving the record for the next reader."""
    record = _history_record(folder, digest, history_dir)
    images = record["images"]
    name = record.get("release")
    return (str(name) if name else None, {k: v[1] for k, v in images.items()}, {k: v[0] for k, v in images.items()},
            dict(record["retired"]))
