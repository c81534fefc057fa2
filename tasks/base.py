"""The base class of every task of the build, and the build-scoped records of failed sources.

A source whose fetch failed leaves a *partial* record (``pipeline.sources.outcome``); so do the tasks whose
inputs include one (the source's catalog, the pool, the selection, ... a partial release).  Each such output
has a marker file beside it (``<output>.partial``, :meth:`PipelineTask.partial_markers`) holding the id of
the build that wrote it (:func:`build_id`: one per process, inherited by forked workers; ``new_build()``
starts another, for drivers that run several builds in one process).  Such an output is complete for that
build only: the next build finds it incomplete and runs the task again, so the failed source is fetched
again and whatever was made without it is remade.  A task that runs without partial inputs removes its
markers after writing its outputs.

Two builds on one data folder without a central scheduler (two terminals, two CI jobs sharing a data cache,
releases ``v2`` and ``v3`` built at once) would otherwise run their common tasks side by side, e.g. both
generating the same raw folder, one replacing it under the other.  A task's ``run`` therefore holds an
exclusive lock on ``work/locks/<family>-<digest>.lock`` (``flock``: released when its process ends, however
it ends); a task that waited for it and finds its output made meanwhile does not run again.  With luigid the
lock is never contended (luigid hands each task to one worker).  Tasks with dynamic dependencies (a
generator ``run``) take no lock: their outputs are single records written atomically.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import luigi

from pipeline.atomic import nearly_full, no_space
from pipeline.errors import NoSpace

#: The environment variable holding this build's id (forked and spawned workers inherit it).
BUILD_ENV = "OEM_BUILD_ID"
PARTIAL_SUFFIX = ".partial"


def build_id() -> str:
    """The id of the running build (made on first use)."""
    return os.environ.setdefault(BUILD_ENV, uuid.uuid4().hex)


def new_build() -> str:
    """Start a new build id: partial outputs of earlier builds of this process become incomplete."""
    os.environ[BUILD_ENV] = uuid.uuid4().hex
    return os.environ[BUILD_ENV]


def _marker_build(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _partial_aware(run):
    """``run`` between :meth:`PipelineTask._before_run` and :meth:`PipelineTask._after_run` (a generator
    ``run``, one with dynamic dependencies, stays a generator)."""
    if inspect.isgeneratorfunction(run):
        @functools.wraps(run)
        def gen(self):
            partial = self._before_run()
            try:
                yield from run(self)
            except BaseException as exc:
                self._abandon()
                self._raise_no_space(exc)
                raise
            self._after_run(partial)
        wrapped = gen
    else:
        @functools.wraps(run)
        def plain(self):
            with self._exclusive() as done_meanwhile:
                if done_meanwhile:
                    return None  # another build on this data folder made the output while this one waited
                partial = self._before_run()
                try:
                    with self._collector():
                        result = run(self)
                except BaseException as exc:
                    self._abandon()
                    self._raise_no_space(exc)
                    raise
                self._after_run(partial)
                return result
        wrapped = plain
    wrapped._partial_aware = True  # type: ignore[attr-defined]
    return wrapped


@contextlib.contextmanager
def _file_lock(path: Path, on_wait: Callable[[], None]) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (made when missing); yields whether it had to wait for another
    process.  Where the file system has no locks (``ENOLCK``: NFS without a lock manager) it holds none: luigid
    alone then decides who runs what, as on every multi-machine setup."""
    import fcntl
    import time

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    on_wait()
                    waited = True
                time.sleep(0.1)
            except OSError:
                break
        yield waited
    finally:
        os.close(fd)  # releases the lock (a forked child holding the descriptor has ended by then)


def _freeze_inherited() -> None:
    """In a worker process forked for one task (Luigi's ``TaskProcess``), move every object inherited from the
    scheduling process into the collector's permanent generation (``gc.freeze``: a list splice, nothing is
    touched): the task's collections then scan only what it allocates, instead of the scheduling process's
    whole heap (a 5,000-image build's task graph), page by page copied on write.  Not in the scheduling process
    itself, which runs many tasks with one worker and must keep collecting their cycles."""
    import gc
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        gc.freeze()


def _trace_crashes() -> None:
    """Print the Python traceback of every thread to stderr if the task's process crashes (a signal from native
    code: GDAL, OpenCV, torch), so that Luigi's "died unexpectedly with exit code -11" comes with where."""
    import faulthandler

    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)


class PipelineTask(luigi.Task):
    """A Luigi task of the build.

    Its significant parameters (``tasks.params``) are exactly what determines its output, so
    :meth:`digest` (12 hex digits over them) names the output: a task id and an output path change together.

    Luigi gives each task its progress callbacks (``set_status_message``, ``set_progress_percentage``) when a
    worker runs it; ``luigi.Task`` declares them ``None``.  Their signatures are declared here for type
    checkers only, so nothing changes at run time.  Partial outputs: module docstring.
    """

    #: Whether :meth:`run` runs with Python's cyclic garbage collector paused (:mod:`pipeline.gcpause`): the tasks
    #: that read and write records of every image, whose time the collector's full-heap scans would otherwise
    #: take a quarter of.  Not for a ``run`` with dynamic dependencies (a generator: the collector would stay
    #: off while the worker waits for them), which runs as it is.
    pause_collector: ClassVar[bool] = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # luigid knows a task by its id alone, and an output's path is relative to the data folder: the same
        # parameters in another data folder are another task (builds in two folders on one luigid must not be
        # told that each other's tasks are running or done).  The folder is part of the id, not of digest():
        # output names stay the same wherever the folder is.
        from luigi.task import task_id_str

        from tasks.config import data_dir

        params = self.to_str_params(only_significant=True, only_public=True)
        self.task_id = task_id_str(self.get_task_family(), {**params, "data_dir": str(data_dir().resolve())})
        self._Task__hash = hash(self.task_id)  # luigi.Task.__hash__ returns its private copy

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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_partial_aware", False):
            cls.run = _partial_aware(run)  # type: ignore[method-assign]

    def partial_markers(self) -> list[Path]:
        """The marker files of this task's outputs (``<output path>.partial``)."""
        return [Path(t.path + PARTIAL_SUFFIX) for t in luigi.task.flatten(self.output())
                if isinstance(t, luigi.LocalTarget)]

    def complete(self) -> bool:
        current = build_id()  # made in the scheduling process, before any worker is forked
        for marker in self.partial_markers():
            if marker.exists() and _marker_build(marker) != current:
                return False  # made without a source that failed in an earlier build: make it again
        return super().complete()

    def mark_partial(self) -> None:
        """Mark this task's outputs as made without a failed source (call before writing them)."""
        self.__dict__["_partial"] = True
        for marker in self.partial_markers():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(build_id() + "\n")

    def partial_inputs(self) -> bool:
        """Whether an input of this task is partial (made in this build without a failed source)."""
        return any(Path(t.path + PARTIAL_SUFFIX).exists() for t in luigi.task.flatten(self.input())
                   if isinstance(t, luigi.LocalTarget))

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """Run under this task's lock file ``work/locks/<family>-<digest>.lock`` (module docstring); yields
        whether the task is complete after waiting for another process that held it (then it is not run)."""
        if not luigi.task.flatten(self.output()):
            yield False
            return
        from tasks.config import work_dir

        def waiting() -> None:
            if callable(self.set_status_message):
                self.set_status_message("waiting for another build on this data folder that runs this task")

        with _file_lock(work_dir() / "locks" / f"{self.task_family}-{self.digest()}.lock", waiting) as waited:
            yield waited and self.complete()

    def _outputs_folder(self) -> Path | None:
        targets = [t for t in luigi.task.flatten(self.output()) if isinstance(t, luigi.LocalTarget)]
        return Path(targets[0].path).parent if targets else None

    def _raise_no_space(self, exc: BaseException) -> None:
        """Raise ``exc`` as :class:`~pipeline.errors.NoSpace` when it is a write that failed for want of room
        (:func:`pipeline.atomic.no_space`; most writes go through ``atomic_path``, which says so itself)."""
        folder = self._outputs_folder()
        if isinstance(exc, Exception) and folder is not None and (full := no_space(exc, folder)) is not None:
            raise full from exc

    def _before_run(self) -> bool:
        from tasks import progress

        folder = self._outputs_folder()
        free = nearly_full(folder) if folder is not None else None
        if folder is not None and free is not None:  # fail now: no work done in vain until a write fails
            raise NoSpace(folder, free, f"the file system was (nearly) full before {self.task_family} started")
        _freeze_inherited()
        _trace_crashes()
        progress.on_run(self)  # the stage's figures as the task's status (luigid)
        partial = self.partial_inputs()
        if partial:
            self.mark_partial()
        return partial

    def _collector(self):
        """The context :meth:`run` runs in: the garbage collector paused when :attr:`pause_collector` says so."""
        from contextlib import nullcontext

        from pipeline.gcpause import collector_paused

        return collector_paused() if self.pause_collector else nullcontext()

    def _abandon(self) -> None:
        """The run failed: no marker stays without its output."""
        for target, marker in zip(luigi.task.flatten(self.output()), self.partial_markers()):
            if not os.path.exists(target.path):
                marker.unlink(missing_ok=True)

    def _after_run(self, partial: bool) -> None:
        if partial or self.__dict__.get("_partial"):
            return
        for marker in self.partial_markers():
            marker.unlink(missing_ok=True)
