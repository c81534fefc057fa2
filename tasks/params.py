"""The significant Luigi parameters of the tasks: everything that determines a task's output, and nothing else.

Parameter sets grow along the DAG (a task carries what it needs to name its own output and to require its
inputs): source -> catalog -> scene (prepare, tile, label, count) and pool -> selection -> split -> release.
Every output name carries :meth:`tasks.base.PipelineTask.digest`, a digest of the task's parameters, so task
ids and output paths differ exactly when outputs differ.  Only the root (:class:`RootParams`: ``BuildRelease``,
``PublishRelease``) reads the configuration: each of its parameters not given explicitly is taken from
``[PipelineConfig]`` (command line ``--PipelineConfig-*`` or ``luigi.cfg``), and the derived ones (sources and
their digests, code versions, annotation index, previous release) are computed once, when the root task is
created (:mod:`tasks.plan`), then passed down with :meth:`luigi.Task.clone`.
"""
from __future__ import annotations

from typing import Any

import luigi
from luigi.parameter import _no_value
from luigi.task_register import Register

from pipeline.datafolder import location_problem, remember_location
from pipeline.dataset.ids import check_release_name
from pipeline.errors import ConfigError, ReleaseTaken
from pipeline.params import config_problems
from tasks import plan, versions
from tasks.config import (
    PipelineConfig,
    annotation_cache_dir,
    annotation_dir,
    data_dir,
    done_dir,
    release_dir,
    releases_root,
)


class FromConfig:
    """Mixin for a Luigi parameter of a root task: with no value on the command line (``--BuildRelease-seed``)
    or in ``[BuildRelease]``, take ``[PipelineConfig] <name>`` (``--PipelineConfig-seed``, ``luigi.cfg``)."""

    def _value_iterator(self, task_name, param_name):
        yield from super()._value_iterator(task_name, param_name)  # type: ignore[misc]
        yield (getattr(PipelineConfig(), param_name), None)


class ConfigParameter(FromConfig, luigi.Parameter):
    pass


class ConfigIntParameter(FromConfig, luigi.IntParameter):
    pass


class ConfigFloatParameter(FromConfig, luigi.FloatParameter):
    pass


class ConfigListParameter(FromConfig, luigi.ListParameter):
    pass


class ConfigBoolParameter(FromConfig, luigi.BoolParameter):
    """A boolean root parameter (explicit ``true``/``false``) defaulting to ``[PipelineConfig]``."""

    def __init__(self, *args, **kwargs):
        kwargs["parsing"] = luigi.BoolParameter.EXPLICIT_PARSING
        super().__init__(*args, **kwargs)
        self._default = _no_value  # BoolParameter's implicit default False would hide [PipelineConfig]




class SourceParams:
    source_name = luigi.Parameter(description="the source's name in sources.yaml")
    raw = luigi.Parameter(description="digest of the source's sources.yaml entry and the fetch code")


class CatalogParams(SourceParams):
    catalog = luigi.Parameter(description="digest of the raw digest and the catalog (adapter) code")


class PrepareParams(CatalogParams):
    raw = luigi.Parameter(significant=False, description="the source's raw digest (finds its catalog; "
                          "``scene_inputs`` says what the outputs are made from)")
    catalog = luigi.Parameter(significant=False, description="the source's catalog digest (finds the scene's record)")
    scene_inputs = luigi.Parameter(description="digest of what the scene is made from (tasks.scenekey.scene_digest)")
    scene_id = luigi.Parameter(description="the adapter's scene id")
    target_gsds = luigi.ListParameter(description="GSDs (m) that finer sources go to")
    tile_size = luigi.IntParameter(description="tile width and height in pixels")
    max_grid_pixels = luigi.IntParameter(description="most output pixels one scene may produce")
    code_prepare = luigi.Parameter(description="code version of the prepare stage")


class TileParams(PrepareParams):
    max_nodata_fraction = luigi.FloatParameter(description="tiles with more nodata are dropped")
    code_tile = luigi.Parameter(description="code version of the tile stage")


class LabelParams(TileParams):
    annotations = luigi.Parameter(default="", description="digest of the scene's completed annotations ('' none)")
    code_label = luigi.Parameter(description="code version of the label stage")


class CountParams(LabelParams):
    code_count = luigi.Parameter(description="code version of the count stage")


# ---------------------------------------------------------------------------------------------- dataset tasks

class SceneSetParams:
    """What the per-scene tasks of a set of scenes share: processing parameters and code versions."""

    target_gsds = luigi.ListParameter(description="GSDs (m) that finer sources go to")
    tile_size = luigi.IntParameter(description="tile width and height in pixels")
    max_nodata_fraction = luigi.FloatParameter(description="tiles with more nodata are dropped")
    max_grid_pixels = luigi.IntParameter(description="most output pixels one scene may produce")
    codes = luigi.DictParameter(description="code versions of the prepare, tile, label, count and dataset stages")

    def scene_params(self, source: list | tuple, scene_id: str, scene_inputs: str, annotations: str) -> dict:
        """The parameters of the per-scene tasks of one scene (``scene_inputs``:
        :func:`tasks.scenekey.scene_digest`)."""
        name, raw, catalog = source
        c = self.codes
        return {"source_name": name, "raw": raw, "catalog": catalog, "scene_inputs": scene_inputs, "scene_id": scene_id,
                "target_gsds": self.target_gsds, "tile_size": self.tile_size,
                "max_nodata_fraction": self.max_nodata_fraction, "max_grid_pixels": self.max_grid_pixels,
                "annotations": annotations,
                "code_prepare": c["prepare"], "code_tile": c["tile"], "code_label": c["label"],
                "code_count": c["count"]}


class SourcePoolParams(CatalogParams, SceneSetParams):
    """One source's share of the pool: it depends on that source, its annotations and the processing only."""

    annotations = luigi.Parameter(default="", description="digest of the source's completed annotations ('' none)")
    annotation_index = luigi.Parameter(significant=False, description="the annotation index to look scenes up in "
                                       "(not significant: ``annotations`` is this source's part of it)")


class PoolParams(SceneSetParams):
    sources = luigi.ListParameter(description="[[name, raw digest, catalog digest], ...] of the enabled sources")
    annotation_index = luigi.Parameter(description="digest of the annotation index ('' when there is none)")


class SelectParams(PoolParams):
    seed = luigi.IntParameter(description="seed of every random choice (splits, sampling)")
    region_min = luigi.IntParameter(description="fewest images a sampled region keeps")
    region_max = luigi.IntParameter(description="regions with more candidates are sampled")
    label_every = luigi.IntParameter(description="hard-image selection labels every k-th tile")
    selection_epochs = luigi.IntParameter(description="training epochs of the selection model")
    random_fraction = luigi.FloatParameter(description="share of a region's quota drawn at random")
    previous = luigi.Parameter(description="the release this one continues: a name under releases/, a folder, "
                                           "or '' for none")
    previous_digest = luigi.Parameter(description="digest of the previous release's manifest.json ('none')")


class SplitParams(SelectParams):
    split_trials = luigi.IntParameter(description="seeded random split trials per region")


# ---------------------------------------------------------------------------------------------- the root

#: Root parameters derived from the configuration and the data folder (never given by users).
DERIVED = ("sources", "annotation_index", "codes", "previous", "previous_digest", "code_release")


class RootParams(SplitParams):
    """``BuildRelease`` and ``PublishRelease`` (with ``metaclass=RootRegister``): every parameter defaults to the
    configuration (module docstring)."""

    release = ConfigParameter(description="release version: data/releases/<release>/")
    seed = ConfigIntParameter(description="seed of every random choice (splits, sampling)")
    target_gsds = ConfigListParameter(description="GSDs (m) that finer sources go to")
    tile_size = ConfigIntParameter(description="tile width and height in pixels")
    max_nodata_fraction = ConfigFloatParameter(description="tiles with more nodata are dropped")
    max_grid_pixels = ConfigIntParameter(description="most output pixels one scene may produce (a larger "
                                                     "one is rejected at planning)")
    split_trials = ConfigIntParameter(description="seeded random split trials per region")
    region_min = ConfigIntParameter(description="fewest images a sampled region keeps")
    region_max = ConfigIntParameter(description="regions with more candidates are sampled")
    label_every = ConfigIntParameter(description="hard-image selection labels every k-th tile")
    selection_epochs = ConfigIntParameter(description="training epochs of the selection model")
    random_fraction = ConfigFloatParameter(description="share of a region's quota drawn at random")
    viewer = ConfigBoolParameter(description="write the release's static browser to <release>/viewer/")
    code_release = luigi.Parameter(description="code version of the release stage")



class RootRegister(Register):
    """Metaclass of the root tasks: fills in the derived parameters (:data:`DERIVED`) that the caller did not
    give, computing them once per instantiation (Luigi's ``Register.__call__`` and ``Task.__init__`` both
    resolve the parameters; both then see the same values)."""

    def __call__(cls, *args, **kwargs):
        missing = [n for n in DERIVED if n not in kwargs]
        if missing:
            task_cls: Any = cls
            given = [(n, p) for n, p in task_cls.get_params() if n not in DERIVED]
            user_kwargs = {k: v for k, v in kwargs.items() if k not in DERIVED}
            user = dict(task_cls.get_param_values(given, args, user_kwargs))
            derived = derive(str(user["release"]))
            kwargs = {**kwargs, **{n: derived[n] for n in missing}}
        task = super().__call__(*args, **kwargs)
        if missing and getattr(task, "built_once", False):  # made to be built (not cloned): tasks.taken
            from tasks.taken import taken_problem

            problem = taken_problem(task.release, release_dir(task.release), task.to_str_params(only_significant=True))
            if problem:
                raise ReleaseTaken(problem)
        return task


#: The settings :func:`pipeline.params.config_problems` checks.
CHECKED = ("tile_size", "target_gsds", "max_nodata_fraction", "split_trials", "region_min", "region_max",
           "label_every", "selection_epochs", "random_fraction", "max_grid_pixels")


def derive(release: str) -> dict:
    """The root's derived parameters (:data:`DERIVED`) for building ``release`` with the current configuration."""
    check_release_name(release)  # before anything reads or writes under releases/
    moved = location_problem(data_dir())  # work records name files by absolute path (pipeline.datafolder)
    if moved:
        raise ConfigError(moved)
    c = PipelineConfig()
    problems = config_problems(**{name: getattr(c, name) for name in CHECKED})
    if problems:  # before anything is read or written: a bad value used to fail a late task or pass
        raise ConfigError("[PipelineConfig] " + "; ".join(problems))
    inside = plan.written_folder_problems(c.sources_file, {"data folder": data_dir(), "annotation folder":
                                                           annotation_dir()}, max_bytes=int(c.sources_max_bytes))
    if inside:
        raise ConfigError(f"{c.sources_file}: " + "; ".join(inside))
    codes = versions.code_versions()
    cache = annotation_cache_dir()
    index = plan.annotation_index(done_dir(), cache)
    prev, prev_digest = plan.previous(releases_root(), release, c.previous_release)
    derived = {
        "sources": plan.sources_param(c.sources_file, max_bytes=int(c.sources_max_bytes)),
        "annotation_index": plan.store_index(index, cache),
        "codes": {k: codes[k] for k in plan.POOL_CODES},
        "code_release": codes["release"],
        "previous": prev,
        "previous_digest": prev_digest,
    }
    if not plan.is_read_only():  # the configuration is good: this build writes into the data folder
        try:
            remember_location(data_dir())  # a full disk is NoSpace (pipeline.atomic), not an OSError
        except OSError as exc:  # a read-only mount, a folder of another user: before any task, in one line
            raise ConfigError(f"the data folder {data_dir()} cannot be written ({exc.strerror or exc}: "
                              f"{exc.filename or data_dir()}): set --PipelineConfig-data-dir to a folder this "
                              "build may write") from exc
    return derived
