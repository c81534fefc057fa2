"""The base class of every task of the build."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import luigi


class PipelineTask(luigi.Task):
    """A Luigi task of the build.

    Its significant parameters (``tasks.params``) are exactly what determines its output, so
    :meth:`digest` (12 hex digits over them) names the output: a task id and an output path change together.

    Luigi gives each task its progress callbacks (``set_status_message``, ``set_progress_percentage``) when a
    worker runs it; ``luigi.Task`` declares them ``None``.  Their signatures are declared here for type
    checkers only, so nothing changes at run time.
    """

    def digest(self) -> str:
        """12 hex digits of SHA-256 over the task family and its significant parameters (cached)."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            blob = json.dumps([self.task_family, self.to_str_params(only_significant=True)], sort_keys=True)
            cached = self.__dict__["_digest"] = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return cached

    if TYPE_CHECKING:
        def set_status_message(self, message: str) -> None: ...

        def set_progress_percentage(self, percentage: int) -> None: ...
