"""Thin Luigi tasks over the pure functions in :mod:`pipeline` (see docs/ARCHITECTURE.md).

Importing this package starts a build: it registers the tasks with Luigi and installs the console summary
(:func:`tasks.summary.install`: Luigi event handlers and an ``atexit`` hook); under the ``luigi`` command it
starts a new build id (:func:`tasks.base.new_build`).  ``luigi --module pipeline``
imports it through ``pipeline/__init__.py``; code that drives builds itself imports it directly.
"""
from tasks import summary
from tasks.base import new_build
from tasks.config import PipelineConfig
from tasks.dataset import AssembleTiles, ComputeStats, ExportAnnotationTodo, SelectTiles, SourcePool, SplitDataset
from tasks.publish import PublishRelease
from tasks.release import BuildRelease, StageRelease
from tasks.scene import CountSegments, LabelScene, PrepareScene, TileScene
from tasks.sources import CatalogSource, FetchSource

summary.install()
if summary.is_luigi_cli():
    new_build()  # a `luigi` command is one build, whatever build id its environment carries (tasks.base)

__all__ = [
    "PipelineConfig", "FetchSource", "CatalogSource", "PrepareScene", "TileScene", "LabelScene", "CountSegments",
    "SourcePool", "AssembleTiles", "SelectTiles", "ExportAnnotationTodo", "SplitDataset", "ComputeStats",
    "StageRelease", "BuildRelease", "PublishRelease",
]
