"""pipeline.sources.s3 and fetch_source for s3:// sources against moto's real S3 server on loopback."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pipeline.errors import FetchError
from pipeline.sources.config import SourceConfig
from pipeline.sources.fetch import fetch_source
from pipeline.sources.s3 import download_key, list_keys, parse_s3_url
from tests.loopback import LOOPBACK_LIMITS

BUCKET = "spacenet-dataset"
AOI = "spacenet/SN2_buildings/train/AOI_2_Vegas_Train"
IMG1 = os.urandom(40_000)
IMG2 = os.urandom(30_000)
GEOJSON = b'{"type": "FeatureCollection", "features": []}'


@pytest.fixture(scope="module")
def moto_endpoint():
    # moto's signed writes need some credentials; reads by the code under test are unsigned
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET, ACL="public-read")  # an open-data bucket: anonymous reads allowed
    objects = {
        f"{AOI}/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img1.tif": IMG1,
        f"{AOI}/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img2.tif": IMG2,
        f"{AOI}/MUL-PanSharpen/MUL-PanSharpen_AOI_2_Vegas_img1.tif": b"mul",
        f"{AOI}/geojson/buildings/buildings_AOI_2_Vegas_img1.geojson": GEOJSON,
        f"{AOI}/geojson/buildings/buildings_AOI_2_Vegas_img2.geojson": GEOJSON,
        "spacenet/SN2_buildings/train/AOI_3_Paris_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_3_Paris_img7.tif": b"paris",
    }
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ACL="public-read")
    for i in range(7):
        s3.put_object(Bucket=BUCKET, Key=f"many/k{i:04d}.txt", Body=b"x", ACL="public-read")
    # a tarball as the real bucket holds them (spacenet/<dataset>/tarballs/<name>.tar.gz)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("AOI_5_Khartoum_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_5_Khartoum_img1.tif", IMG1),
                           ("AOI_5_Khartoum_Train/geojson/buildings/buildings_AOI_5_Khartoum_img1.geojson", GEOJSON)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key="spacenet/SN2_buildings/tarballs/SN2_buildings_train_AOI_5_Khartoum.tar.gz",
                  Body=buf.getvalue(), ACL="public-read")
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _source(location: str, endpoint: str, **options) -> SourceConfig:
    opts = {"aois": None, "endpoint_url": endpoint, "product": "RGB-PanSharpen", "sha256": {}, **options}
    return SourceConfig(name="spacenet2", kind="spacenet", location=location, license="CC BY-SA 4.0",
                        attribution="SpaceNet on AWS", options=opts)


def test_parse_s3_url():
    assert parse_s3_url("s3://spacenet-dataset/spacenet/SN2_buildings/") == ("spacenet-dataset",
                                                                            "spacenet/SN2_buildings/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        parse_s3_url("https://bucket/x")


def test_list_keys_paginates(moto_endpoint, caplog):
    caplog.set_level("INFO", logger="werkzeug")
    keys = list_keys(BUCKET, "many/", endpoint_url=moto_endpoint, page_size=2)
    assert len(keys) == 7
    listings = [r for r in caplog.records if "list-type=2" in r.getMessage() and "prefix=many" in r.getMessage()]
    assert len(listings) == 4  # 2 + 2 + 2 + 1 keys, following continuation tokens
    assert keys[0] == {"key": "many/k0000.txt", "size": 1, "etag": hashlib.md5(b"x").hexdigest()}
    assert [k["key"] for k in keys] == sorted(k["key"] for k in keys)


def test_download_key_verifies_and_is_atomic(moto_endpoint, tmp_path):
    key = f"{AOI}/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img1.tif"
    dest = tmp_path / "img1.tif"
    rec = download_key(BUCKET, key, dest, endpoint_url=moto_endpoint, expected_size=len(IMG1))
    assert dest.read_bytes() == IMG1
    assert rec["bytes"] == len(IMG1) and rec["md5"] == hashlib.md5(IMG1).hexdigest() == rec["etag"]
    assert rec["sha256"] == hashlib.sha256(IMG1).hexdigest() and rec["skipped"] is False
    assert not (tmp_path / "img1.tif.part").exists()
    assert download_key(BUCKET, key, dest, endpoint_url=moto_endpoint)["skipped"] is True
    # a corrupted local copy of the right size is replaced
    dest.write_bytes(b"\0" * len(IMG1))
    assert download_key(BUCKET, key, dest, endpoint_url=moto_endpoint)["skipped"] is False
    assert dest.read_bytes() == IMG1
    # a half-written part is resumed with a byte range
    dest.unlink()
    (tmp_path / "img1.tif.part").write_bytes(IMG1[:1000])
    download_key(BUCKET, key, dest, endpoint_url=moto_endpoint)
    assert dest.read_bytes() == IMG1


def test_download_key_errors(moto_endpoint, tmp_path):
    key = f"{AOI}/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img1.tif"
    with pytest.raises(FetchError, match="size changed"):
        download_key(BUCKET, key, tmp_path / "x", endpoint_url=moto_endpoint, expected_size=5)
    with pytest.raises(FetchError) as info:
        download_key(BUCKET, "no/such/key.tif", tmp_path / "y", endpoint_url=moto_endpoint)
    assert info.value.file == f"s3://{BUCKET}/no/such/key.tif"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_fetch_spacenet_keeps_layout_below_prefix(moto_endpoint, tmp_path):
    src = _source(f"s3://{BUCKET}/spacenet/SN2_buildings/train", moto_endpoint, aois=["AOI_2_Vegas"])
    dest = tmp_path / "raw" / "spacenet2"
    rec = fetch_source(src, dest, limits=LOOPBACK_LIMITS)
    rel = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert rel == [
        "AOI_2_Vegas_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img1.tif",
        "AOI_2_Vegas_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img2.tif",
        "AOI_2_Vegas_Train/geojson/buildings/buildings_AOI_2_Vegas_img1.geojson",
        "AOI_2_Vegas_Train/geojson/buildings/buildings_AOI_2_Vegas_img2.geojson",
    ]  # Paris filtered by aois, MUL-PanSharpen by product
    assert (dest / rel[0]).read_bytes() == IMG1
    assert rec["root"] == str(dest) and rec["kind"] == "spacenet" and rec["items"] == []
    assert [f["path"] for f in rec["files"]] == rel
    f0 = rec["files"][0]
    assert f0 == {"path": rel[0], "url": f"s3://{BUCKET}/spacenet/SN2_buildings/train/{rel[0]}",
                  "bytes": len(IMG1), "sha256": hashlib.sha256(IMG1).hexdigest(),
                  "license": "CC BY-SA 4.0", "attribution": "SpaceNet on AWS"}


def test_fetch_spacenet_tarball_is_extracted(moto_endpoint, tmp_path):
    src = _source(f"s3://{BUCKET}/spacenet/SN2_buildings/tarballs/", moto_endpoint, aois=["AOI_5_Khartoum"])
    dest = tmp_path / "sn2"
    rec = fetch_source(src, dest, limits=LOOPBACK_LIMITS)
    img = dest / "AOI_5_Khartoum_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_5_Khartoum_img1.tif"
    assert img.read_bytes() == IMG1
    assert (dest / "downloads" / "SN2_buildings_train_AOI_5_Khartoum.tar.gz").is_file()
    assert [a["path"] for a in rec["archives"]] == ["downloads/SN2_buildings_train_AOI_5_Khartoum.tar.gz"]
    assert {f["path"] for f in rec["files"]} == {
        "AOI_5_Khartoum_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_5_Khartoum_img1.tif",
        "AOI_5_Khartoum_Train/geojson/buildings/buildings_AOI_5_Khartoum_img1.geojson"}
    assert all(f["url"].endswith(".tar.gz") for f in rec["files"])
    # a second fetch reuses the extraction (the marker matches) and gives the same record
    img.write_bytes(IMG1)  # untouched content, same size
    mtime = img.stat().st_mtime_ns
    assert fetch_source(src, dest, limits=LOOPBACK_LIMITS) == rec
    assert img.stat().st_mtime_ns == mtime


def test_fetch_s3_sha256_option_is_checked(moto_endpoint, tmp_path):
    src = _source(f"s3://{BUCKET}/spacenet/SN2_buildings/train", moto_endpoint, aois=["AOI_3_Paris"],
                  sha256={"RGB-PanSharpen_AOI_3_Paris_img7.tif": "0" * 64})
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_source(src, tmp_path / "p", limits=LOOPBACK_LIMITS)
    assert not (tmp_path / "p" / "AOI_3_Paris_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_3_Paris_img7.tif").exists()


def test_fetch_s3_empty_selection_is_an_error(moto_endpoint, tmp_path):
    with pytest.raises(FetchError, match="no objects"):
        fetch_source(_source(f"s3://{BUCKET}/nothing/here", moto_endpoint), tmp_path / "n", limits=LOOPBACK_LIMITS)
    with pytest.raises(FetchError, match="no objects match"):
        fetch_source(_source(f"s3://{BUCKET}/spacenet/SN2_buildings/train", moto_endpoint, aois=["AOI_9"]),
                     tmp_path / "n", limits=LOOPBACK_LIMITS)
