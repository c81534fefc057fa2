"""Thin Luigi tasks over the pure functions in :mod:`pipeline` (see docs/ARCHITECTURE.md)."""
from tasks.config import PipelineConfig
from tasks.dataset import AssembleTiles, ComputeStats, ExportAnnotationTodo, SelectTiles, SplitDataset
from tasks.release import BuildRelease
from tasks.publish import PublishRelease
from tasks import summary as _summary  # noqa: F401  (console summary at the end of a build)
from tasks.scene import CountSegments, LabelScene, PrepareScene, TileScene
from tasks.sources import CatalogSource, FetchSource

__all__ = [
    "PipelineConfig", "FetchSource", "CatalogSource", "PrepareScene", "TileScene", "LabelScene",
    "CountSegments", "AssembleTiles", "SelectTiles", "ExportAnnotationTodo", "SplitDataset", "ComputeStats", "BuildRelease", "PublishRelease",
]
