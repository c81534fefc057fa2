"""Common machinery of the source adapters.

An adapter knows one upstream layout as *class-level facts* (folder names, file-name patterns, label
encoding, citation) and turns an already-fetched folder into :class:`pipeline.scene.Scene` records.
It reads file names and small side-car files (JSON labels, GeoJSON headers) only, never pixels: the
raster checks (GSD, CRS, size) happen later in ``pipeline.raster.plan.plan_scene``.

Policies shared by every adapter (implemented here, in :meth:`Adapter.scenes`):

* ``Scene.source`` is the source's name; ``Scene.license`` / ``Scene.attribution`` come from the
  :class:`~pipeline.sources.config.SourceConfig` (an adapter may override per item, as OpenAerialMap does).
* ``scene_id`` is unique within the source and filesystem-safe (``[a-z0-9_.-]``, see :func:`safe_id`);
  a duplicate raises :class:`~pipeline.errors.SceneRejected` naming both files.
* The list is sorted by ``scene_id`` (file listings are sorted too), so two runs give the same catalog.
* ``options.region`` (or its former name ``region_override``) and ``options.regions`` (``{glob pattern: region}``
  matched against scene ids), common options of every kind, replace the ``region_hint`` of the scenes they
  name (:func:`pipeline.sources.config.scene_region`).
* A folder that holds no scene of the expected layout raises ``SceneRejected(root, ...)`` saying what
  was looked for.
* A single bad scene raises ``SceneRejected(file, reason)``.  When the caller passes a ``rejected``
  list, such per-scene rejections are appended to it and the scan goes on with the other scenes
  (what the catalog task wants: one bad xBD image must not drop the whole source).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pipeline.errors import PipelineInputError, SceneRejected
from pipeline.scene import Scene
from pipeline.sources.config import SourceConfig, scene_region

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
#: Raster file suffixes adapters accept for label / mask side-cars, in order of preference.
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")


def safe_id(text: str) -> str:
    """Lower-case ``text`` and replace every run of characters outside ``[a-z0-9_.-]`` by ``_``.

    Leading/trailing ``_`` and ``.`` are stripped (no hidden files, no ``..``).  Raises ``ValueError``
    when nothing is left.
    """
    out = _UNSAFE.sub("_", text.lower()).strip("_.")
    if not out:
        raise ValueError(f"cannot make a scene id from {text!r}")
    return out


def sorted_glob(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Files (not folders) in ``folder`` matching ``pattern``, sorted by path; [] if no folder."""
    if not folder.is_dir():
        return []
    it: Iterable[Path] = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted(p for p in it if p.is_file())


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

    def scenes(
        self, root: Path, source: SourceConfig, rejected: list[PipelineInputError] | None = None
    ) -> list[Scene]:
        """All scenes of ``source`` fetched into ``root``, sorted by ``scene_id``.

        Per-scene ``SceneRejected`` errors propagate unless ``rejected`` is a list, in which case they
        are appended to it (in scan order) and skipped.  An empty result raises ``SceneRejected(root,
        ...)`` naming the layout that was expected.
        """
        root = Path(root)
        if not root.is_dir():
            raise SceneRejected(str(root), f"{self.title or self.kind} source folder does not exist")
        found: list[Scene] = []
        n_candidates = 0
        for thunk in self._scan(root, source):
            n_candidates += 1
            try:
                scene = thunk()
            except SceneRejected as exc:
                if rejected is None:
                    raise
                rejected.append(exc)
                continue
            found.append(self._finish(scene, source))
        if n_candidates == 0:
            raise SceneRejected(str(root), self.empty_reason(root, source))
        by_id: dict[str, Scene] = {}
        for s in found:
            if s.scene_id in by_id:
                raise SceneRejected(
                    s.image, f"scene id '{s.scene_id}' is also used by {by_id[s.scene_id].image}"
                )
            by_id[s.scene_id] = s
        return [by_id[k] for k in sorted(by_id)]

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
        override = scene_region(source.options, scene.scene_id)
        if override:
            return replace(scene, region_hint=override)
        return scene
