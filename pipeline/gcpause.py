"""Python's cyclic garbage collector paused around bulk record work.

The dataset and release stages hold a few large acyclic structures (the pool, the split record, a 5,000-image
manifest: hundreds of thousands of dicts and lists) and build more of the same.  The cyclic collector runs
whenever enough containers were allocated, and every full collection scans the whole heap, so a task that
reads and writes records of 5,000 images spends a quarter of its time in it (the dataset and release tasks of
a continuing 5,000-image build, run in one process: 9.9-11.7 s with the collector, 7.4-8.2 s without) while
there is no cycle to free: reference counting frees everything those records hold.  :func:`collector_paused`
turns the collector off for a block and back on (as it was) after it; cycles made meanwhile (a matplotlib
figure, an exception's traceback) are collected at the next collection after the block, or when the task's
process ends.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block, restored after it (also on an exception)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
