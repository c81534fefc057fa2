"""Issue 16, hostile servers and URLs: the network policy and the bounded downloads, against real loopback
servers (tests/loopback.py) and at the library's default limits unless a limit is the subject.

* Addresses a build must not reach (cloud metadata, loopback, private, link-local, multicast, unspecified)
  are refused before any connection; a redirect to one is refused before it is followed; the connection
  itself checks the address it reached (the DNS-rebinding guard).
* Downloads end in bounded time against a server that trickles its body or its headers, and refuse more
  bytes than ``download_max_bytes``.
* One OpenAerialMap record whose image URL is refused costs only itself.
* STAC sources obey the same policy: a location on a loopback address is refused by default, an item whose
  asset redirects to the cloud metadata address is a named reject (windowed and whole reads alike).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.errors import FetchError, ItemRejected, LimitExceeded, NetworkPolicyError
from pipeline.limits import DEFAULT_LIMITS, Limits
from pipeline.sources.config import SourceConfig
from pipeline.sources.download import download, part_path
from pipeline.sources.fetch import fetch_source
from pipeline.sources.netpolicy import (
    address_problem,
    check_url,
    gdal_http_options,
    policy_session,
    resolve_redirects,
    vsicurl_path,
)
from tests.loopback import LOOPBACK_LIMITS, LoopbackServer
from tests.stac_server import StacServer, geotiff_bytes, texture
from tests.stac_world import _collection, _grid, _polygon, _proj, lonlat_box

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
#: Only the loopback server itself is allowed: everything else keeps the default (public only) policy.
ONLY_LOOPBACK = Limits(allowed_networks=("127.0.0.1/32",))


@pytest.mark.parametrize("url, kind", [
    (METADATA, "link-local"),
    ("http://127.0.0.1:8080/x.tif", "loopback"),
    ("http://localhost/x.tif", "loopback"),
    ("http://2130706433/x.tif", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://[::1]/x.tif", "loopback"),
    ("http://[::ffff:127.0.0.1]/x.tif", "loopback"),
    ("http://10.1.2.3/x.tif", "private"),
    ("https://192.168.0.10/x.tif", "private"),
    ("http://172.16.5.4/x.tif", "private"),
    ("http://100.64.0.1/x.tif", "private"),  # carrier-grade NAT: not public either
    ("http://[fc00::1]/x.tif", "private"),
    ("http://[fe80::1]/x.tif", "link-local"),
    ("http://224.0.0.1/x.tif", "multicast"),
    ("http://0.0.0.0/x.tif", "unspecified"),
])
def test_non_public_addresses_are_refused_by_default(url, kind):
    with pytest.raises(NetworkPolicyError) as info:
        check_url(url)
    assert info.value.file == url and kind in info.value.reason and "allow_private_networks" in info.value.reason
    check_url(url, allow_private=True)  # the switch the tests' loopback servers use


def test_allowed_networks_must_be_networks():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed_networks: 'lan' is not a network"):
        Limits(allowed_networks=("lan",))
    with pytest.raises(ConfigError, match="download_deadline_s must not be negative"):
        Limits(download_deadline_s=-1)


def test_allowed_networks_are_narrow_and_public_addresses_pass():
    assert address_problem("127.0.0.1", allowed_networks=("127.0.0.1/32",)) is None
    assert address_problem("169.254.169.254", allowed_networks=("127.0.0.1/32",)) == "link-local"
    assert address_problem("10.1.2.3", allowed_networks=("10.1.2.0/24",)) is None
    assert address_problem("93.184.216.34") is None and address_problem("2606:4700::1111") is None


def test_download_from_metadata_address_is_refused_without_a_request(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(NetworkPolicyError) as info:
        download(METADATA + "role.tif", tmp_path / "x.tif")
    assert "169.254.169.254 is a link-local address" in info.value.reason
    assert time.monotonic() - t0 < 2.0 and not (tmp_path / "x.tif").exists()


def test_loopback_server_is_not_contacted_by_default(tmp_path):
    with LoopbackServer() as srv:
        srv.files["/data.bin"] = b"secret"
        with pytest.raises(NetworkPolicyError, match="loopback"):
            download(srv.url("/data.bin"), tmp_path / "d.bin")
        assert srv.requests == []


def test_redirect_to_cloud_metadata_is_refused_before_it_is_followed(tmp_path):
    with LoopbackServer() as srv:
        srv.redirects["/scene.tif"] = METADATA + "scene.tif"
        with pytest.raises(NetworkPolicyError) as info:
            download(srv.url("/scene.tif"), tmp_path / "s.tif", limits=ONLY_LOOPBACK, backoff=0.01)
        assert "169.254.169.254" in info.value.reason and "link-local" in info.value.reason
        assert len(srv.requests_for("/scene.tif")) == 1  # asked once, the redirect was not retried or followed
        with pytest.raises(NetworkPolicyError, match="link-local"):
            resolve_redirects(srv.url("/scene.tif"), ONLY_LOOPBACK)


def test_connection_checks_the_address_it_reached(tmp_path):
    """Even when the URL check is bypassed (a DNS answer that changed after it), the session's connections
    refuse a peer the policy refuses: nothing is sent to it."""
    with LoopbackServer() as srv:
        srv.files["/data.bin"] = b"x"
        with policy_session(DEFAULT_LIMITS) as sess, pytest.raises(NetworkPolicyError, match="connected to 127.0.0.1"):
            sess.get(srv.url("/data.bin"), timeout=5)
        assert srv.requests == []
        with policy_session(ONLY_LOOPBACK) as sess:
            assert sess.get(srv.url("/data.bin"), timeout=5).content == b"x"


def test_trickling_body_fails_in_bounded_time(tmp_path):
    """One byte every 0.2 s: below the minimum rate once the window (1 s here) has passed; every attempt
    ends within about a window, and all of them within the deadline."""
    limits = Limits(allow_private_networks=True, download_min_rate=100.0, download_rate_window_s=1.0)
    with LoopbackServer() as srv:
        srv.files["/slow.bin"] = b"y" * 1000
        srv.queue("/slow.bin", "trickle", "trickle", "trickle")
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="below download_min_rate") as info:
            download(srv.url("/slow.bin"), tmp_path / "s.bin", retries=1, backoff=0.01, limits=limits)
        elapsed = time.monotonic() - t0
    assert elapsed < 6.0, elapsed
    assert "giving up after 2 attempts" in info.value.reason


def test_trickling_headers_are_cut_by_the_deadline(tmp_path):
    """A server that sends its status line one byte every 0.2 s never lets a read time out; the deadline's
    watchdog shuts the connection down."""
    limits = Limits(allow_private_networks=True, download_deadline_s=1.5)
    with LoopbackServer() as srv:
        srv.queue("/hdr.bin", "trickle_headers", "trickle_headers", "trickle_headers")
        t0 = time.monotonic()
        with pytest.raises(LimitExceeded, match="download_deadline_s"):
            download(srv.url("/hdr.bin"), tmp_path / "h.bin", retries=2, backoff=0.01, limits=limits)
    assert time.monotonic() - t0 < 5.0


def test_download_max_bytes_announced_and_streamed(tmp_path):
    limits = Limits(allow_private_networks=True, download_max_bytes=50_000)
    with LoopbackServer() as srv:
        srv.files["/big.bin"] = b"z" * 60_000
        with pytest.raises(LimitExceeded, match="Content-Length 58.6 KiB is over download_max_bytes"):
            download(srv.url("/big.bin"), tmp_path / "b.bin", limits=limits)
        assert len(srv.requests_for("/big.bin")) == 1
        srv.queue("/big.bin", "nolength")  # no Content-Length: counted as it streams
        with pytest.raises(LimitExceeded, match="body .* is over download_max_bytes"):
            download(srv.url("/big.bin"), tmp_path / "c.bin", limits=limits)
    for name in ("b.bin", "c.bin"):  # nothing kept of a refused download
        assert not (tmp_path / name).exists() and not part_path(tmp_path / name).exists()


def test_s3_endpoint_of_a_source_is_checked(tmp_path):
    src = SourceConfig(name="sn", kind="spacenet", location="s3://bucket/prefix/", license="CC BY-SA 4.0",
                       attribution="x", options={"endpoint_url": "http://169.254.169.254", "sha256": {}})
    with pytest.raises(NetworkPolicyError, match="link-local"):
        fetch_source(src, tmp_path / "raw")


def _tif_bytes() -> bytes:
    rng = np.random.default_rng(3)
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=16, height=16, count=3, dtype="uint8", crs="EPSG:32737",
                      transform=Affine(0.1, 0.0, 530000.0, 0.0, -0.1, 9240000.0)) as ds:
            ds.write(rng.integers(0, 255, (3, 16, 16), dtype=np.uint8))
        return bytes(mem.read())


def test_openaerialmap_record_pointing_at_metadata_costs_only_itself(tmp_path):
    with LoopbackServer() as srv:
        srv.files["/img/good.tif"] = _tif_bytes()
        records = [{"_id": "good", "uuid": srv.url("/img/good.tif"), "gsd": 0.1},
                   {"_id": "evil", "uuid": METADATA + "evil.tif", "gsd": 0.1},
                   {"_id": "../../etc", "uuid": srv.url("/img/good.tif"), "gsd": 0.1}]
        srv.routes["/meta"] = lambda q: (200, {"meta": {"found": 3, "limit": 100, "page": 1}, "results": records})
        src = SourceConfig(name="oam", kind="openaerialmap", location=srv.base, license="CC-BY 4.0",
                           attribution="OAM", options={"api": "meta", "sha256": {}, "limit": 100, "max_items": 50})
        rec = fetch_source(src, tmp_path / "o", limits=ONLY_LOOPBACK)
    assert [f["path"] for f in rec["files"]] == ["good.tif"]
    reasons = {r["path"]: r["reason"] for r in rec["rejects"]}
    assert set(reasons) == {"evil.tif", "../../etc.tif"}
    assert "169.254.169.254 is a link-local address" in reasons["evil.tif"]
    assert "unusable _id" in reasons["../../etc.tif"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good.json", "good.tif"]


def test_oversized_or_deeply_nested_catalog_response_is_refused(tmp_path):
    with LoopbackServer() as srv:
        srv.routes["/meta"] = lambda q: (200, {"meta": {}, "results": ["x" * 2000] * 100})
        src = SourceConfig(name="oam", kind="openaerialmap", location=srv.base, license="CC-BY 4.0",
                           attribution="OAM", options={"api": "meta", "sha256": {}, "limit": 100, "max_items": 50})
        small = Limits(allowed_networks=("127.0.0.1/32",), response_max_bytes=100_000)
        with pytest.raises(LimitExceeded, match="response_max_bytes"):
            fetch_source(src, tmp_path / "o", limits=small)
        deep = "[" * 100_000 + "]" * 100_000
        srv.files["/deep/meta"] = deep.encode()
        src2 = SourceConfig(name="oam", kind="openaerialmap", location=srv.url("/deep"), license="CC-BY 4.0",
                            attribution="OAM", options={"api": "meta", "sha256": {}, "limit": 100, "max_items": 50})
        with pytest.raises(FetchError, match="not JSON: RecursionError"):
            fetch_source(src2, tmp_path / "p", limits=ONLY_LOOPBACK)


def test_gdal_options_bound_vsicurl_and_vsicurl_path_checks_every_hop():
    opts = gdal_http_options()
    assert opts["GDAL_HTTP_NETRC"] == "NO" and opts["CPL_VSIL_CURL_USE_S3_REDIRECT"] == "NO"
    assert int(opts["GDAL_HTTP_LOW_SPEED_LIMIT"]) == int(DEFAULT_LIMITS.download_min_rate)
    assert opts["CPL_VSIL_CURL_AUTHORIZATION_HEADER_ALLOWED_IF_REDIRECT"] == "NO"
    with LoopbackServer() as srv:
        srv.files["/cog.tif"] = _tif_bytes()
        srv.redirects["/hop.tif"] = srv.url("/cog.tif")
        assert vsicurl_path(srv.url("/hop.tif"), LOOPBACK_LIMITS) == "/vsicurl/" + srv.url("/cog.tif")
        with rasterio.Env(**gdal_http_options(LOOPBACK_LIMITS), CPL_VSIL_CURL_USE_HEAD="NO"):  # no HEAD here
            with rasterio.open(vsicurl_path(srv.url("/hop.tif"), LOOPBACK_LIMITS)) as ds:
                assert ds.width == 16
    with pytest.raises(NetworkPolicyError):
        vsicurl_path(METADATA + "cog.tif")


def _stac_item(item_id: str, href: str, crs: str, t: Affine, size: int, bbox: list[float]) -> dict:
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": _polygon(bbox), "bbox": bbox,
            "properties": {"datetime": "2024-06-01T10:00:00Z", "gsd": 0.3},
            "links": [], "assets": {"visual": {"href": href, "type": "image/tiff; application=geotiff; "
                                               "profile=cloud-optimized", **_proj(crs, t, size)}}}


def test_stac_source_obeys_the_network_policy(tmp_path):
    """A STAC location on a loopback address is refused by default before any request; with only the
    catalog's server allowed, an item whose COG asset redirects to 169.254.169.254 is a named reject, both
    when its bbox window is read over GDAL /vsicurl/ (the redirect chain is checked before GDAL sees the URL)
    and when it is downloaded whole (the redirect is refused before it is followed); the good item is fetched."""
    from pipeline.sources.adapters.stac import StacAdapter

    crs, size = "EPSG:32633", 1024
    t, bbox = _grid(crs, 500000.0, 5000000.0, 0.3, size)
    with StacServer() as srv:
        srv.files["/cat/good.tif"] = geotiff_bytes(texture(size, size, 7), crs, t)
        srv.redirects["/cat/evil.tif"] = METADATA + "evil.tif"
        for name in ("good", "evil"):
            srv.docs[f"/cat/{name}.json"] = _stac_item(name, f"./{name}.tif", crs, t, size, bbox)
        srv.docs["/cat/collection.json"] = _collection(
            "cat", [{"rel": "item", "href": f"./{name}.json"} for name in ("evil", "good")])
        url = srv.url("/cat/collection.json")
        src = SourceConfig(name="cat", kind="stac", location=url, license="CC-BY-4.0", attribution="x",
                           options={"sha256": {}, "assets": ["visual"], "max_items": 100, "limit": 100,
                                    "non_cog": "reject"})
        with pytest.raises(NetworkPolicyError, match="loopback") as info:
            fetch_source(src, tmp_path / "default")
        assert info.value.file == url and "allow_private_networks" in info.value.reason and srv.requests == []
        window = lonlat_box(crs, (500030.0, 4999800.0, 500150.0, 4999970.0))
        for read, options in (("window", {"bbox": window}), ("whole", {})):
            one = SourceConfig(**{**src.__dict__, "name": f"cat-{read}", "options": {**src.options, **options}})
            srv.reset_counters()
            rec = fetch_source(one, tmp_path / read, limits=ONLY_LOOPBACK)
            assert [(i["item_id"], i["read"]) for i in rec["items"]] == [("good", read)]
            (rej,) = rec["rejects"]
            assert (rej["item_id"], rej["stage"], rej["file"]) == ("evil", "fetch", srv.url("/cat/evil.tif"))
            assert "169.254.169.254" in rej["reason"] and "link-local" in rej["reason"], rej["reason"]
            assert [r["method"] for r in srv.requests if r["path"] == "/cat/evil.tif"] == ["GET"]  # not followed
            scenes = StacAdapter().scenes(tmp_path / read, one, rejected=(rejected := []))
            assert [s.scene_id for s in scenes] == ["good"]
            assert [(type(e), e.scene_id, e.reject_stage) for e in rejected] == [(ItemRejected, "evil", "fetch")]
