"""Errors that carry the offending file and a reason, so every report can name both."""
from __future__ import annotations


class PipelineInputError(Exception):
    """Bad input: ``file`` is what was being read, ``reason`` says what is wrong with it."""

    stage = "input"

    def __init__(self, file: str, reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")


class SceneRejected(PipelineInputError):
    """A scene the pipeline will not use (too coarse, no georeference, unreadable, ...)."""

    stage = "prepare"


class AnnotationRejected(PipelineInputError):
    """An annotation file that cannot be imported (unknown colour, wrong shape, bad CRS, ...)."""

    stage = "annotation"


class FetchError(PipelineInputError):
    """A download or extraction that failed for good (after retries)."""

    stage = "fetch"
