"""Inria Aerial Image Labeling adapter: georeferenced 5000x5000 GeoTIFFs with a 0/255 building mask.

Layout (``NEW2-AerialImageDataset.zip`` extracts to ``AerialImageDataset/``; both that folder and its
parent are accepted as ``root``)::

    <root>/<split>/images/<city><n>.tif      city in austin, chicago, kitsap, tyrol-w, vienna (train)
    <root>/<split>/gt/<city><n>.tif          255 = building, 0 = not (train only) -> Scene.building_mask
    <root>/<split>/landcover/<city><n>.tif   our 8-class labels on the image grid (optional)

``split`` is ``options.split`` (default ``train``).  ``options.cities`` keeps only the listed cities
(spelled as in the file names, e.g. ``tyrol-w``, or as region hints, ``tyrolw``; case-insensitive).
``region_hint`` = the file stem without its trailing digits and without ``-`` (``tyrol-w12`` ->
``tyrolw``).  ``scene_id`` = the file stem (``austin1``, ``tyrol-w12``).  The GeoTIFFs carry their
own CRS, so ``georef`` is ``None``.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, sibling_raster
from pipeline.sources.config import SourceConfig


def inria_city(stem: str) -> str:
    """City part of an Inria file stem: trailing digits stripped (``tyrol-w12`` -> ``tyrol-w``)."""
    return re.sub(r"\d+$", "", stem)


def inria_region(stem: str) -> str:
    """Region hint of an Inria file stem: city, lower-case, ``-`` removed (``tyrol-w12`` -> ``tyrolw``)."""
    return inria_city(stem).replace("-", "").lower()


class InriaAdapter(Adapter):
    """Inria Aerial Image Labeling Benchmark layout."""

    kind: ClassVar[str] = "inria"
    title: ClassVar[str] = "Inria Aerial Image Labeling"
    default_license: ClassVar[str] = "free for research with attribution (public-domain imagery and footprints)"
    citation: ClassVar[str] = (
        "Maggiori, Tarabalka, Charpiat, Alliez, Can Semantic Labeling Methods Generalize to Any City? "
        "The Inria Aerial Image Labeling Benchmark, IGARSS 2017, doi:10.1109/IGARSS.2017.8127684"
    )
    label_encoding: ClassVar[str] = "gt/<stem>.tif single-band uint8: 255 = building, 0 = not building"
    dataset_dir: ClassVar[str] = "AerialImageDataset"
    images_dir: ClassVar[str] = "images"
    gt_dir: ClassVar[str] = "gt"
    landcover_dir: ClassVar[str] = "landcover"
    image_re: ClassVar[re.Pattern[str]] = re.compile(r"^(?P<city>[A-Za-z]+(?:-[A-Za-z]+)*)(?P<num>\d+)\.tif$")

    def split_dir(self, root: Path, source: SourceConfig) -> Path:
        """``<root>/<split>``, or ``<root>/AerialImageDataset/<split>`` when only that one exists."""
        split = (source.options or {}).get("split") or "train"
        direct = root / split
        nested = root / self.dataset_dir / split
        if not (direct / self.images_dir).is_dir() and (nested / self.images_dir).is_dir():
            return nested
        return direct

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        cities = (source.options or {}).get("cities")
        what = f" of cities {sorted(cities)}" if cities else ""
        return f"no Inria images <city><n>.tif{what} in {self.split_dir(root, source) / self.images_dir}"

    @staticmethod
    def _wanted(cities: list[str] | None, stem: str) -> bool:
        if not cities:
            return True
        keys = {str(c).lower() for c in cities} | {str(c).lower().replace("-", "") for c in cities}
        return inria_city(stem).lower() in keys or inria_region(stem) in keys

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        split_dir = self.split_dir(root, source)
        images = split_dir / self.images_dir
        cities = (source.options or {}).get("cities")
        for p in sorted(images.iterdir()) if images.is_dir() else []:
            if not p.is_file() or not self.image_re.match(p.name) or not self._wanted(cities, p.stem):
                continue
            yield functools.partial(self.scene_for, p, split_dir, source)

    def scene_for(self, image: Path, split_dir: Path, source: SourceConfig) -> Scene:
        stem = image.stem
        mask = split_dir / self.gt_dir / image.name
        return self.make_scene(
            source,
            stem,
            image,
            building_mask=mask if mask.is_file() else None,
            landcover=sibling_raster(split_dir / self.landcover_dir, stem, (".tif", ".tiff")),
            region_hint=inria_region(stem),
            extra={"city": inria_city(stem), "split": split_dir.name},
        )
