"""The cyclic garbage collector paused around the tasks that handle every image's records (pipeline.gcpause)."""
from __future__ import annotations

import gc

import luigi
import pytest

from pipeline.gcpause import collector_paused
from tasks.base import PipelineTask


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_collector_paused_inside_and_restored_after_also_on_an_error():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()  # off before: left off


class _Seen(PipelineTask):
    """Records whether the collector ran during ``run`` (in a class attribute: luigi caches instances)."""

    label = luigi.Parameter()
    seen: dict[str, bool] = {}

    def run(self):
        self.seen[self.label] = gc.isenabled()
        if self.label.endswith("fails"):
            raise RuntimeError("failed run")


class _Paused(_Seen):
    pause_collector = True


class _Generator(_Seen):
    pause_collector = True

    def run(self):  # dynamic dependencies: runs as it is
        self.seen[self.label] = gc.isenabled()
        yield from ()


def test_a_task_that_asks_for_it_runs_with_the_collector_paused_and_gives_it_back():
    _Paused(label="paused").run()
    assert _Seen.seen["paused"] is False and gc.isenabled()
    with pytest.raises(RuntimeError):
        _Paused(label="paused fails").run()
    assert _Seen.seen["paused fails"] is False and gc.isenabled()
    _Seen(label="plain").run()
    assert _Seen.seen["plain"] is True
    list(_Generator(label="generator").run())
    assert _Seen.seen["generator"] is True


def test_the_tasks_over_every_images_records_pause_the_collector():
    from tasks.dataset import AssembleTiles, ComputeStats, ExportAnnotationTodo, SelectTiles, SourcePool, SplitDataset
    from tasks.release import BuildRelease, StageRelease
    from tasks.scene import CountSegments, LabelScene, PrepareScene, TileScene

    assert all(t.pause_collector for t in (AssembleTiles, SplitDataset, ComputeStats, StageRelease, BuildRelease))
    # pixel work, model training, GeoTIFF export and a run with dynamic dependencies keep the collector
    assert not any(t.pause_collector for t in (PrepareScene, TileScene, LabelScene, CountSegments, SelectTiles,
                                               ExportAnnotationTodo, SourcePool))


class _Frozen(PipelineTask):
    """Writes the collector's frozen-object count seen by ``run`` (and its process id) to its output."""

    label = luigi.Parameter()
    folder = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"{self.folder}/{self.label}.txt")

    def run(self):
        import os

        with self.output().open("w") as f:
            f.write(f"{gc.get_freeze_count()} {os.getpid()}")


def test_a_task_in_a_forked_worker_process_freezes_what_it_inherited_and_the_scheduling_process_does_not(tmp_path):
    """Luigi forks a process per task with 2 workers: there the objects inherited from the scheduling process are
    frozen (the task's collections scan only its own); a task run in the scheduling process (1 worker) freezes
    nothing, so the cycles of the many tasks it runs are still collected."""
    import os

    gc.unfreeze()
    forked = [_Frozen(label=f"forked-{i}", folder=str(tmp_path)) for i in range(2)]
    assert luigi.build(forked, workers=2, local_scheduler=True, log_level="WARNING")
    for task in forked:
        frozen, pid = map(int, open(task.output().path).read().split())
        assert pid != os.getpid() and frozen > 1000
    in_process = _Frozen(label="in-process", folder=str(tmp_path))
    assert luigi.build([in_process], workers=1, local_scheduler=True, log_level="WARNING")
    frozen, pid = map(int, open(in_process.output().path).read().split())
    assert pid == os.getpid() and frozen == 0 and gc.get_freeze_count() == 0
