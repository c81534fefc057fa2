"""The pipeline's errors: one root class, :class:`PipelineError`, and one subclass per kind of expected failure.

::

    PipelineError                      anything the pipeline raises on purpose
    ├── PipelineInputError (InputError)  bad input: ``file`` is what was read, ``reason`` what is wrong with it
    │   ├── FetchError                     a download or extraction that failed for good (after retries)
    │   │   ├── TransientFetchError          a network failure worth retrying later (the source's fetch fails)
    │   │   ├── NetworkPolicyError           a URL (or a redirect) to a place a build must not reach
    │   │   └── LimitExceeded                a download, archive or local file over a configured limit
    │   ├── ObjectStoreError               an upload / download / check against S3 (publish, raw cache)
    │   ├── SceneRejected                  a scene the pipeline will not use (too coarse, no georeference, ...)
    │   │   └── ItemRejected                 a STAC item that becomes no scene (broken, no asset, not a COG, ...)
    │   └── AnnotationRejected             an annotation or label file that cannot be imported
    ├── ConfigError                      bad configuration (also a ``ValueError``)
    │   ├── SourcesError                   a problem in a sources file; names file, source and key
    │   └── PreviousReleaseNotFound        ``previous_release`` names no release (also a ``FileNotFoundError``)
    ├── ValidationError                  records, a manifest or a release that fail their checks (also a ``ValueError``)
    │   ├── ManifestError                  a manifest that does not follow its JSON schema
    │   ├── ReleaseInvalid                 a built release that ``validate_release`` finds problems in
    │   ├── EmptyRelease                   a release that would hold no image
    │   └── ViewerError                    a release folder the release browser cannot be written for
    │       └── ThumbnailError             a tile of it that cannot be made into a thumbnail
    └── BuildError                       a build that cannot go on (also a ``RuntimeError``)
        ├── ProcessDied                    a forked child killed by a signal (a native crash, out of memory)
        ├── NoSpace                        a write that failed because its file system is full: never a reject
        └── SourceFailed                   sources whose fetch failed: no release unless a partial one is allowed

Input errors are *per item*: the tasks turn them into ``rejects.csv`` rows (``stage`` says where) and go on
with the other items.  The others stop the build (or the command) with their message.  Classes that replace
a built-in exception also derive from it, so ``except ValueError`` still catches a :class:`ConfigError`.
A bare ``ValueError`` / ``TypeError`` left in the library means a programming error: a bad argument.

An input error's ``reason`` is one short line (whitespace collapsed, at most :data:`MAX_REASON_CHARS`
characters): it ends up in a ``rejects.csv`` cell, so a GDAL message or a CRS definition quoted whole
must not turn it into a page.
"""
from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

#: Longest ``reason`` an input error keeps (longer ones are cut with "...").
MAX_REASON_CHARS = 300


def short_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line (runs of whitespace -> one space), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class PipelineInputError(PipelineError):
    """Bad input: ``file`` is what was being read, ``reason`` says what is wrong with it."""

    stage = "input"

    def __init__(self, file: str | PathLike[str], reason: str):
        self.file = str(file)
        self.reason = short_reason(reason)
        super().__init__(f"{self.file}: {reason}")


#: The short name of :class:`PipelineInputError`.
InputError = PipelineInputError


class FetchError(PipelineInputError):
    """A download or extraction that failed for good (after retries)."""

    stage = "fetch"


class TransientFetchError(FetchError):
    """A network failure worth retrying later (5xx, 408, 429, timeouts, refused connections, after the
    retries): the whole fetch of the source fails, nothing is recorded as rejected, and a rerun tries again."""


class NetworkPolicyError(FetchError):
    """A URL, or a redirect, to an address the network policy refuses (loopback, link-local, private,
    multicast, unspecified; :mod:`pipeline.sources.netpolicy`)."""


class LimitExceeded(FetchError):
    """A download, an archive or a local file over one of the configured limits (:mod:`pipeline.limits`);
    the reason names the limit."""


class ObjectStoreError(PipelineInputError):
    """An upload, download or check against the object store that failed; names the ``s3://`` URL."""

    stage = "publish"


class SceneRejected(PipelineInputError):
    """A scene the pipeline will not use (too coarse, no georeference, unreadable, ...)."""

    stage = "prepare"


class ItemRejected(SceneRejected):
    """A STAC item that becomes no scene: ``file`` is the item (or asset) URL, ``scene_id`` the scene it
    would have been (may be empty), ``reject_stage`` the ``rejects.csv`` stage (``catalog`` for a broken
    item, ``fetch`` for an asset that cannot be read)."""

    def __init__(self, file: str, reason: str, *, scene_id: str = "", stage: str = "fetch"):
        super().__init__(file, reason)
        self.scene_id = scene_id
        self.reject_stage = stage


class AnnotationRejected(PipelineInputError):
    """An annotation file that cannot be imported (unknown colour, wrong shape, bad CRS, ...)."""

    stage = "annotation"


class ConfigError(PipelineError, ValueError):
    """A configuration the pipeline cannot build from (``sources.yaml``, ``[PipelineConfig]``, source options)."""


class ReleaseTaken(ConfigError):
    """A release name that exists, built with other settings: releases are never rebuilt in place
    (:mod:`tasks.taken`)."""


class SourcesError(ConfigError):
    """A problem in a sources file; the message names file, source and key."""


class PreviousReleaseNotFound(ConfigError, FileNotFoundError):
    """``previous_release`` names a release folder that has no ``manifest.json``."""


class ValidationError(PipelineError, ValueError):
    """Records, a manifest or a release that fail their checks; ``problems`` holds one line per problem."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        super().__init__(message)


class ManifestError(ValidationError):
    """A manifest that does not follow the schema; ``problems`` holds one line per schema error."""

    def __init__(self, problems: Sequence[str]):
        problems = list(problems)
        head = "; ".join(problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"manifest does not follow the schema: {head}{more}", problems)


class ReleaseInvalid(ValidationError):
    """A release that :func:`pipeline.release.validate.report.validate_release` finds problems in."""

    def __init__(self, release: str, problems: Sequence[str]):
        super().__init__(f"release {release} failed validation:\n" + "\n".join(problems), problems)


class EmptyRelease(ValidationError):
    """A release that would hold no image (no enabled source, or every scene rejected or pending)."""

    def __init__(self, release: str, why: str):
        super().__init__(f"release {release} would hold no image: {why}", [why])


class ViewerError(ValidationError):
    """A release folder the release browser (:mod:`pipeline.release.viewer`) cannot be written for: no or an
    unreadable manifest, no images, no usable classes, or an output folder that would replace the release.
    ``file`` names what is missing or bad, ``reason`` what is wrong with it."""

    def __init__(self, file: str | PathLike[str], reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}", [f"{self.file}: {reason}"])


class ThumbnailError(ViewerError):
    """A tile of the release that cannot be made into a thumbnail (``file`` and ``reason`` say which and why)."""


class BuildError(PipelineError, RuntimeError):
    """A build that cannot go on, e.g. because an input changed while it ran; running it again helps."""


class ProcessDied(BuildError):
    """A forked child process (:mod:`pipeline.forked`) that ended without handing back a result: killed by a
    signal (``status`` negative: a crash in native code, the out-of-memory killer) or exited early."""

    def __init__(self, pid: int, status: int):
        self.pid, self.status = pid, status
        super().__init__(f"forked process {pid} ended without a result (exit status {status}{signal_words(status)})")


class ProcessTimedOut(ProcessDied):
    """A forked child process stopped (``SIGKILL``) because it ran longer than its caller allows (``seconds``)."""

    def __init__(self, pid: int, seconds: float):
        self.pid, self.status, self.seconds = pid, -9, seconds
        BuildError.__init__(self, f"forked process {pid} ran longer than {seconds:g} s and was stopped")


class NoSpace(BuildError):
    """A write that failed because the file system it writes to is full (``ENOSPC``, a spent quota, or a GDAL
    write error with next to no room left, :func:`pipeline.atomic.no_space`): the machine's problem, not an
    input's, so it is never a ``rejects.csv`` row nor a source's failure.  What the build wrote before stays
    (every output is written whole or not at all); the same command, once there is room, goes on from there.
    ``path``: where the write went (None when unknown); ``free``: bytes left there (None when unknown);
    ``cause``: the error seen."""

    def __init__(self, path: str | PathLike[str] | None, free: int | None, cause: str):
        self.path, self.free, self.cause = (str(path) if path else None), free, cause
        where = f" of {self.path}" if self.path else " written to"
        room = "" if free is None else f" ({free / 2**20:,.1f} MiB free)"
        super().__init__(f"no space left on the device{where}{room}: {cause}; free space there (`python -m pipeline "
                         "prune` with the build's options lists what no build with them uses, e.g. the work of "
                         "older code or settings; `--delete` removes it) and run the same command again (what the "
                         "build has written so far is kept)")


def out_of_space(exc: BaseException | None) -> OSError | None:
    """The ``ENOSPC`` / ``EDQUOT`` error that ``exc`` is or was caused by (its ``__cause__`` / ``__context__``
    chain: a reject or a fetch error raised *from* a full disk), or None."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def signal_words(status: int) -> str:
    """``", SIGSEGV: ..."`` for an exit status that is a signal (negative), ``""`` for another."""
    import signal

    if status >= 0:
        return ""
    try:
        name = signal.Signals(-status).name
    except ValueError:
        return f", signal {-status}"
    hint = {"SIGSEGV": "a crash in native code", "SIGBUS": "a crash in native code", "SIGABRT": "native code aborted",
            "SIGKILL": "killed, e.g. out of memory", "SIGFPE": "a crash in native code",
            "SIGILL": "a crash in native code"}.get(name)
    return f", {name}" + (f": {hint}" if hint else "")


class SourceFailed(BuildError):
    """Sources whose fetch failed as a whole (``failures``: source name -> reason).  Every other source was
    fetched, tiled and labelled; the release is not written unless ``[PipelineConfig] allow_partial_release``
    is true (then it is written without them and says why)."""

    def __init__(self, failures: dict[str, str]):
        self.failures = dict(sorted(failures.items()))
        names = ", ".join(f"'{n}'" for n in self.failures)
        why = "; ".join(f"{n}: {r}" for n, r in self.failures.items())
        super().__init__(f"source {names} failed ({why}); the release is not written: fix the source, disable it "
                         "('enabled: false') or set [PipelineConfig] allow_partial_release = true to release "
                         "without it")
