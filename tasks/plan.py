"""What the root of a build computes once, from ``[PipelineConfig]``, ``sources.yaml`` and the data folder, and
passes down as significant Luigi parameters (see ``tasks.params``):

* per enabled source ``[name, raw, catalog]``: ``raw`` = 12 hex digits over the source's ``sources.yaml``
  entry (kind, location, options, licence, attribution: :func:`pipeline.sources.object_store.source_digest`,
  also the raw cache's key), the fetch code and, for a local path (read in place), the path, size and
  modification time of its files (one walk, nothing read); ``catalog`` = 12 hex digits over ``raw`` and the
  catalog code.
* the code versions of the stages (:mod:`tasks.versions`);
* the *annotation index*: every completed annotation file in ``<annotation>/done/`` with the SHA-256 of its
  bytes, found with one listing of the folder; a file is hashed only when its (size, mtime_ns, inode) is not
  in the persisted cache ``<data>/work/annotations/hashes.json``.  The index is stored content-addressed as
  ``<data>/work/annotations/index-<digest>.json`` and passed as its digest; per-scene digests are derived
  from it without touching the files (:meth:`AnnotationIndex.scene`);
* the previous release (``previous_release``: by default the newest release older than the one being built)
  and the digest of its ``manifest.json``.

Tasks check at run time that what they read still matches the digests they were scheduled with
(:func:`verified_sources`, ``LabelScene``), and fail with :class:`pipeline.errors.BuildError` when it does not.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import BuildError, SourcesError
from pipeline.sources.config import SourceConfig, load_sources
from tasks import versions
from tasks.config import cfg
from tasks.scenekey import SceneKeys, fetched_checksums

#: Stages whose versions the dataset tasks carry (they name the per-scene outputs they read, and their own).
POOL_CODES = ("prepare", "tile", "label", "count", "dataset")


def _h(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def source_digests(src: SourceConfig, codes: dict[str, str], *, labels: bool = True) -> tuple[str, str]:
    """``(raw, catalog)`` digests of one source (module docstring), the limits on hostile input included (which
    files a fetch skips and a catalog rejects as over a limit: :func:`limits_digest`), the catalog's with the
    options that choose the scenes it keeps (``options.licences``: :data:`pipeline.sources.options.SELECT_OPTIONS`,
    no part of the raw digest); without what only labels or chooses its images (licence, attribution, region,
    acquisition-range and licences options) nor the limits when ``labels`` is false (what a scene's pixels are made
    from: :func:`scene_keys`)."""
    from pipeline.sources.object_store import source_digest
    from pipeline.sources.options import selection

    raw = _h("raw", source_digest(src, labels=labels), codes["fetch"], *_local_files(src),
             *([limits_digest(src)] if labels else []))
    chosen = selection(src.options) if labels else {}  # which scenes the catalog keeps (options.licences)
    return raw, _h("catalog", raw, codes["catalog"], *([chosen] if chosen else []))


#: The limits on hostile input that decide what a complete fetch and catalog hold (which files or items are
#: skipped or rejected); not those on time, rate and redirects, whose breach fails the fetch (it is tried again,
#: resuming its transfers in the same raw folder) and sources_max_bytes (the sources file itself).
KEYED_LIMITS = ("allow_private_networks", "allowed_networks", "download_max_bytes", "response_max_bytes",
                "archive_max_bytes", "archive_max_entries", "archive_max_ratio", "local_file_max_bytes",
                "sidecar_max_bytes")
#: Those of :data:`KEYED_LIMITS` that only a source reached over the network (or a STAC catalog, whose assets may
#: be) meets: a local folder or archive is not fetched again when they change.
NETWORK_LIMITS = ("allow_private_networks", "allowed_networks", "download_max_bytes", "response_max_bytes")


def limits_digest(src: SourceConfig) -> str:
    """12 hex digits over this build's :data:`KEYED_LIMITS` that source ``src`` meets (:func:`tasks.config.limits`):
    they decide which files its fetch skips or refuses and which scenes its catalog rejects, so a fetch and
    catalog made under other limits are not this build's (a file rejected as over ``local_file_max_bytes``
    stayed rejected after the limit was raised)."""
    from tasks.config import limits

    values = limits()
    local = src.scheme == "file" and src.kind not in ("stac", "openaerialmap")
    return _h("limits", {name: getattr(values, name) for name in KEYED_LIMITS
                         if not (local and name in NETWORK_LIMITS)})


def _folder_read_in_place(src: SourceConfig) -> str | None:
    """The absolute path of the local folder a source is read from in place (None: another location)."""
    if src.location and src.scheme == "file" and os.path.isdir(os.path.expanduser(src.location)):
        return os.path.abspath(os.path.expanduser(src.location))
    return None


def _local_files(src: SourceConfig) -> list[str]:
    """``[stamp]`` of a source read in place from a local path (its files' paths, sizes and times:
    :func:`pipeline.sources.localfs.location_stamp`), so that editing a file there makes the source new;
    ``[]`` for a downloaded or generated one (its ``sources.yaml`` entry says what it is)."""
    from pipeline.sources.localfs import location_stamp

    return [location_stamp(src.location)] if src.location and src.scheme == "file" else []


def scene_keys(sources_file: str | Path, name: str, catalog: str, raw: str,
               fetched: Callable[[], Mapping[str, str]] | None = None) -> SceneKeys:
    """How the scenes of source ``name`` are keyed (:mod:`tasks.scenekey`): a folder read in place by its files'
    stamps, a downloaded or generated source by the checksums of its fetch record (``raw``: its raw digest), both
    from the digest of the entry without what only labels its images (licence, attribution,
    ``options.region``/``regions``/``acquired_range``; a folder's own place left out too), so correcting those in
    ``sources.yaml``, or a change to the fetch or catalog code that gives the same records and bytes, redoes no
    pixel work.  The fallback (a scene whose files lie elsewhere or are not listed): the given ``catalog`` for a
    folder read in place, else the catalog digest without those labels (:func:`source_digests`).  ``fetched``
    gives the checksums of the source's fetch record (default: read from it)."""
    from pipeline.sources.object_store import source_digest
    from tasks.config import raw_dir

    for src in load_sources(sources_file, max_bytes=_sources_max_bytes()):
        if src.name != name:
            continue
        folder = _folder_read_in_place(src)
        if folder is not None:  # its scenes: each keyed by its own files
            return SceneKeys(catalog, folder, _h("scene-base", source_digest(src, labels=False, where=False)))
        files = raw_dir(name, raw) / "files"
        return SceneKeys(source_digests(src, versions.code_versions(), labels=False)[1], str(files),
                         _h("scene-base-fetched", source_digest(src, labels=False)),
                         fetched() if fetched is not None else fetched_checksums(files.parent / "fetch.json"))
    return SceneKeys(catalog)


def sources_param(sources_file: str | Path, *, max_bytes: int | None = None) -> list[list[str]]:
    """``[[name, raw, catalog], ...]`` of the enabled sources, in file order (a sources file over ``max_bytes``
    is refused: :func:`pipeline.sources.config.load_sources`)."""
    codes = versions.code_versions()
    return [[s.name, *source_digests(s, codes)] for s in load_sources(sources_file, max_bytes=max_bytes)
            if s.enabled]


def written_folder_problems(sources_file: str | Path, written: dict[str, Path], *, max_bytes: int | None = None
                            ) -> list[str]:
    """One line per enabled source read in place from a local folder that holds a folder builds write to
    (``written``: e.g. ``{"data folder": ..., "annotation folder": ...}``): every build writes there, so the
    source's stamp (``_local_files``) changed under every build and each failed with "source changed since this
    build was scheduled; run the build again", however often it was run (and the releases, work tiles or
    pre-annotations written there were read as scenes)."""
    out = []
    for src in load_sources(sources_file, max_bytes=max_bytes):
        in_place = _folder_read_in_place(src) if src.enabled else None
        if in_place is None:
            continue
        folder = os.path.realpath(in_place)
        for what, path in written.items():
            here = os.path.realpath(path)
            if os.path.commonpath([folder, here]) == folder:
                out.append(f"source '{src.name}': its folder {folder} holds the {what} {here}, where every build "
                           f"writes (what is written there would be read as scenes); put the {what} elsewhere or "
                           f"point the source at a folder without it")
    return out


def _sources_max_bytes() -> int:
    return int(cfg().sources_max_bytes)


def verified_source(sources_file: str | Path, name: str, raw: str, catalog: str | None = None) -> SourceConfig:
    """The entry of source ``name``, checked against the ``raw`` (and ``catalog``) digests the task was scheduled
    with."""
    for s in load_sources(sources_file, max_bytes=_sources_max_bytes()):
        if s.name == name:
            got = source_digests(s, versions.code_versions())
            if got[0] != raw or (catalog is not None and got[1] != catalog):
                raise BuildError(f"{sources_file}: source '{name}' changed since this build was scheduled "
                                 f"(digest {'/'.join(got)}, scheduled {raw}/{catalog or got[1]}); run the build again")
            return s
    raise SourcesError(f"{sources_file}: no source named '{name}'")


def verified_sources(sources_file: str | Path, sources: Sequence) -> list[SourceConfig]:
    return [verified_source(sources_file, name, raw, catalog) for name, raw, catalog in sources]


# --------------------------------------------------------------------------------------------- annotations

def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def annotation_files(done_dir: Path) -> list[os.DirEntry]:
    """The completed annotation files of ``done_dir`` (one listing; none when the folder is absent)."""
    from pipeline.labels.annotations.importer import ANNOTATION_SUFFIXES

    try:
        entries = list(os.scandir(done_dir))
    except FileNotFoundError:
        return []
    return sorted((e for e in entries if e.is_file() and Path(e.name).suffix.lower() in ANNOTATION_SUFFIXES),
                  key=lambda e: e.name)


#: Read-only mode (``python -m pipeline plan``): nothing is written; stored indexes are kept in memory instead.
_READ_ONLY: dict[str, Any] = {"on": False, "indexes": {}}


@contextlib.contextmanager
def read_only():
    """Compute the root's derived parameters without writing anything (the hash cache and the stored index
    stay as they are; an index that is not stored yet is kept in memory for :func:`load_index`)."""
    before = _READ_ONLY["on"]
    _READ_ONLY["on"] = True
    try:
        yield
    finally:
        _READ_ONLY["on"] = before


def is_read_only() -> bool:
    """Whether the root's parameters are being computed without writing (:func:`read_only`)."""
    return bool(_READ_ONLY["on"])


def annotation_index(done_dir: Path, cache_dir: Path) -> dict[str, str]:
    """``{file name: sha256}`` of every completed annotation, hashing only files new to the cache."""
    cache_file = cache_dir / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    index, fresh = {}, {}
    for e in annotation_files(done_dir):
        st = e.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(e.name)
        sha = hit[1] if isinstance(hit, list) and len(hit) == 2 and hit[0] == stamp else _file_sha(Path(e.path))
        index[e.name] = sha
        fresh[e.name] = [stamp, sha]
    if fresh != cache and not _READ_ONLY["on"]:
        atomic.write_json(cache_file, fresh)
    return index


def store_index(index: dict[str, str], cache_dir: Path) -> str:
    """Store ``index`` content-addressed under ``cache_dir``; its digest ("" for an empty index)."""
    if not index:
        return ""
    digest = _h("annotations", index)
    path = cache_dir / f"index-{digest}.json"
    if _READ_ONLY["on"]:
        _READ_ONLY["indexes"][digest] = AnnotationIndex(list(index.items()))
    elif not path.is_file():
        atomic.write_json(path, index)
    return digest


class AnnotationIndex:
    """A stored annotation index: sorted ``(name, sha256)`` pairs, looked up per scene by tile key."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = sorted(pairs)
        self.names = [n for n, _ in self.pairs]

    def scene(self, source: str, scene_id: str) -> str:
        """Digest of the files named by a tile key of scene ``source/scene_id`` ("" if none): found by a bisect
        on the key prefixes (``<source>~<scene>~`` and the legacy ``<source>-<scene>-``), kept only when the
        whole stem is a key of that scene (:func:`pipeline.labels.keys.scene_key_stem_matches`), so scene
        ``a`` never picks up the files of scene ``a-b``."""
        from pipeline.labels.keys import legacy_tile_key, scene_key_stem_matches, tile_key

        hits = []
        for prefix in (tile_key(source, scene_id, ""), legacy_tile_key(source, scene_id, "")):
            i = bisect.bisect_left(self.names, prefix)
            while i < len(self.pairs) and self.pairs[i][0].startswith(prefix):
                name = self.pairs[i][0]
                if scene_key_stem_matches(Path(name).stem, source, scene_id):
                    hits.append(list(self.pairs[i]))
                i += 1
        return _h("scene-annotations", sorted(hits)) if hits else ""


    def source(self, source: str) -> str:
        """Digest of the files that may belong to a scene of ``source`` ("" if none): every name starting with
        ``<source>~`` or the legacy ``<source>-`` (a superset of its scenes' files: a file of source ``a-b``
        can change the digest of source ``a``, which only redoes ``a``'s cheap pool share)."""
        hits = [list(p) for p in self.pairs if p[0].startswith((f"{source}~", f"{source}-"))]
        return _h("source-annotations", hits) if hits else ""


def load_index(cache_dir: str, digest: str) -> AnnotationIndex:
    """The stored index ``digest`` (empty for ""; one kept in memory by :func:`read_only`)."""
    held = _READ_ONLY["indexes"].get(digest)
    return held if held is not None else _stored_index(cache_dir, digest)


@functools.lru_cache(maxsize=8)
def _stored_index(cache_dir: str, digest: str) -> AnnotationIndex:
    if not digest:
        return AnnotationIndex([])
    return AnnotationIndex(list(json.loads((Path(cache_dir) / f"index-{digest}.json").read_text()).items()))


def disk_scene_annotations(done_dir: Path, source: str, scene_id: str) -> str:
    """:meth:`AnnotationIndex.scene` computed from the files themselves (a task checks its parameter)."""
    from pipeline.labels.keys import scene_key_stem_matches

    files = [e for e in annotation_files(done_dir) if scene_key_stem_matches(Path(e.name).stem, source, scene_id)]
    return AnnotationIndex([(e.name, _file_sha(Path(e.path))) for e in files]).scene(source, scene_id)


# --------------------------------------------------------------------------------------------- previous release

def previous(releases_root: Path, release: str, requested: str | None) -> tuple[str, str]:
    """``(previous, digest)``: the release this one continues, as its name (or its folder when it lies
    outside ``releases_root``), and the digest of its manifest; ``("", "none")`` without one."""
    from pipeline.dataset.history import find_previous_release, manifest_digest

    folder = find_previous_release(releases_root, release, requested)
    if folder is None:
        return "", "none"
    name = folder.name if folder.parent.resolve() == releases_root.resolve() else str(folder.resolve())
    return name, manifest_digest(folder)


def previous_folder(releases_root: Path, name: str) -> Path | None:
    if not name:
        return None
    return Path(name) if Path(name).is_absolute() else releases_root / name
