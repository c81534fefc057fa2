"""Local folder adapter: georeferenced images of any provenance, with optional labels and footprints.

Layout::

    <root>/**/<pattern>                          images (options.pattern, default "*.tif"; the default
                                                 also takes "*.tiff"), outside the label/footprint folders
                                                 (<root>/labels, <root>/footprints and the option ones)
    <labels>/<same relative path>                8-class land-cover raster on the image grid (optional);
                                                 <labels> = options.labels or <root>/labels; a file of
                                                 the same relative stem with .tif/.tiff/.png is taken too
    <footprints>/<same relative path>.geojson    building polygons (optional; .gpkg accepted), CRS read
                                                 from the file (EPSG:4326 when it declares none);
                                                 <footprints> = options.footprints or <root>/footprints

``options.labels`` / ``options.footprints`` are absolute or relative to ``root``.  ``scene_id`` = the
image path relative to ``root`` without suffix, folders joined with ``-`` (``kampala/tile_01.tif`` ->
``kampala-tile_01``).  ``region_hint`` = ``options.region``, else the name of the image's parent folder
when that is not ``root``, else none.  Images carry their own georeference (``georef=None``); whether
they really do is checked by the raster stage, not here.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, candidate_glob, first_existing
from pipeline.sources.config import SourceConfig
from pipeline.sources.footprints import VECTOR, vector_crs


class LocalAdapter(Adapter):
    """A folder of local GeoTIFFs (see module docstring)."""

    kind: ClassVar[str] = "local"
    title: ClassVar[str] = "local folder"
    default_license: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    label_encoding: ClassVar[str] = ("labels/<rel path>: class ids 0..8 (0 unlabelled); "
                                     "footprints/<rel>.geojson: buildings")
    default_pattern: ClassVar[str] = "*.tif"
    labels_dir: ClassVar[str] = "labels"
    footprints_dir: ClassVar[str] = "footprints"
    label_suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff", ".png")
    footprint_suffixes: ClassVar[tuple[str, ...]] = (".geojson", ".gpkg")

    @staticmethod
    def _folder(root: Path, value: str | None, default: str) -> Path:
        if not value:
            return root / default
        p = Path(value)
        return p if p.is_absolute() else root / p

    def folders(self, root: Path, source: SourceConfig) -> tuple[Path, Path]:
        """(labels folder, footprints folder) for this source."""
        opts = source.options or {}
        return (
            self._folder(root, opts.get("labels"), self.labels_dir),
            self._folder(root, opts.get("footprints"), self.footprints_dir),
        )

    def patterns(self, source: SourceConfig) -> list[str]:
        pattern = (source.options or {}).get("pattern") or self.default_pattern
        return [pattern, "*.tiff"] if pattern == self.default_pattern else [pattern]

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        return f"no images matching {' or '.join(self.patterns(source))} below {root} (outside labels/footprints)"

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        labels, footprints = self.folders(root, source)
        excluded = {p.resolve() for p in (labels, footprints, root / self.labels_dir, root / self.footprints_dir)}
        found: set[Path] = set()
        for pattern in self.patterns(source):
            found.update(candidate_glob(root, pattern, recursive=True))
        for img in sorted(found):
            parent = img.parent.resolve()  # the file itself may be a (bad) symlink: judge by its folder
            if any((parent / img.name).is_relative_to(ex) or parent.is_relative_to(ex) for ex in excluded):
                continue
            yield functools.partial(self.scene_for, img, root, labels, footprints, source)

    def scene_for(self, image: Path, root: Path, labels: Path, footprints: Path, source: SourceConfig) -> Scene:
        rel = image.relative_to(root)
        rel_stem = rel.with_suffix("")
        landcover = first_existing(
            [labels / rel, *(labels / rel_stem.with_name(rel_stem.name + s) for s in self.label_suffixes)]
        )
        fp = first_existing(footprints / rel_stem.with_name(rel_stem.name + s) for s in self.footprint_suffixes)
        region = (source.options or {}).get("region")
        if not region and image.parent != root:
            region = image.parent.name
        return self.make_scene(
            source,
            "-".join(rel_stem.parts),
            image,
            landcover=landcover,
            footprints=fp,
            footprints_crs=vector_crs(fp) if fp is not None else None,
            region_hint=region or None,
            extra={"relative_path": rel.as_posix(), **({"footprints_format": VECTOR} if fp is not None else {})},
        )
