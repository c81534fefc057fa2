"""OpenEarthMap-layout adapter: a benchmark released as OpenEarthMap is (OpenEarthMap itself, or a release of
this pipeline), taken as a source to extend and release again.

Layout (below the source folder, at any depth: the OpenEarthMap download has one more folder on top)::

    <dataset>/<region>/images/<name>.tif         images
    <dataset>/<region>/labels/<name>.tif         8-class labels (ids 0..8) on the image grid (optional)
    <dataset>/train.txt val.txt test.txt         the dataset's split: image file names, one a line (optional)

``scene_id`` = the file's stem (OpenEarthMap names are ``<region>_<n>``, unique in the dataset; a stem found
twice gets ``-<digest>``, :func:`~pipeline.sources.adapters.base.unique_ids`); ``region_hint`` = the region
folder (``options.region`` / ``regions`` override it).  With ``options.keep_splits`` (default true) each image
listed in one of the split files carries that split (``extra["upstream_split"]``): the release keeps it, so
an image the upstream benchmark tests on is never trained on in a release that extends it
(:class:`tasks.dataset.SplitDataset`; ``validate`` checks it).  An image listed in two split files is a reject
(the upstream split is contradictory); an image listed in none is split like any new image.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from pipeline.errors import SceneRejected
from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter, candidate_glob, first_existing
from pipeline.sources.config import SourceConfig
from pipeline.sources.localfs import read_bounded

#: The split files of an OpenEarthMap-layout dataset, and the split each names.
SPLIT_FILES = {"train.txt": "train", "val.txt": "val", "test.txt": "test"}
IMAGES, LABELS = "images", "labels"
SUFFIXES = (".tif", ".tiff")


class OpenEarthMapAdapter(Adapter):
    """A dataset in OpenEarthMap's layout (module docstring)."""

    kind: ClassVar[str] = "openearthmap"
    title: ClassVar[str] = "OpenEarthMap-layout dataset"
    default_license: ClassVar[str] = "CC BY-NC-SA 4.0 (OpenEarthMap without xBD)"
    citation: ClassVar[str] = ("Xia, J., Yokoya, N., Adriano, B., Broni-Bediako, C. (2023). OpenEarthMap: A Benchmark "
                               "Dataset for Global High-Resolution Land Cover Mapping. WACV 2023.")
    label_encoding: ClassVar[str] = "<region>/labels/<name>.tif: class ids 0..8 (0 unlabelled)"

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        return f"no <region>/{IMAGES}/*.tif below {root} (the OpenEarthMap layout)"

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        keep = bool((source.options or {}).get("keep_splits", True))
        lists: dict[Path, dict[str, list[str]]] = {}  # dataset folder -> file name -> the split files naming it
        found: set[Path] = set()
        for suffix in SUFFIXES:
            found.update(candidate_glob(root, f"*{suffix}", recursive=True))
        for img in sorted(found):
            if img.parent.name != IMAGES:
                continue
            dataset = img.parent.parent.parent
            if keep and dataset not in lists:
                lists[dataset] = self._split_lists(dataset) if dataset.is_relative_to(root) else {}
            yield functools.partial(self.scene_for, img, source, lists.get(dataset, {}).get(img.stem, []))

    def _split_lists(self, dataset: Path) -> dict[str, list[str]]:
        """Image name without suffix -> the split files of ``dataset`` that list it (in split order); a line may
        name the file with or without its suffix and folders (``/`` or ``\\``)."""
        named: dict[str, list[str]] = {}
        for file, split in SPLIT_FILES.items():
            path = dataset / file
            if not path.is_file():
                continue
            text = read_bounded(path, self.limits.sidecar_max_bytes, SceneRejected).decode("utf-8", "replace")
            for line in text.splitlines():
                name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
                stem = name.rsplit(".", 1)[0] if name.lower().endswith(SUFFIXES) else name
                if stem and split not in named.setdefault(stem, []):
                    named[stem].append(split)
        return named

    def scene_for(self, image: Path, source: SourceConfig, splits: list[str]) -> Scene:
        if len(splits) > 1:
            raise SceneRejected(str(image), f"listed in {' and '.join(f'{s}.txt' for s in splits)}: the dataset's "
                                            "split is contradictory")
        region_dir = image.parent.parent
        label = first_existing(region_dir / LABELS / f"{image.stem}{s}" for s in (image.suffix, *SUFFIXES))
        return self.make_scene(
            source, image.stem, image, landcover=label, region_hint=region_dir.name,
            extra={"upstream_split": splits[0]} if splits else {},
        )
