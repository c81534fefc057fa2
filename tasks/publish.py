"""Publish a built release to S3: ``luigi --module pipeline PublishRelease --PipelineConfig-publish-url
s3://bucket/prefix`` (the work is :func:`pipeline.release.publish.publish_release`)."""
from __future__ import annotations

import luigi

from pipeline.errors import ConfigError
from tasks.base import PipelineTask
from tasks.config import release_dir
from tasks.params import ConfigParameter, RootParams, RootRegister
from tasks.release import BuildRelease


class OptionalConfigParameter(ConfigParameter):
    """A root parameter from ``[PipelineConfig]`` that may be unset (None)."""

    def normalize(self, x):
        return None if x is None else str(x)


class S3ObjectTarget(luigi.Target):
    """One object in S3 (or an S3-compatible store); it exists when a HEAD request finds it."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.url = url
        self.path = url
        self.endpoint_url = endpoint_url

    def exists(self) -> bool:
        from pipeline.sources.object_store import exists

        return exists(self.url, endpoint_url=self.endpoint_url)


class PublishRelease(RootParams, PipelineTask, metaclass=RootRegister):
    """Upload every file of the release, each checked against the manifest's sha256, ``manifest.json``
    last: the release is published (this task complete) exactly when its manifest is in the bucket."""

    publish_url = OptionalConfigParameter(
        description="the release goes to <publish_url>/<release>/ (s3://bucket/prefix)")
    s3_endpoint_url = OptionalConfigParameter(description="S3-compatible endpoint; default AWS")

    def requires(self):
        return self.clone(BuildRelease)

    def url(self) -> str:
        from pipeline.sources.object_store import join_url

        if not self.publish_url:
            raise ConfigError("PublishRelease needs [PipelineConfig] publish_url, e.g. "
                              "--PipelineConfig-publish-url s3://bucket/prefix")
        return join_url(str(self.publish_url), str(self.release))

    def output(self):
        return S3ObjectTarget(f"{self.url()}/manifest.json", endpoint_url=self.s3_endpoint_url or None)

    def run(self):
        from pipeline.release.publish import publish_release

        url = self.url()
        self.set_status_message(f"publishing release {self.release} to {url}")

        def progress(done: int, total: int) -> None:
            self.set_progress_percentage(int(99 * done / max(1, total)))

        result = publish_release(release_dir(self.release), url, endpoint_url=self.s3_endpoint_url or None,
                                 progress=progress)
        self.set_progress_percentage(100)
        self.set_status_message(f"published {result['files']} files to {url} ({result['uploaded']} uploaded, "
                                f"{result['skipped']} already there)")
        print(f"\nPublished release {self.release} -> {result['manifest']} ({result['uploaded']} files uploaded, "
              f"{result['skipped']} already there, {result['deleted']} stray objects removed)\n", flush=True)
