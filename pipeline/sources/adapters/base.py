"""Common machinery of the source adapters.

An adapter knows one upstream layout as *class-level facts* (folder names, file-name patterns, label
encoding, citation) and turns an already-fetched folder into :class:`pipeline.scene.Scene` records.
It reads file names and small side-car files (JSON labels, GeoJSON headers) only, never pixels: the
raster checks (GSD, CRS, size) happen later in ``pipeline.raster.plan.plan_scene``.

Policies shared by every adapter (implemented here, in :meth:`Adapter.scenes`):

* ``Scene.source`` is the source's name; ``Scene.license`` / ``Scene.attribution`` come from the
  :class:`~pipeline.sources.config.SourceConfig` (an adapter may override per item, as OpenAerialMap does).
* ``scene_id`` is unique within the source and filesystem-safe (``[a-z0-9_.-]``, at most
  :data:`MAX_ID_CHARS` characters, see :func:`safe_id`); a name with characters outside ASCII ends in
  ``-<8 hex digits>`` (a digest of the name; ``scene-<8 hex digits>`` when nothing ASCII is left), so
  ``北京_1.tif`` and ``上海_1.tif`` never share an id and a file added to a folder never changes the id of one
  already there.  When two ASCII names map to one id (``Good_A.tif`` and ``good_a.tif``) both are kept, each
  as ``<id>-<8 hex digits of its path relative to the root>``, so neither depends on the order of the
  listing.
* Every file a scene names (image, labels, footprints, building mask) must be a regular file, or a symlink
  to one outside ``/proc``, ``/sys``, ``/dev``, of at most ``local_file_max_bytes``
  (:func:`pipeline.sources.localfs.file_problem`); side-cars read whole (JSON) at most
  ``sidecar_max_bytes`` (:class:`pipeline.limits.Limits`, given to :meth:`Adapter.scenes`).
* The list is sorted by ``scene_id`` (file listings are sorted too), so two runs give the same catalog.
* ``options.region`` (or its former name ``region_override``) and ``options.regions`` (``{glob pattern: region}``
  matched against scene ids), common options of every kind, replace the ``region_hint`` of the scenes they
  name (:func:`pipeline.sources.options.scene_region`).
* ``options.licences``, a common option too, keeps the scenes whose licence it lists (:func:`licensed`); each
  other is a ``LicenceRefused`` rejection naming its licence and the option, as a bad scene is.
* A folder that holds no scene of the expected layout raises ``SceneRejected(root, ...)`` saying what
  was looked for.
* A single bad scene raises ``SceneRejected(file, reason)`` (any input error, or an ``OSError`` reading
  its files, counts as one).  When the caller passes a ``rejected`` list, such per-scene rejections are
  appended to it and the scan goes on with the other scenes (what the catalog task wants: one bad xBD
  image must not drop the whole source).
* A root that is a file, not a folder, raises ``SceneRejected(root, "location is a file, not a folder")``.
"""
from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import PipelineInputError, SceneRejected
from pipeline.licences import licence_refused
from pipeline.limits import DEFAULT_LIMITS, Limits
from pipeline.scene import Scene
from pipeline.sources.config import SourceConfig
from pipeline.sources.localfs import file_problem, read_bounded
from pipeline.sources.options import scene_region

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
#: Longest scene id (a tile key ``<source>~<scene>~<tile>`` names files: it must stay well under 255 bytes).
MAX_ID_CHARS = 96
#: Raster file suffixes adapters accept for label / mask side-cars, in order of preference.
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")


def digest8(text: str) -> str:
    """8 hex digits of SHA-256 over ``text`` (UTF-8; unencodable characters escaped)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def safe_id(text: str) -> str:
    """Lower-case ``text`` and replace every run of characters outside ``[a-z0-9_.-]`` by ``_``.

    Leading/trailing ``_`` and ``.`` are stripped (no hidden files, no ``..``).  When nothing is left (a
    name without ASCII letters or digits, e.g. ``日本``) the id is ``scene-<digest8(text)>``; a name with any
    character outside ASCII (``São Paulo 1``, ``北京_1``: what is left of two of them often coincides) and an
    id longer than :data:`MAX_ID_CHARS` end in ``-<digest8(text)>`` (cut to fit).  Each id depends on its own
    name alone, never on the other names of the folder.  Deterministic, never raises.
    """
    out = _UNSAFE.sub("_", text.lower()).strip("_.")
    if not out:
        return f"scene-{digest8(text)}"
    if len(out) > MAX_ID_CHARS or not text.isascii():
        return out[: MAX_ID_CHARS - 9].rstrip("_.-") + "-" + digest8(text)
    return out


def sorted_glob(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Files (not folders) in ``folder`` matching ``pattern``, sorted by path; [] if no folder.

    ``recursive`` does not descend into symlinked folders.  Regular files and symlinks to them only: a FIFO
    or device is left out (:func:`candidate_glob` keeps them, to be rejected by name)."""
    if not folder.is_dir():
        return []
    it: Iterable[Path] = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted(p for p in it if p.is_file())


def candidate_glob(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Like :func:`sorted_glob`, but also special files and symlinks that match (anything but a folder), so
    that the adapter rejects them by name (:meth:`Adapter.make_scene` checks every file)."""
    if not folder.is_dir():
        return []
    it: Iterable[Path] = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted(p for p in it if p.is_symlink() or not p.is_dir())


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """The first candidate path that is an existing file, else ``None``."""
    for p in candidates:
        if p.is_file():
            return p
    return None


def sibling_raster(folder: Path, stem: str, suffixes: tuple[str, ...] = RASTER_SUFFIXES) -> Path | None:
    """``<folder>/<stem><suffix>`` for the first suffix that exists, else ``None``."""
    return first_existing(folder / f"{stem}{s}" for s in suffixes)


class Adapter(ABC):
    """Base class: turn a fetched folder of one upstream layout into sorted, unique scenes.

    Subclasses set the class attributes and implement :meth:`_scan`, which yields one *thunk* per
    candidate scene (a zero-argument callable returning the Scene or raising ``SceneRejected``), so
    that the per-scene error policy lives in one place.
    """

    #: The ``kind`` in sources.yaml this adapter serves.
    kind: ClassVar[str] = ""
    #: Human-readable name of the upstream dataset (used in messages).
    title: ClassVar[str] = ""
    #: Licence the upstream publishes (informative; the SourceConfig's licence is what scenes carry).
    default_license: ClassVar[str] = ""
    #: Citation the upstream asks for; copied into ``Scene.extra["citation"]``.
    citation: ClassVar[str] = ""
    #: What the building / label files encode, for documentation and reports.
    label_encoding: ClassVar[str] = ""
    #: The documented acquisition period of the upstream imagery (ISO dates), for scenes without their own
    #: acquisition time; ``options.acquired_range`` overrides it (:func:`pipeline.sources.adapters.acquired_range`).
    acquired_range: ClassVar[tuple[str, str] | None] = None

    #: The limits of the current :meth:`scenes` call (side-car sizes, local file sizes).
    limits: Limits = DEFAULT_LIMITS

    def scenes(
        self, root: Path, source: SourceConfig, rejected: list[PipelineInputError] | None = None,
        limits: Limits | None = None,
    ) -> list[Scene]:
        """All scenes of ``source`` fetched into ``root``, sorted by ``scene_id``.

        Per-scene ``SceneRejected`` errors propagate unless ``rejected`` is a list, in which case they
        are appended to it (in scan order) and skipped.  An empty result raises ``SceneRejected(root,
        ...)`` naming the layout that was expected.  ``limits`` bound what is read (module doc).
        """
        self.limits = limits or DEFAULT_LIMITS
        root = Path(root)
        if root.is_file():
            raise SceneRejected(str(root), f"location is a file, not a folder ({self.title or self.kind} "
                                           "sources are read from a folder)")
        if not root.is_dir():
            raise SceneRejected(str(root), f"{self.title or self.kind} source folder does not exist")
        found: list[Scene] = []
        n_candidates = 0
        try:
            for thunk in self._scan(root, source):
                n_candidates += 1
                try:
                    found.append(self._run(thunk, root))
                except SceneRejected as exc:
                    if rejected is None:
                        raise
                    rejected.append(exc)
        except OSError as exc:  # the listing itself failed (permissions, a vanished folder)
            raise SceneRejected(str(getattr(exc, "filename", None) or root),
                                f"cannot list: {exc.strerror or exc}") from exc
        if n_candidates == 0:
            raise SceneRejected(str(root), self.empty_reason(root, source))
        return licensed([self._finish(s, source) for s in unique_ids(found, root)], source, rejected)

    @staticmethod
    def _run(thunk: Callable[[], Scene], root: Path) -> Scene:
        """Call one scene's thunk; any input error or OSError becomes its SceneRejected."""
        args = getattr(thunk, "args", ())
        blame = next((str(a) for a in args if isinstance(a, Path)), str(root))
        try:
            return thunk()
        except SceneRejected:
            raise
        except PipelineInputError as exc:
            raise SceneRejected(exc.file, exc.reason) from exc
        except (OSError, UnicodeError, RecursionError) as exc:
            raise SceneRejected(str(getattr(exc, "filename", None) or blame),
                                f"cannot read: {getattr(exc, 'strerror', None) or type(exc).__name__}") from exc

    def read_json(self, path: Path) -> Any:
        """A side-car read whole: at most ``sidecar_max_bytes``, a regular file; SceneRejected otherwise
        (also for invalid or too deeply nested JSON)."""
        data = read_bounded(path, self.limits.sidecar_max_bytes, SceneRejected)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise SceneRejected(str(path), f"unreadable JSON: {type(exc).__name__}: {str(exc)[:120]}") from None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        """Yield one zero-argument callable per candidate scene, in sorted file order."""

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        """Why ``root`` gave no scene: the layout that was looked for (subclasses refine)."""
        return f"no {self.title or self.kind} scenes found"

    # -- helpers for subclasses ---------------------------------------------------------------
    def make_scene(self, source: SourceConfig, scene_id: str, image: Path, **fields) -> Scene:
        """A Scene with source name, kind, licence and attribution taken from ``source``.

        ``fields`` are the remaining Scene fields; Path values are turned into strings.
        ``extra["citation"]`` is set from the class attribute unless given.
        """
        for key in ("landcover", "building_mask", "footprints"):
            if isinstance(fields.get(key), Path):
                fields[key] = str(fields[key])
        for path in (image, *(fields.get(k) for k in ("landcover", "building_mask", "footprints"))):
            why = file_problem(path, self.limits.local_file_max_bytes) if path else None
            if why is not None:
                raise SceneRejected(str(path), why)
        extra = dict(fields.pop("extra", None) or {})
        if self.citation:
            extra.setdefault("citation", self.citation)
        return Scene(
            source=source.name,
            scene_id=safe_id(scene_id),
            kind=fields.pop("kind", self.kind),
            image=str(image),
            license=fields.pop("license", source.license),
            attribution=fields.pop("attribution", source.attribution),
            extra=extra,
            **fields,
        )

    @staticmethod
    def _finish(scene: Scene, source: SourceConfig) -> Scene:
        """The scene with what ``sources.yaml`` sets for it: its region (``options.region``/``regions``), the
        bands read as red, green and blue (``options.bands``: ``extra["bands"]``, :mod:`pipeline.raster.plan`) and
        the class of each label value (``options.classes``: ``extra["classes"]``, ``[[value or "#rrggbb", class
        id], ...]``, :mod:`pipeline.labels.landcover`)."""
        override = scene_region(source.options, scene.scene_id)
        if override:
            scene = replace(scene, region_hint=override)
        opts = source.options or {}
        extra: dict = {}
        if opts.get("bands"):
            extra["bands"] = [int(b) for b in opts["bands"]]
        if opts.get("crs"):  # for an image with a geotransform and no CRS (pipeline.raster.reading)
            extra["crs"] = str(opts["crs"])
        if opts.get("classes"):
            items = opts["classes"].items()  # keys "2" or "#0000ff" (pipeline.sources.config)
            extra["classes"] = (sorted([int(k), int(v)] for k, v in items if not k.startswith("#"))
                                + sorted([k, int(v)] for k, v in items if k.startswith("#")))
        return replace(scene, extra={**(scene.extra or {}), **extra}) if extra else scene


class LicenceRefused(SceneRejected):
    """A scene whose licence is not one of its source's ``options.licences`` (a ``catalog`` reject naming both)."""

    reject_stage = "catalog"

    def __init__(self, file: str, reason: str, *, scene_id: str):
        super().__init__(file, reason)
        self.scene_id = scene_id


def licensed(scenes: list[Scene], source: SourceConfig, rejected: list[PipelineInputError] | None) -> list[Scene]:
    """The ``scenes`` whose licence is one of ``options.licences`` (all without the option); each other is a
    :class:`LicenceRefused` appended to ``rejected`` (raised when that is None)."""
    allowed = (source.options or {}).get("licences")
    kept = []
    for scene in scenes:
        why = licence_refused(scene.license, allowed)
        if why is None:
            kept.append(scene)
            continue
        refused = LicenceRefused(scene.image, why, scene_id=scene.scene_id)
        if rejected is None:
            raise refused
        rejected.append(refused)
    return kept


def unique_ids(scenes: list[Scene], root: Path) -> list[Scene]:
    """``scenes`` sorted by id, ids made unique: every scene of a group sharing one id gets
    ``<id>-<digest8 of its image path relative to root>`` (module doc)."""
    groups: dict[str, list[Scene]] = {}
    for s in scenes:
        groups.setdefault(s.scene_id, []).append(s)
    out: dict[str, Scene] = {}
    for sid, group in groups.items():
        if len(group) == 1:
            out.setdefault(sid, group[0])
            continue
        for s in group:
            try:
                rel = Path(s.image).relative_to(root).as_posix()
            except ValueError:
                rel = s.image
            new = f"{sid[: MAX_ID_CHARS - 9]}-{digest8(rel)}"
            out[new] = replace(s, scene_id=new)
    return [out[k] for k in sorted(out)]
