"""Global settings of a build (section ``[PipelineConfig]`` of ``luigi.cfg``) and the paths they imply."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import luigi

from pipeline.datafolder import where
from pipeline.limits import DEFAULT_LIMITS, MAX_GRID_TOTAL, Limits
from pipeline.scene import Scene


class PipelineConfig(luigi.Config):
    sources_file = luigi.Parameter(default="sources.yaml", description="the sources file to build from")
    data_dir = luigi.Parameter(default="data", description="root of raw downloads, work files and releases")
    seed = luigi.IntParameter(default=42, description="seed of every random choice (splits, sampling)")
    release = luigi.Parameter(default="v0.1.0", description="release version: data/releases/<release>/")
    target_gsds = luigi.ListParameter(default=(0.3, 0.5), description="GSDs (m) that finer sources go to")
    tile_size = luigi.IntParameter(default=1024, description="tile width and height in pixels")
    max_nodata_fraction = luigi.FloatParameter(default=0.05, description="tiles with more nodata are dropped")
    split_trials = luigi.IntParameter(default=1000, description="seeded random split trials per region")
    region_min = luigi.IntParameter(default=50, description="fewest images a sampled region keeps")
    region_max = luigi.IntParameter(default=70, description="regions with more candidates are sampled")
    label_every = luigi.IntParameter(default=10, description="hard-image selection labels every k-th tile")
    selection_epochs = luigi.IntParameter(default=12, description="training epochs of the selection model")
    random_fraction = luigi.FloatParameter(default=0.5, description="share of a region's quota drawn at random")
    annotation_dir = luigi.OptionalParameter(
        default=None, description="annotation folder (todo/ and done/); default <data_dir>/annotation")
    publish_url = luigi.OptionalParameter(
        default=None, description="PublishRelease copies the release to <publish_url>/<release>/ (s3://bucket/prefix)")
    raw_cache_url = luigi.OptionalParameter(
        default=None, description="FetchSource restores raw folders from / saves them to this s3:// prefix")
    s3_endpoint_url = luigi.OptionalParameter(
        default=None, description="S3-compatible endpoint of publish_url and raw_cache_url (MinIO, moto); "
        "default AWS (or $AWS_ENDPOINT_URL)")
    viewer = luigi.BoolParameter(
        default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="write the release's static browser to <release>/viewer/ (python -m pipeline browse)")
    progress = luigi.BoolParameter(
        default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="per-stage progress on the console (in place on a terminal, plain lines otherwise)")
    progress_interval = luigi.FloatParameter(default=10.0, description="seconds between progress lines")
    allow_partial_release = luigi.BoolParameter(
        default=False, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="when a source's fetch fails, write the release without it (its manifest sources entry "
        "and rejects.csv say why) instead of failing the build")
    previous_release = luigi.OptionalParameter(
        default=None, description="release whose image ids and splits this one keeps: a release name under "
        "<data_dir>/releases/ or a release folder; default: the newest release there older than the one being "
        "built (natural version order) that has a manifest.json; 'none': start afresh")
    # -- limits on hostile input (pipeline.limits; README "Limits") --------------------------------------
    allow_private_networks = luigi.BoolParameter(
        default=False, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="allow source URLs that resolve to loopback, link-local, private, multicast addresses")
    allowed_networks = luigi.ListParameter(
        default=(), description="networks (CIDR) allowed although not public, e.g. [\"10.1.2.0/24\"]")
    download_max_bytes = luigi.IntParameter(default=DEFAULT_LIMITS.download_max_bytes,
                                            description="largest file a download may bring (bytes)")
    download_deadline_s = luigi.FloatParameter(default=DEFAULT_LIMITS.download_deadline_s,
                                               description="longest one file's download may take (s)")
    download_min_rate = luigi.FloatParameter(default=DEFAULT_LIMITS.download_min_rate,
                                             description="slowest average download rate (bytes/s) over the window")
    download_rate_window_s = luigi.FloatParameter(default=DEFAULT_LIMITS.download_rate_window_s,
                                                  description="window (and grace period) of download_min_rate (s)")
    archive_max_bytes = luigi.IntParameter(default=DEFAULT_LIMITS.archive_max_bytes,
                                           description="largest total uncompressed size of an archive (bytes)")
    archive_max_entries = luigi.IntParameter(default=DEFAULT_LIMITS.archive_max_entries,
                                             description="most entries in an archive")
    archive_max_ratio = luigi.FloatParameter(default=DEFAULT_LIMITS.archive_max_ratio,
                                             description="highest compression ratio of an archive entry over 1 MiB")
    local_file_max_bytes = luigi.IntParameter(default=DEFAULT_LIMITS.local_file_max_bytes,
                                              description="largest local file or symlink target (bytes)")
    sidecar_max_bytes = luigi.IntParameter(default=DEFAULT_LIMITS.sidecar_max_bytes,
                                           description="largest JSON side-car read whole (bytes)")
    sources_max_bytes = luigi.IntParameter(default=DEFAULT_LIMITS.sources_max_bytes,
                                           description="largest sources file (bytes)")
    max_grid_pixels = luigi.IntParameter(default=MAX_GRID_TOTAL,
                                         description="most output pixels one scene may produce")


def cfg() -> PipelineConfig:
    return PipelineConfig()


def setting(name: str):
    """One ``[PipelineConfig]`` value, resolved as ``getattr(cfg(), name)`` would be (command line, then
    ``luigi.cfg``, then the default) without resolving the other ~30 parameters: the paths below are asked
    for thousands of times per build (1.4 ms per ``cfg()``: 7.7 s of a 2,000-image rebuild)."""
    return getattr(PipelineConfig, name).task_value("PipelineConfig", name)


def limits() -> Limits:
    """The limits on hostile input of this build (``[PipelineConfig]`` keys named like the fields).

    Not task parameters: they decide whether hostile input is rejected or fetched, never what a good input's
    pixels are (``max_grid_pixels`` does, so it is one: :mod:`tasks.params`); which files a fetch skipped and a
    catalog rejected they do decide, so they are in every source's ``raw`` digest
    (:func:`tasks.plan.limits_digest`), not in the per-scene tasks' keys."""
    c = cfg()
    # every Limits field that PipelineConfig declares a key for (from_mapping normalises allowed_networks)
    values = {f.name: getattr(c, f.name) for f in dataclasses.fields(Limits) if hasattr(PipelineConfig, f.name)}
    return Limits.from_mapping(values)


# Paths.  PipelineConfig gives where things are (data_dir, annotation_dir, sources_file); what a task computes
# comes from its parameters (tasks.params), never from here.

def data_dir() -> Path:
    """The data folder as an absolute path (records name files by it: :mod:`pipeline.datafolder`)."""
    return Path(where(setting("data_dir")))


def raw_dir(source: str, raw: str) -> Path:
    """``<data>/raw/<source>-<raw digest>/`` (``fetch.json`` and ``files/``)."""
    return data_dir() / "raw" / f"{source}-{raw}"


def catalog_path(source: str, catalog: str) -> Path:
    return data_dir() / "catalog" / f"{source}-{catalog}.json"


def work_dir() -> Path:
    return data_dir() / "work"


def history_dir() -> Path:
    """The releases' history records (:func:`pipeline.dataset.history.release_history`), named by manifest digest."""
    return work_dir() / "history"


def scene_dir(source: str, scene_id: str) -> Path:
    """Work files of one scene: ``<data>/work/scenes/<source>/<scene>/`` (each named by its task's digest, which
    carries the scene digest: :func:`tasks.scenekey.scene_digest`)."""
    return work_dir() / "scenes" / source / scene_id


def annotation_cache_dir() -> Path:
    """The annotation hash cache and the stored annotation indexes (:mod:`tasks.plan`)."""
    return work_dir() / "annotations"


def annotation_dir() -> Path:
    folder = setting("annotation_dir")
    return Path(folder) if folder else data_dir() / "annotation"


def done_dir() -> Path:
    """Completed 8-class annotations, one file per tile named by its key."""
    return annotation_dir() / "done"


def todo_dir() -> Path:
    """Pre-annotations of selected tiles still to be labelled."""
    return annotation_dir() / "todo"


def releases_root() -> Path:
    return data_dir() / "releases"


def release_dir(release: str | None = None) -> Path:
    return releases_root() / (cfg().release if release is None else release)


def s3_endpoint() -> str | None:
    return cfg().s3_endpoint_url or None


@functools.lru_cache(maxsize=64)
def _catalog(path: str, mtime_ns: int) -> dict[str, Scene]:
    import json

    data = json.loads(Path(path).read_text())
    return {d["scene_id"]: Scene.from_dict(d) for d in data["scenes"]}


def catalog_scenes(source: str, catalog: str) -> dict[str, Scene]:
    """Scene id -> Scene of a written catalog (cached per file version)."""
    p = catalog_path(source, catalog)
    return _catalog(str(p), p.stat().st_mtime_ns)


def load_scene(source: str, catalog: str, scene_id: str) -> Scene:
    return catalog_scenes(source, catalog)[scene_id]
