"""pipeline.forked: a function run in a forked process, its result or exception handed back."""
from __future__ import annotations

import os
import signal

import pytest

from pipeline import forked
from pipeline.errors import BuildError


class _Odd(Exception):
    def __init__(self, a, b):  # the default pickle cannot rebuild it (one argument in .args)
        super().__init__(f"{a}-{b}")
        self.parts = (a, b)


def _pid_and(x):
    return os.getpid(), x * 2


def _fails():
    raise ValueError("bad value")


def test_the_result_comes_from_another_process():
    job = forked.start(_pid_and, 21)
    pid, value = job.result()
    assert value == 42 and pid != os.getpid()
    assert job.result() == (pid, 42)  # asked again: the same outcome, the child long gone


def test_an_exception_is_raised_here_with_the_childs_traceback():
    with pytest.raises(ValueError, match="bad value") as info:
        forked.start(_fails).result()
    assert "in the forked process" in info.value.__notes__[-1] and "_fails" in info.value.__notes__[-1]


def _odd():
    raise _Odd(1, 2)


def test_an_exception_with_its_own_arguments_crosses_whole():
    with pytest.raises(_Odd, match="1-2") as info:
        forked.start(_odd).result()
    assert info.value.parts == (1, 2)


def test_an_exception_that_cannot_cross_is_named_in_a_build_error():
    class Local(Exception):  # not found again by its name
        pass

    def local():
        raise Local("only here")

    with pytest.raises(BuildError, match="Local: only here"):
        forked.start(local).result()


def test_a_child_that_dies_is_a_build_error_naming_its_status():
    with pytest.raises(BuildError, match="ended without a result .exit status -9"):
        forked.start(lambda: os.kill(os.getpid(), signal.SIGKILL)).result()


def test_the_context_waits_for_the_child_even_when_nobody_asks():
    with pytest.raises(RuntimeError, match="caller failed"), forked.start(_pid_and, 1) as job:
        raise RuntimeError("caller failed")
    with pytest.raises(ChildProcessError):
        os.waitpid(job._pid, os.WNOHANG)  # reaped: no zombie left


def test_done_runs_here_with_the_same_outcomes():
    assert forked.done(_pid_and, 2).result() == (os.getpid(), 4)
    with pytest.raises(ValueError, match="bad value"):
        forked.done(_fails).result()


def test_a_pipeline_error_crosses_whole_with_its_own_fields():
    from pipeline.errors import ReleaseInvalid, ThumbnailError

    def broken():
        raise ThumbnailError("r/images/a.tif", "cannot be read")

    with pytest.raises(ThumbnailError, match="r/images/a.tif: cannot be read") as info:
        forked.start(broken).result()
    assert (info.value.file, info.value.reason, info.value.problems) == (
        "r/images/a.tif", "cannot be read", ["r/images/a.tif: cannot be read"])

    def invalid():
        raise ReleaseInvalid("v1", ["a: one", "b: two"])

    with pytest.raises(ReleaseInvalid, match="release v1 failed validation") as info2:
        forked.start(invalid).result()
    assert info2.value.problems == ["a: one", "b: two"]


def test_a_builtin_error_keeps_its_fields():
    def missing():
        open("/nonexistent/file")

    with pytest.raises(FileNotFoundError) as info:
        forked.start(missing).result()
    assert info.value.errno == 2 and info.value.filename == "/nonexistent/file"


def _sleeps(seconds):
    import time

    time.sleep(seconds)
    return "woke"


def test_a_child_past_its_timeout_is_stopped_and_named():
    import time

    from pipeline.errors import ProcessTimedOut

    job = forked.start(_sleeps, 60)
    t0 = time.perf_counter()
    with pytest.raises(ProcessTimedOut, match="longer than 0.3 s") as info:
        job.result(timeout=0.3)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(info.value.pid, 0)
    assert forked.start(_sleeps, 0).result(timeout=30) == "woke"  # in time: its result
