"""Releases and raw caches on S3 (pipeline.sources.object_store, tasks.publish, FetchSource's raw cache) against
moto's real S3 server on loopback, started by the test."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import boto3
import luigi
import luigi.configuration
import pytest
from moto.server import ThreadedMotoServer

from pipeline.errors import ObjectStoreError
from pipeline.release.publish import manifest_checksums, publish_release
from pipeline.sources.config import SourceConfig
from pipeline.sources.object_store import join_url, put_file, raw_cache_url, restore_raw, upload_raw
from tests.helpers_build import DEMO_SOURCES, RELEASE, luigi_cmd, pipeline_env, release_dir, run_luigi

BUCKET = "oem-releases"
CACHE = "oem-raw-cache"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto_endpoint():
    old = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(CREDS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=CACHE)
    yield endpoint
    server.stop()
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _objects(endpoint, bucket: str, prefix: str) -> dict[str, dict]:
    pages = _s3(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix):]: o for page in pages for o in page.get("Contents", [])}


def _local_files(rel: Path) -> set[str]:
    return {p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file()}


def _assert_published(endpoint, prefix: str, rel: Path) -> None:
    """Every file of ``rel`` is under ``prefix`` and hashes to the sha256 that the published manifest
    (or, for files it does not list, the local file) gives; nothing else is there."""
    objs = _objects(endpoint, BUCKET, prefix)
    assert set(objs) == _local_files(rel)
    s3 = _s3(endpoint)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read())
    expected = manifest_checksums(manifest)
    assert len(expected) > 10
    for name in objs:
        body = s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()
        want = expected.get(name) or hashlib.sha256((rel / name).read_bytes()).hexdigest()
        assert hashlib.sha256(body).hexdigest() == want, name


@pytest.fixture(scope="module")
def published(tmp_path_factory, moto_endpoint):
    """``luigi --module pipeline PublishRelease``: builds the small demo and publishes it to moto."""
    base = tmp_path_factory.mktemp("publish")
    sources = base / "sources.yaml"
    sources.write_text(DEMO_SOURCES)
    cmd = luigi_cmd(base / "data", sources) + [
        "--PipelineConfig-publish-url", f"s3://{BUCKET}/oem", "--PipelineConfig-s3-endpoint-url", moto_endpoint]
    cmd[cmd.index("BuildRelease")] = "PublishRelease"
    proc = run_luigi(cmd, env=pipeline_env(**CREDS))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return {"data": base / "data", "sources": sources, "cmd": cmd, "first": proc}


def test_publish_release_cli_manifest_last_and_rerun_uploads_nothing(published, moto_endpoint):
    rel = release_dir(published["data"])
    prefix = f"oem/{RELEASE}/"
    _assert_published(moto_endpoint, prefix, rel)
    objs = _objects(moto_endpoint, BUCKET, prefix)
    manifest_time = objs["manifest.json"]["LastModified"]
    assert all(o["LastModified"] <= manifest_time for o in objs.values())  # manifest.json went up last

    out = published["first"].stdout
    assert f"Published release {RELEASE} -> s3://{BUCKET}/oem/{RELEASE}/manifest.json" in out
    # the console summary at the end of the build
    assert "Build summary:" in out and ", 0 failed," in out and "PublishRelease 1" in out
    assert "BuildRelease 1" in out and "FetchSource 1" in out
    n_rejects = len((rel / "rejects.csv").read_text().splitlines()) - 1
    assert f"Rejects: {n_rejects} (" in out
    assert f"Release {RELEASE}: " in out and str(rel.resolve()) in out
    assert f"Publish target: s3://{BUCKET}/oem/{RELEASE}/manifest.json" in out

    again = run_luigi(published["cmd"], env=pipeline_env(**CREDS))
    assert again.returncode == 0, again.stderr
    assert "Build summary: 0 tasks ran, 0 failed, 0 not run (failed dependency, scheduling error or another worker), " \
           "1 already done" in again.stdout
    assert "Published release" not in again.stdout
    after = _objects(moto_endpoint, BUCKET, prefix)
    assert {k: (o["ETag"], o["LastModified"]) for k, o in after.items()} == \
           {k: (o["ETag"], o["LastModified"]) for k, o in objs.items()}

    # the library call on a published release uploads nothing either
    result = publish_release(rel, f"s3://{BUCKET}/oem/{RELEASE}", endpoint_url=moto_endpoint)
    assert result["uploaded"] == 0 and result["deleted"] == 0


def test_interrupted_publish_leaves_no_manifest_and_rerun_completes(published, moto_endpoint):
    rel = release_dir(published["data"])
    url = f"s3://{BUCKET}/interrupted/{RELEASE}"
    prefix = f"interrupted/{RELEASE}/"
    _s3(moto_endpoint).put_object(Bucket=BUCKET, Key=prefix + "stray-from-an-older-attempt.tif", Body=b"x")

    class Killed(Exception):
        pass

    def die_after_five(done, total):
        if done >= 5:
            raise Killed  # the process dies half-way through the uploads

    with pytest.raises(Killed):
        publish_release(rel, url, endpoint_url=moto_endpoint, progress=die_after_five, threads=1)
    partial = _objects(moto_endpoint, BUCKET, prefix)
    assert "manifest.json" not in partial
    already = len(partial) - 1  # the stray object aside (an upload in flight may finish after the 5th)
    assert 5 <= already < len(_local_files(rel)) - 1

    result = publish_release(rel, url, endpoint_url=moto_endpoint)
    total = len(_local_files(rel))
    assert result["files"] == total
    assert result["skipped"] == already and result["uploaded"] == total - already and result["deleted"] == 1
    _assert_published(moto_endpoint, prefix, rel)
    assert publish_release(rel, url, endpoint_url=moto_endpoint)["uploaded"] == 0


def test_publish_refuses_files_that_differ_from_the_manifest(published, moto_endpoint, tmp_path):
    rel = tmp_path / RELEASE
    shutil.copytree(release_dir(published["data"]), rel)
    manifest = json.loads((rel / "manifest.json").read_text())
    tile = rel / manifest["images"][-1]["label"]
    data = bytearray(tile.read_bytes())
    data[-1] ^= 0xFF
    tile.write_bytes(bytes(data))
    url = f"s3://{BUCKET}/tampered/{RELEASE}"
    with pytest.raises(ObjectStoreError, match="differs from the expected"):
        publish_release(rel, url, endpoint_url=moto_endpoint, threads=1)
    assert "manifest.json" not in _objects(moto_endpoint, BUCKET, f"tampered/{RELEASE}/")

    # a release name that is already published with other content is never overwritten
    with pytest.raises(ObjectStoreError, match="already published"):
        other = tmp_path / "other"
        shutil.copytree(release_dir(published["data"]), other)
        (other / "manifest.json").write_text((other / "manifest.json").read_text().replace("\n", "\n ", 1))
        publish_release(other, f"s3://{BUCKET}/oem/{RELEASE}", endpoint_url=moto_endpoint)


def test_publish_refuses_links_and_files_the_manifest_does_not_list(published, moto_endpoint, tmp_path):
    """Before, every file of the folder went up, a link's target included: a link to a file outside the release
    (here a private key) was published in the bucket."""
    rel = tmp_path / RELEASE
    shutil.copytree(release_dir(published["data"]), rel)
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    (rel / "stats" / "notes.csv").symlink_to(secret)
    url = f"s3://{BUCKET}/links/{RELEASE}"
    with pytest.raises(ObjectStoreError, match=r"not published: stats/notes.csv: a symbolic link"):
        publish_release(rel, url, endpoint_url=moto_endpoint)
    (rel / "stats" / "notes.csv").unlink()
    (rel / "scratch.txt").write_text("left over")
    with pytest.raises(ObjectStoreError, match=r"not published: scratch.txt: not in the manifest"):
        publish_release(rel, url, endpoint_url=moto_endpoint)
    assert _objects(moto_endpoint, BUCKET, f"links/{RELEASE}/") == {}  # nothing went up
    (rel / "scratch.txt").unlink()
    result = publish_release(rel, url, endpoint_url=moto_endpoint)  # the browser is unlisted and goes up
    assert result["unlisted"] == sum(1 for p in (rel / "viewer").rglob("*") if p.is_file()) > 0


def test_put_file_multipart_and_checksum(moto_endpoint, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    url = f"s3://{BUCKET}/multipart/big.bin"
    assert put_file(big, url, sha256=sha, endpoint_url=moto_endpoint, multipart_threshold=6 << 20) == 12 << 20
    body = _s3(moto_endpoint).get_object(Bucket=BUCKET, Key="multipart/big.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    with pytest.raises(ObjectStoreError, match="not uploaded"):
        put_file(big, f"s3://{BUCKET}/multipart/wrong.bin", sha256="0" * 64, endpoint_url=moto_endpoint)
    assert join_url("s3://b/p/", "v1/", "x.tif") == "s3://b/p/v1/x.tif"


def _fake_fetch(dest: Path) -> dict:
    files = {"a/scene1.tif": os.urandom(5000), "a/scene1.geojson": b'{"type":"FeatureCollection","features":[]}',
             "scene2.tif": os.urandom(3000)}
    for rel, body in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(body)
    (dest / "downloads").mkdir()
    (dest / "downloads" / "archive.tar.gz").write_bytes(b"already extracted, not cached")
    return {"source": "up", "kind": "local", "location": "https://example.org/up.tar.gz", "root": str(dest),
            "license": "CC0", "attribution": "x", "archives": [], "items": [],
            "files": [{"path": rel, "url": "https://example.org/up.tar.gz", "bytes": len(body),
                       "sha256": hashlib.sha256(body).hexdigest(), "license": "CC0", "attribution": "x"}
                      for rel, body in sorted(files.items())]}


def test_raw_cache_round_trip_and_corrupt_cache(moto_endpoint, tmp_path):
    src = SourceConfig(name="up", kind="local", location="https://example.org/up.tar.gz", license="CC0",
                       attribution="x")
    cache = f"s3://{CACHE}/raw"
    first = tmp_path / "one" / "files"
    first.mkdir(parents=True)
    record = _fake_fetch(first)
    assert restore_raw(src, tmp_path / "x", cache, endpoint_url=moto_endpoint) is None  # nothing cached yet
    up = upload_raw(src, first, record, cache, endpoint_url=moto_endpoint)
    assert up["files"] == 3 and up["uploaded"] == 3
    assert upload_raw(src, first, record, cache, endpoint_url=moto_endpoint)["uploaded"] == 0
    prefix = raw_cache_url(cache, src).split(f"s3://{CACHE}/", 1)[1] + "/"
    keys = set(_objects(moto_endpoint, CACHE, prefix))
    assert keys == {"index.json", "files/a/scene1.tif", "files/a/scene1.geojson", "files/scene2.tif"}

    second = tmp_path / "two" / "files"
    restored = restore_raw(src, second, cache, endpoint_url=moto_endpoint)
    assert restored == {**record, "root": str(second)}
    for f in record["files"]:
        assert (second / f["path"]).read_bytes() == (first / f["path"]).read_bytes()

    # another configuration of the source is another cache entry
    other = SourceConfig(name="up", kind="local", location="https://example.org/up-v2.tar.gz", license="CC0",
                         attribution="x")
    assert restore_raw(other, tmp_path / "three", cache, endpoint_url=moto_endpoint) is None

    # a cached object that does not match the index: not restored (the caller fetches again)
    _s3(moto_endpoint).put_object(Bucket=CACHE, Key=prefix + "files/scene2.tif", Body=os.urandom(3000))
    assert restore_raw(src, tmp_path / "four" / "files", cache, endpoint_url=moto_endpoint) is None
    # a local folder source (read in place, root elsewhere) is not cached
    assert upload_raw(src, tmp_path / "elsewhere", record, cache, endpoint_url=moto_endpoint) is None


def test_fetch_source_uses_the_raw_cache(moto_endpoint, tmp_path, monkeypatch):
    import tasks  # noqa: F401  (registers the tasks)
    from tasks import BuildRelease

    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_SOURCES)
    conf = luigi.configuration.get_config()
    conf.set("PipelineConfig", "sources_file", str(sources))
    conf.set("PipelineConfig", "raw_cache_url", f"s3://{CACHE}/luigi")
    conf.set("PipelineConfig", "s3_endpoint_url", moto_endpoint)
    try:
        conf.set("PipelineConfig", "data_dir", str(tmp_path / "a"))
        fetch = BuildRelease().requires()["fetch"]["demo"]
        assert luigi.build([fetch], local_scheduler=True, workers=1, log_level="WARNING")
        rec_a = json.loads(Path(fetch.output().path).read_text())
        assert Path(fetch.output().path).parent.name == f"demo-{fetch.raw}"

        import oem_demo.generate  # the demo adapter calls it through this module

        def no_generation(*a, **k):
            raise AssertionError("the demo was generated again instead of being restored from the cache")

        monkeypatch.setattr(oem_demo.generate, "generate_demo", no_generation)
        conf.set("PipelineConfig", "data_dir", str(tmp_path / "b"))
        assert luigi.build([fetch], local_scheduler=True, workers=1, log_level="WARNING")
        rec_b = json.loads(Path(fetch.output().path).read_text())
    finally:
        for key in ("raw_cache_url", "s3_endpoint_url", "data_dir", "sources_file"):
            conf.remove_option("PipelineConfig", key)
    assert {k: v for k, v in rec_b.items() if k != "root"} == {k: v for k, v in rec_a.items() if k != "root"}
    for f in rec_a["files"]:
        got = tmp_path / "b" / "raw" / f"demo-{fetch.raw}" / "files" / f["path"]
        assert hashlib.sha256(got.read_bytes()).hexdigest() == f["sha256"]
