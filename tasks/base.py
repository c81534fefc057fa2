"""The base class of every task of the build."""
from __future__ import annotations

from typing import TYPE_CHECKING

import luigi


class PipelineTask(luigi.Task):
    """A Luigi task of the build.

    Luigi gives each task its progress callbacks (``set_status_message``, ``set_progress_percentage``) when a
    worker runs it; ``luigi.Task`` declares them ``None``.  Their signatures are declared here for type
    checkers only, so nothing changes at run time.
    """

    if TYPE_CHECKING:
        def set_status_message(self, message: str) -> None: ...

        def set_progress_percentage(self, percentage: int) -> None: ...
