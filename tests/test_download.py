"""pipeline.sources.download against a real loopback HTTP server."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from pipeline.errors import FetchError
from pipeline.sources.download import download, part_path
from tests.loopback import LOOPBACK_LIMITS, LoopbackServer

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def srv():
    with LoopbackServer() as server:
        server.files["/data.bin"] = PAYLOAD
        yield server


def fast(**kw):
    """Download options that keep failing tests short."""
    return {"backoff": 0.01, "timeout": 5.0, "limits": LOOPBACK_LIMITS, **kw}


def test_cut_transfer_is_resumed_with_range_and_verified(srv, tmp_path):
    srv.queue("/data.bin", "cut")
    seen = []
    dest = tmp_path / "out" / "data.bin"
    rec = download(srv.url("/data.bin"), dest, sha256=SHA, md5=MD5, progress=lambda d, t: seen.append((d, t)),
                   **fast())
    assert dest.read_bytes() == PAYLOAD
    assert rec == {"url": srv.url("/data.bin"), "path": str(dest), "bytes": len(PAYLOAD), "sha256": SHA,
                   "md5": MD5, "resumed": True, "attempts": 2}
    reqs = srv.requests_for("/data.bin")
    assert len(reqs) == 2
    assert "Range" not in reqs[0]["headers"]
    assert reqs[1]["headers"]["Range"] == f"bytes={len(PAYLOAD) // 2}-"
    assert not part_path(dest).exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_server_ignoring_range_restarts_from_scratch(srv, tmp_path):
    srv.queue("/data.bin", "cut")
    srv.ignore_range.add("/data.bin")
    dest = tmp_path / "data.bin"
    rec = download(srv.url("/data.bin"), dest, sha256=SHA, **fast())
    assert dest.read_bytes() == PAYLOAD
    assert rec["resumed"] is False and rec["attempts"] == 2
    assert "md5" not in rec


def test_part_already_complete_answers_416(srv, tmp_path):
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD)
    rec = download(srv.url("/data.bin"), dest, sha256=SHA, **fast())
    assert dest.read_bytes() == PAYLOAD
    assert rec["attempts"] == 1
    assert srv.requests_for("/data.bin")[0]["headers"]["Range"] == f"bytes={len(PAYLOAD)}-"


def test_500_then_success(srv, tmp_path):
    srv.queue("/data.bin", "500", "503")
    rec = download(srv.url("/data.bin"), tmp_path / "d.bin", sha256=SHA, **fast())
    assert rec["attempts"] == 3 and rec["resumed"] is False
    assert len(srv.requests_for("/data.bin")) == 3


def test_429_is_retried(srv, tmp_path):
    srv.queue("/data.bin", "429")
    rec = download(srv.url("/data.bin"), tmp_path / "d.bin", **fast())
    assert rec["attempts"] == 2 and rec["sha256"] == SHA


def test_404_fails_at_once_naming_the_url(srv, tmp_path):
    url = srv.url("/missing.tif")
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "m.tif", **fast())
    assert info.value.file == url
    assert info.value.reason == "HTTP 404 Not Found"
    assert url in str(info.value)
    assert len(srv.requests_for("/missing.tif")) == 1
    assert not (tmp_path / "m.tif").exists()


def test_persistent_5xx_gives_up_after_retries(srv, tmp_path):
    srv.queue("/data.bin", *["500"] * 10)
    with pytest.raises(FetchError, match=r"giving up after 3 attempts: HTTP 500"):
        download(srv.url("/data.bin"), tmp_path / "d.bin", retries=2, **fast())
    assert len(srv.requests_for("/data.bin")) == 3


def test_repeatedly_truncated_body_is_an_error(srv, tmp_path):
    srv.files["/big.bin"] = PAYLOAD
    srv.queue("/big.bin", "cut", "cut", "cut")
    with pytest.raises(FetchError, match="giving up after 3 attempts"):
        download(srv.url("/big.bin"), tmp_path / "b.bin", retries=2, **fast())
    # the part keeps what arrived (50 %, then 50 % of the rest, ...) for a later resume
    part = part_path(tmp_path / "b.bin")
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert PAYLOAD.startswith(part.read_bytes())
    assert not (tmp_path / "b.bin").exists()
    rec = download(srv.url("/big.bin"), tmp_path / "b.bin", sha256=SHA, **fast())
    assert rec["resumed"] is True and rec["attempts"] == 1


def test_checksum_mismatch_retries_once_then_fails(srv, tmp_path):
    wrong = "0" * 64
    url = srv.url("/data.bin")
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "d.bin", sha256=wrong, **fast())
    msg = str(info.value)
    assert url in msg and wrong in msg and SHA in msg
    assert len(srv.requests_for("/data.bin")) == 2  # once from scratch again
    assert not (tmp_path / "d.bin").exists()
    assert not part_path(tmp_path / "d.bin").exists()


def test_md5_mismatch_is_reported(srv, tmp_path):
    with pytest.raises(FetchError, match=f"md5 mismatch: expected {'f' * 32}, got {MD5}"):
        download(srv.url("/data.bin"), tmp_path / "d.bin", md5="F" * 32, **fast())


def test_slow_server_times_out_in_bounded_time(srv, tmp_path):
    srv.queue("/data.bin", "slow", "slow")
    srv.slow_seconds = 3.0
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="Timeout"):
        download(srv.url("/data.bin"), tmp_path / "d.bin", timeout=0.3, retries=1, backoff=0.01,
                 limits=LOOPBACK_LIMITS)
    assert time.monotonic() - t0 < 2.0
    assert len(srv.requests_for("/data.bin")) == 2


def test_existing_good_file_makes_no_request(srv, tmp_path):
    dest = tmp_path / "d.bin"
    dest.write_bytes(PAYLOAD)
    rec = download(srv.url("/data.bin"), dest, sha256=SHA, md5=MD5, limits=LOOPBACK_LIMITS)
    assert rec["attempts"] == 0 and rec["bytes"] == len(PAYLOAD) and rec["md5"] == MD5
    assert srv.requests_for("/data.bin") == []
    # without a checksum an existing file is trusted as well
    assert download(srv.url("/data.bin"), dest, limits=LOOPBACK_LIMITS)["attempts"] == 0
    assert srv.requests_for("/data.bin") == []


def test_existing_corrupt_file_is_fetched_again(srv, tmp_path):
    dest = tmp_path / "d.bin"
    dest.write_bytes(b"garbage")
    rec = download(srv.url("/data.bin"), dest, sha256=SHA.upper(), **fast())
    assert rec["attempts"] == 1 and dest.read_bytes() == PAYLOAD


def test_connection_refused_is_retried_then_fails(tmp_path):
    with LoopbackServer() as s:
        url = s.url("/gone")
    # the server is closed now: nothing listens on that port
    with pytest.raises(FetchError, match="ConnectionError") as info:
        download(url, tmp_path / "x", retries=1, backoff=0.01, timeout=1.0, limits=LOOPBACK_LIMITS)
    assert info.value.file == url
