"""A function run in a forked child process beside the caller, its result (or exception) handed back.

The release task runs alone at the end of a build, so one of two cores would idle while it checks the release;
:func:`start` runs a self-contained part of that work (a check that reads files and returns problem lines, the
release browser written into the release folder) in a child made by ``fork``: it starts at once (no imports,
no pickled arguments: the child has the caller's memory), and its return value, or the exception it raised,
comes back pickled through a pipe when the caller asks for it (:meth:`Forked.result`).

The child never returns into the caller's code: it ends with ``os._exit`` after sending its outcome (no
``atexit`` handlers, no inherited buffers flushed twice).  Where ``fork`` does not exist the function runs in
the caller at :func:`start`, with the same results.  A child that dies without an outcome (killed, out of
memory) is a :class:`~pipeline.errors.ProcessDied` (a ``BuildError``) naming its exit status and signal.

:func:`contained` uses the same child as a wall around native decoders reading a file a source supplies: the
per-scene tasks plan, tile and read source labels through it, so a crash is that scene's reject.
"""
from __future__ import annotations

import io
import os
import pickle
import select
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pipeline.errors import BuildError, NoSpace, ProcessDied, ProcessTimedOut, SceneRejected, out_of_space, signal_words

T = TypeVar("T")


class Forked(Generic[T]):
    """A started function: :meth:`result` waits for it; used as a context manager, the child is always waited
    for (its outcome dropped when nobody asked for it, e.g. when the caller failed meanwhile)."""

    def __init__(self, pid: int | None, fd: int | None, outcome: tuple[bool, Any] | None = None) -> None:
        self._pid, self._fd, self._outcome = pid, fd, outcome

    def _collect(self, timeout: float | None = None) -> tuple[bool, Any]:
        if self._outcome is None:
            assert self._pid is not None and self._fd is not None
            if timeout is not None and not select.select([self._fd], [], [], max(0.0, timeout))[0]:
                os.kill(self._pid, signal.SIGKILL)  # nothing sent in time: stopped, and its result never read
                os.waitpid(self._pid, 0)
                os.close(self._fd)
                self._outcome = (False, ProcessTimedOut(self._pid, timeout))
                return self._outcome
            with os.fdopen(self._fd, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(self._pid, 0)
            code = os.waitstatus_to_exitcode(status)
            try:
                self._outcome = pickle.loads(data)
            except Exception:  # noqa: BLE001  (nothing or a truncated outcome: the child died)
                self._outcome = (False, ProcessDied(self._pid, code))
        return self._outcome

    def result(self, timeout: float | None = None) -> T:
        """The function's return value, or its exception raised here (with the child's traceback as a note).
        ``timeout``: seconds to wait for the child to send it; then the child is killed and
        :class:`~pipeline.errors.ProcessTimedOut` raised (a function run here, where there is no ``fork``, has
        already ended)."""
        ok, value = self._collect(timeout)
        if ok:
            return value
        raise value

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._collect()


def _rebuilt(cls: type[BaseException], args: tuple, state: dict) -> BaseException:
    """An exception as :class:`_Pickler` sent it: its ``args`` and attributes, its ``__init__`` not called."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class _Pickler(pickle.Pickler):
    """Pickles exceptions as class, ``args`` and attributes: the default calls the class with ``args``, which
    fails for the many errors that take other arguments (a file and a reason, a release and its problems)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException) and type(obj).__module__ != "builtins":  # built-in ones pickle whole
            return _rebuilt, (type(obj), obj.args, dict(obj.__dict__))
        return NotImplemented


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _outcome_bytes(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
    try:
        return _dumps((True, fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001  (handed to the caller, who raises it)
        if (full := out_of_space(exc)) is not None and not isinstance(exc, NoSpace):  # its cause is not pickled
            exc = NoSpace(full.filename, None, f"{type(full).__name__}: {full}")
        exc.add_note("in the forked process:\n" + "".join(traceback.format_exception(exc)).rstrip())
        try:
            data = _dumps((False, exc))
            pickle.loads(data)  # a class that cannot be found again by its name (a local one): sent as text
            return data
        except Exception:  # noqa: BLE001
            return _dumps((False, BuildError(f"{type(exc).__name__}: {exc}\n{exc.__notes__[-1]}")))


def done(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Forked[T]:
    """Run ``fn(*args, **kwargs)`` here, now: a finished :class:`Forked` (what :func:`start` gives where there is
    no ``fork``; for callers that choose between the two)."""
    try:
        return Forked(None, None, (True, fn(*args, **kwargs)))
    except Exception as exc:  # noqa: BLE001  (raised by result(), as from a child)
        return Forked(None, None, (False, exc))


def start(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Forked[T]:
    """Run ``fn(*args, **kwargs)`` in a forked child process (module docstring); returns at once."""
    if not hasattr(os, "fork"):
        return done(fn, *args, **kwargs)
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send the outcome, then end without returning into the caller's code
        status = 1
        try:
            os.close(read)
            data = _outcome_bytes(fn, args, kwargs)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(data)
            sys.stdout.flush()
            sys.stderr.flush()
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return Forked(pid, read)


#: How a :func:`contained` reject's reason begins (a later reader of the same file can tell it crashed once).
DIED = "the process reading it died"


def contained(fn: Callable[..., T], /, *args: Any, file: str, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run in a forked child and waited for: the decoding of a file a source controls
    (GDAL, libtiff, OpenCV and OGR are native code), so that a file that crashes a decoder or exhausts memory
    costs only itself.  A child killed by a signal (or ending without a result) is a
    :class:`~pipeline.errors.SceneRejected` naming ``file`` and the signal: the caller's ``rejects.csv`` row.
    Exceptions ``fn`` raises come back as they are (with the child's traceback as a note)."""
    try:
        return start(_without_crash_trace, fn, *args, **kwargs).result()
    except ProcessDied as exc:
        raise SceneRejected(file, f"{DIED} (exit status {exc.status}"
                                  f"{signal_words(exc.status)}); the file is malformed, hostile or more than "
                                  "the machine's memory allows") from exc


def _without_crash_trace(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn`` with Python's crash traceback (``faulthandler``, on in task processes) off: a decoder crash in a
    contained child is a rejects row, not a fatal error printed in the middle of a build that goes on."""
    import faulthandler

    faulthandler.disable()
    return fn(*args, **kwargs)
