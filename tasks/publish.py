"""Publish a built release to S3: ``luigi --module pipeline PublishRelease --PipelineConfig-publish-url
s3://bucket/prefix`` (the work is :func:`pipeline.sources.object_store.publish_release`)."""
from __future__ import annotations

import luigi

from pipeline.errors import ConfigError
from tasks.base import PipelineTask
from tasks.config import cfg, publish_url, release_dir, s3_endpoint
from tasks.release import BuildRelease


class S3ObjectTarget(luigi.Target):
    """One object in S3 (or an S3-compatible store); it exists when a HEAD request finds it."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.url = url
        self.path = url
        self.endpoint_url = endpoint_url

    def exists(self) -> bool:
        from pipeline.sources.object_store import exists

        return exists(self.url, endpoint_url=self.endpoint_url)


class PublishRelease(PipelineTask):
    """Upload every file of the release, each checked against the manifest's sha256, ``manifest.json``
    last: the release is published (this task complete) exactly when its manifest is in the bucket."""

    def requires(self):
        return BuildRelease()

    def output(self):
        url = publish_url()
        if url is None:
            raise ConfigError("PublishRelease needs [PipelineConfig] publish_url, e.g. "
                             "--PipelineConfig-publish-url s3://bucket/prefix")
        return S3ObjectTarget(f"{url}/manifest.json", endpoint_url=s3_endpoint())

    def run(self):
        from pipeline.sources.object_store import publish_release

        url = publish_url()
        if url is None:  # output() refused already; this keeps the type checker informed
            raise ConfigError("PublishRelease needs [PipelineConfig] publish_url")
        self.set_status_message(f"publishing release {cfg().release} to {url}")

        def progress(done: int, total: int) -> None:
            self.set_progress_percentage(int(99 * done / max(1, total)))

        result = publish_release(release_dir(), url, endpoint_url=s3_endpoint(), progress=progress)
        self.set_progress_percentage(100)
        self.set_status_message(f"published {result['files']} files to {url} ({result['uploaded']} uploaded, "
                                f"{result['skipped']} already there)")
        print(f"\nPublished release {cfg().release} -> {result['manifest']} ({result['uploaded']} files uploaded, "
              f"{result['skipped']} already there, {result['deleted']} stray objects removed)\n", flush=True)
