"""Per-stage progress of a build as plain lines (no Luigi here: ``tasks.progress`` feeds it).

A :class:`Board` counts, per stage of the build (:data:`STAGES`), the tasks it knows of (``total``) and those
done (``done``: run in this build, or complete already), and makes one line of them::

    [progress 1m05s] fetch 2/2 | prepare 4/4 | tile 3/4 1.2/min ETA 50s | label 1/4 | count 0/4 | ...

Throughput and ETA of a stage come from the tasks run in this build (not those found complete): the rate is
``ran / (now - first start)``, the ETA ``(total - done) / rate``.  Totals grow while the build discovers
work (a source's scenes are known once its catalog is), so a line is a snapshot, and the last line of a
finished build has every stage at its total.  Stages without tasks are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Stages in build order, and the task families that belong to each.
STAGES: dict[str, tuple[str, ...]] = {
    "fetch": ("FetchSource", "CatalogSource"),
    "prepare": ("PrepareScene",),
    "tile": ("TileScene",),
    "label": ("LabelScene",),
    "count": ("CountSegments", "SourcePool", "AssembleTiles"),
    "select": ("SelectTiles", "ExportAnnotationTodo"),
    "split": ("SplitDataset",),
    "stats": ("ComputeStats",),
    "release": ("StageRelease", "BuildRelease", "PublishRelease"),
}
_STAGE_OF = {family: stage for stage, families in STAGES.items() for family in families}


def stage_of(family: str) -> str | None:
    """The stage of a task family, None for a family outside the build's stages."""
    return _STAGE_OF.get(family)


def _duration(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def megabytes(n: float) -> str:
    return f"{n / 1e6:.1f}"


def transfer_text(transfers) -> str:
    """``12.4/50.0 MB 8.1 MB/s`` over the downloads of a build, each ``(done, total or None, seconds, running)``
    (total ``?`` while a size is unknown): the rate is the sum of the running downloads' rates, or, once none
    runs, all bytes over all their seconds."""
    items = list(transfers)
    done = sum(d for d, _, _, _ in items)
    totals = [t for _, t, _, _ in items]
    total = megabytes(sum(t for t in totals if t)) if all(totals) else "?"
    running = [(d, sec) for d, _, sec, run in items if run and sec > 0]
    if running:
        rate = sum(d / sec for d, sec in running)
    else:
        seconds = sum(sec for _, _, sec, _ in items)
        rate = done / seconds if seconds > 0 else 0.0
    return f"{megabytes(done)}/{total} MB {megabytes(rate)} MB/s"


class Transfer:
    """Bytes and rate of one task's downloads, from ``progress(done, total)`` calls per file (as
    :func:`pipeline.sources.download.download` makes them): a call with fewer bytes than the last starts the
    next file.  ``done`` and ``total`` add the finished files; the rate is over the time since the first call."""

    def __init__(self, now: float) -> None:
        self.first = now
        self.finished = 0
        self.current = 0
        self.current_total: int | None = None

    def update(self, done: int, total: int | None) -> None:
        if done < self.current:
            self.finished += self.current
        self.current, self.current_total = done, total

    @property
    def done(self) -> int:
        return self.finished + self.current

    @property
    def total(self) -> int | None:
        return None if self.current_total is None else self.finished + self.current_total

    def text(self, now: float) -> str:
        return transfer_text([(self.done, self.total, now - self.first, True)])


def _rate(per_second: float) -> str:
    return f"{per_second:.1f}/s" if per_second >= 1 else f"{per_second * 60:.1f}/min"


@dataclass
class _Stage:
    known: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    ran: int = 0
    failed: int = 0
    first: float | None = None


class Board:
    """Counts per stage (module docstring); ``start`` is the build's start time (seconds, any clock)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.stages: dict[str, _Stage] = {s: _Stage() for s in STAGES}
        self.transfers: dict[str, tuple[int, int | None, float, bool]] = {}

    def _stage(self, family: str) -> _Stage | None:
        name = stage_of(family)
        return self.stages[name] if name else None

    def known(self, task_id: str, family: str) -> None:
        """A task of the build (to run, or complete already)."""
        st = self._stage(family)
        if st is not None:
            st.known.add(task_id)

    def complete_already(self, task_id: str, family: str) -> None:
        """A task found complete when the build was scheduled."""
        st = self._stage(family)
        if st is not None:
            st.known.add(task_id)
            st.done.add(task_id)

    def started(self, family: str, now: float) -> None:
        st = self._stage(family)
        if st is not None and st.first is None:
            st.first = now

    def finished(self, task_id: str, family: str, *, ok: bool = True) -> None:
        """A task run in this build ended (``ok=False``: it failed)."""
        st = self._stage(family)
        if st is None:
            return
        st.known.add(task_id)
        if task_id in self.transfers:
            self.transfers[task_id] = (*self.transfers[task_id][:3], False)
        if ok and task_id not in st.done:
            st.done.add(task_id)
            st.ran += 1
        elif not ok:
            st.failed += 1

    def counts(self) -> dict[str, tuple[int, int]]:
        """``stage -> (done, total)`` of the stages with tasks."""
        return {n: (len(s.done), len(s.known)) for n, s in self.stages.items() if s.known}

    def rows(self, now: float) -> list[tuple[str, int, int, str]]:
        """``(stage, done, total, detail)`` of the stages with tasks; ``detail``: throughput and ETA while the
        stage runs, failures, and the bytes of running downloads (fetch)."""
        out = []
        for name, st in self.stages.items():
            if not st.known:
                continue
            details = []
            if name == "fetch" and self.transfers:
                details.append(transfer_text(self.transfers.values()))
            if st.ran and st.first is not None and now > st.first and len(st.done) < len(st.known):
                rate = st.ran / (now - st.first)
                details.append(f"{_rate(rate)} ETA {_duration((len(st.known) - len(st.done)) / rate)}")
            if st.failed:
                details.append(f"({st.failed} failed)")
            out.append((name, len(st.done), len(st.known), " ".join(details)))
        return out

    def header(self, now: float) -> str:
        return f"[progress {_duration(now - self.start)}]"

    def line(self, now: float) -> str:
        parts = [f"{name} {done}/{total}" + (f" {detail}" if detail else "")
                 for name, done, total, detail in self.rows(now)]
        return f"{self.header(now)} " + (" | ".join(parts) if parts else "scheduling")

    def transfer(self, task_id: str, done: int, total: int | None, seconds: float, *, running: bool = True) -> None:
        """Bytes of a task's downloads: ``done`` of ``total`` (None: unknown) in ``seconds``."""
        self.transfers[task_id] = (done, total, seconds, running)
