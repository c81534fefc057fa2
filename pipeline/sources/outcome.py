"""A source whose fetch failed as a whole: the record that stands for its fetch, and what it becomes.

A source's fetch can fail for good (a 404 location, an unreachable host, a hostile archive, a location that
is a device, a transient failure after the retries).  That failure costs the source only: the build records
it (:func:`failure_record`, written where the fetch record goes), every other source is fetched, tiled and
labelled, and then

* by default the build stops before the release (:class:`pipeline.errors.SourceFailed` names the source);
* with ``[PipelineConfig] allow_partial_release = true`` the release is written without the source: its
  manifest ``sources`` entry carries ``failed`` (:func:`manifest_failure`) and ``rejects.csv`` a row
  (:func:`failure_reject`).

The tasks make such records valid for the build that wrote them only, so the next build fetches the source
again (``tasks.base``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import NoSpace, PipelineError, PipelineInputError, short_reason
from pipeline.sources.config import SourceConfig

#: The ``stage`` of a whole-source failure in its records and its ``rejects.csv`` row.
STAGE = "fetch"


def failure_record(source: SourceConfig, dest: Path, exc: BaseException) -> dict[str, Any]:
    """The fetch record of a source whose fetch raised ``exc``: no files, ``failed`` says where and why."""
    file = exc.file if isinstance(exc, PipelineInputError) else (source.location or source.name)
    reason = exc.reason if isinstance(exc, PipelineInputError) else f"{type(exc).__name__}: {exc}"
    return {
        "source": source.name, "kind": source.kind, "location": source.location, "license": source.license,
        "attribution": source.attribution, "root": str(dest), "files": [], "archives": [],
        "failed": {"stage": STAGE, "file": str(file), "reason": short_reason(reason)},
    }


def is_source_failure(exc: BaseException) -> bool:
    """Whether ``exc`` from a source's fetch fails that source only (an expected failure: a pipeline error or
    an OS error reading its location), rather than being a bug that should stop the build.  A full disk
    (:class:`~pipeline.errors.NoSpace`) is the machine's problem: it stops the build, whatever the source."""
    return isinstance(exc, (PipelineError, OSError)) and not isinstance(exc, NoSpace)


def failure_of(record: dict[str, Any]) -> dict[str, str] | None:
    """The ``failed`` part of a fetch record or catalog, or None when the source's fetch worked."""
    failed = record.get("failed")
    return failed if isinstance(failed, dict) and failed.get("reason") else None


def failure_reject(source: str, failed: dict[str, str]) -> dict[str, str]:
    """The ``rejects.csv`` row of a source left out of the release."""
    return {"source": source, "scene_id": "", "file": failed.get("file", ""), "stage": failed.get("stage", STAGE),
            "reason": short_reason(f"the whole source failed, left out of the release: {failed['reason']}")}


def manifest_failure(failed: dict[str, str]) -> dict[str, str]:
    """The manifest ``sources`` entry's ``failed`` object."""
    return {k: str(failed[k]) for k in ("stage", "file", "reason") if failed.get(k) is not None}
