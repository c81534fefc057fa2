"""fetch_source for local paths, local archives and http(s) locations (loopback server)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import FetchError, SourcesError
from pipeline.sources.config import SourceConfig, load_sources
from pipeline.sources.fetch import fetch_source
from tests.loopback import LOOPBACK_LIMITS, LoopbackServer


def _src(kind: str, location: str, **options) -> SourceConfig:
    return SourceConfig(name=f"{kind}-test", kind=kind, location=location, license="CC BY-NC-SA 4.0",
                        attribution="xView2 / Maxar", options={"sha256": {}, **options})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inria_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("AerialImageDataset/train/images/austin1.tif", b"image-bytes")
        zf.writestr("AerialImageDataset/train/gt/austin1.tif", b"gt-bytes")
    return buf.getvalue()


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_folder_is_read_in_place(tmp_path):
    data = tmp_path / "mydata"
    (data / "sub").mkdir(parents=True)
    (data / "a.tif").write_bytes(b"aaa")
    (data / "sub" / "b.tif").write_bytes(b"bb")
    (data / ".DS_Store").write_bytes(b"junk")
    dest = tmp_path / "raw" / "local-test"
    rec = fetch_source(_src("local", str(data)), dest)
    assert not dest.exists()  # nothing copied, nothing written
    assert rec["root"] == str(data.absolute())
    assert rec["files"] == [
        {"path": "a.tif", "url": (data / "a.tif").as_uri(), "bytes": 3, "sha256": _sha(b"aaa"),
         "license": "CC BY-NC-SA 4.0", "attribution": "xView2 / Maxar"},
        {"path": "sub/b.tif", "url": (data / "sub" / "b.tif").as_uri(), "bytes": 2, "sha256": _sha(b"bb"),
         "license": "CC BY-NC-SA 4.0", "attribution": "xView2 / Maxar"},
    ]
    assert rec["source"] == "local-test" and rec["kind"] == "local" and rec["location"] == str(data)


def test_local_sha256_option_is_checked(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.tif").write_bytes(b"aaa")
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_source(_src("local", str(tmp_path / "d"), sha256={"a.tif": "1" * 64}), tmp_path / "out")


def test_local_missing_path_is_a_fetch_error(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FetchError) as info:
        fetch_source(_src("xbd", str(missing)), tmp_path / "raw")
    assert info.value.file == str(missing) and "does not exist" in info.value.reason


def test_local_archive_is_extracted_into_dest(tmp_path):
    archive = tmp_path / "train_images_labels_targets.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("train/images/hurricane-michael_00000202_pre_disaster.png", b"png"),
                           ("train/labels/hurricane-michael_00000202_pre_disaster.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest = tmp_path / "raw" / "xbd"
    rec = fetch_source(_src("xbd", str(archive), sha256={archive.name: _sha(archive.read_bytes())}), dest)
    assert rec["root"] == str(dest)
    assert (dest / "train/images/hurricane-michael_00000202_pre_disaster.png").read_bytes() == b"png"
    assert [f["path"] for f in rec["files"]] == ["train/images/hurricane-michael_00000202_pre_disaster.png",
                                                 "train/labels/hurricane-michael_00000202_pre_disaster.json"]
    assert rec["archives"][0]["sha256"] == _sha(archive.read_bytes())
    assert rec["files"][0]["url"] == archive.as_uri()
    assert archive.exists()  # the local archive is left alone
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_source(_src("xbd", str(archive), sha256={archive.name: "2" * 64}), tmp_path / "other")


def test_local_7z_is_refused_with_advice(tmp_path):
    seven = tmp_path / "aerialimagelabeling.7z"
    seven.write_bytes(b"7z\xbc\xaf\x27\x1c")
    with pytest.raises(FetchError, match="extract it first"):
        fetch_source(_src("inria", str(seven)), tmp_path / "raw")


def test_http_archive_is_downloaded_verified_and_extracted(tmp_path):
    payload = _inria_zip()
    with LoopbackServer() as srv:
        srv.files["/files/NEW2-AerialImageDataset.zip"] = payload
        srv.queue("/files/NEW2-AerialImageDataset.zip", "cut")
        url = srv.url("/files/NEW2-AerialImageDataset.zip")
        src = _src("inria", url, sha256={"NEW2-AerialImageDataset.zip": _sha(payload)})
        dest = tmp_path / "raw" / "inria"
        seen: list[tuple[int, int | None]] = []
        rec = fetch_source(src, dest, progress=lambda d, t: seen.append((d, t)), limits=LOOPBACK_LIMITS)
        assert _tree(dest) == ["AerialImageDataset/train/gt/austin1.tif",
                               "AerialImageDataset/train/images/austin1.tif",
                               "downloads/NEW2-AerialImageDataset.zip",
                               "downloads/NEW2-AerialImageDataset.zip.extracted.json"]
        assert rec["archives"] == [{"path": "downloads/NEW2-AerialImageDataset.zip", "url": url,
                                    "bytes": len(payload), "sha256": _sha(payload),
                                    "license": "CC BY-NC-SA 4.0", "attribution": "xView2 / Maxar"}]
        assert {f["path"]: f["sha256"] for f in rec["files"]} == {
            "AerialImageDataset/train/gt/austin1.tif": _sha(b"gt-bytes"),
            "AerialImageDataset/train/images/austin1.tif": _sha(b"image-bytes")}
        assert seen[-1] == (len(payload), len(payload))
        assert srv.requests_for("/files/NEW2-AerialImageDataset.zip")[1]["headers"]["Range"]
        # fetching again makes no request and gives the same record
        n = len(srv.requests)
        assert fetch_source(src, dest, limits=LOOPBACK_LIMITS) == rec
        assert len(srv.requests) == n


def test_http_plain_file_and_checksum_option(tmp_path):
    with LoopbackServer() as srv:
        srv.files["/img/scene.tif"] = b"tiff-bytes"
        rec = fetch_source(_src("local", srv.url("/img/scene.tif")), tmp_path / "d", limits=LOOPBACK_LIMITS)
        assert _tree(tmp_path / "d") == ["scene.tif"]
        assert rec["files"][0]["path"] == "scene.tif" and rec["files"][0]["bytes"] == 10
        bad = _src("local", srv.url("/img/scene.tif"), sha256={"scene.tif": "3" * 64})
        with pytest.raises(FetchError, match="sha256 mismatch: expected 3{64}"):
            fetch_source(bad, tmp_path / "e", limits=LOOPBACK_LIMITS)
        assert not (tmp_path / "e" / "scene.tif").exists()
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch_source(_src("local", srv.url("/img/none.tif")), tmp_path / "f", limits=LOOPBACK_LIMITS)


def test_demo_is_not_fetched(tmp_path):
    with pytest.raises(ValueError, match="demo"):
        fetch_source(SourceConfig(name="demo", kind="demo", location="", license="CC0", attribution="us"),
                     tmp_path)


def test_load_sources_rejects_ftp(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  - name: inria\n    kind: inria\n    location: ftp://files.inria.fr/aerial.zip\n"
        "    license: see page\n    attribution: Inria\n"
    )
    with pytest.raises(SourcesError, match="unsupported scheme 'ftp'"):
        load_sources(path)


def test_a_local_folder_fetched_again_reads_only_its_new_and_changed_files(tmp_path, monkeypatch):
    """The digests of an earlier fetch are taken again for files whose size, time and inode did not change:
    adding a scene to a folder of gigabytes reads that scene only; the record is the same as a full fetch's."""
    import os

    import pipeline.sources.localfs as localfs

    data = tmp_path / "mydata"
    data.mkdir()
    for name in ("a.tif", "b.tif", "c.tif"):
        (data / name).write_bytes(name.encode() * 1000)
    read: list[str] = []
    real = localfs.sha256_bounded
    monkeypatch.setattr(localfs, "sha256_bounded", lambda p, *a, **k: read.append(Path(p).name) or real(p, *a, **k))
    hashes: dict = {}
    first = fetch_source(_src("local", str(data)), tmp_path / "out", hashes=hashes)
    assert sorted(read) == ["a.tif", "b.tif", "c.tif"] and sorted(hashes) == sorted(read)
    read.clear()
    (data / "d.tif").write_bytes(b"new scene")
    st = (data / "b.tif").stat()
    (data / "b.tif").write_bytes(b"B" * 3000)  # same size, new bytes: a new modification time
    os.utime(data / "b.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    (data / "c.tif").unlink()
    again = fetch_source(_src("local", str(data)), tmp_path / "out", hashes=hashes)
    assert sorted(read) == ["b.tif", "d.tif"]  # a.tif: taken from the earlier fetch
    assert sorted(hashes) == ["a.tif", "b.tif", "d.tif"]  # c.tif forgotten
    assert again == fetch_source(_src("local", str(data)), tmp_path / "out")  # as a fetch without the table
    assert {f["path"]: f["sha256"] for f in again["files"]}["b.tif"] == _sha(b"B" * 3000)
    assert first["files"][0] == again["files"][0]
    read.clear()
    moved = data.rename(tmp_path / "moved")  # the folder moved on its file system: nothing read again
    moved_files = fetch_source(_src("local", str(moved)), tmp_path / "out", hashes=hashes)["files"]
    assert [(f["path"], f["sha256"]) for f in moved_files] == [(f["path"], f["sha256"]) for f in again["files"]]
    assert read == []
    hashes["a.tif"][3] = "0" * 64  # a table entry is trusted only with the stamp
    (moved / "a.tif").write_bytes(b"x")
    assert {f["path"]: f["sha256"] for f in fetch_source(_src("local", str(moved)), tmp_path / "out",
                                                          hashes=hashes)["files"]}["a.tif"] == _sha(b"x")


def test_a_new_raw_folder_starts_from_the_newest_earlier_one_of_the_same_content(tmp_path):
    """pipeline.sources.rawreuse: the newest complete raw folder of the same source, entry but its terms and
    fetch code (not another source's whose name extends this one's, not a failed fetch); its files linked, its
    unfinished transfers not."""
    import os

    from pipeline.sources.rawreuse import reusable_raw, seed_raw

    made = {"entry": "e2", "content": "c1", "fetch_code": "f1"}

    def raw(name: str, made_by: dict, when: int, **extra) -> Path:
        folder = tmp_path / "raw" / name
        (folder / "files" / "downloads").mkdir(parents=True)
        (folder / "files" / "a.tif").write_bytes(name.encode())
        (folder / "files" / "downloads" / "b.tar.part").write_bytes(b"half")
        (folder / "files" / "downloads" / ".tmp-x").mkdir()
        (folder / "fetch.json").write_text(json.dumps({"made_by": made_by, "files": [], **extra}))
        os.utime(folder / "fetch.json", ns=(when, when))
        return folder

    here = tmp_path / "raw" / "xbd-000000000003"
    raw("xbd-000000000001", dict(made, entry="e0"), 1)
    newest = raw("xbd-000000000002", dict(made, entry="e1"), 2)
    raw("xbd-vegas-00000000000a", made, 9)  # another source's (xbd-vegas)
    raw("xbd-00000000000b", dict(made, fetch_code="f0"), 9)  # other fetch code
    raw("xbd-00000000000c", made, 9, failed={"reason": "HTTP 500", "type": "FetchError"})
    raw("xbd-00000000000d", dict(made, content="c0"), 9)  # other location or options
    assert reusable_raw(tmp_path / "raw", "xbd", here, made) == newest / "files"
    assert reusable_raw(tmp_path / "raw", "inria", here, made) is None
    assert seed_raw(here / "files", newest / "files") == 1
    assert (here / "files" / "a.tif").stat().st_ino == (newest / "files" / "a.tif").stat().st_ino
    assert sorted(p.name for p in (here / "files").rglob("*")) == ["a.tif", "downloads"]


def test_a_fetch_by_other_code_is_offered_the_earlier_downloads_file_by_file(tmp_path):
    """pipeline.sources.rawreuse.earlier_downloads / reusing: a fetch made by new fetch code finds what it asks for
    again in the earlier raw folder of the same content (no request), each file checked against the sha256 its
    record gave it (a file changed since is downloaded again), never an archive's extract, nor a file of a STAC
    source (possibly a window cut out of its asset), nor one it does not ask for."""
    from pipeline.sources.rawreuse import earlier_downloads, reusing

    payload = _inria_zip()
    with LoopbackServer() as srv:
        srv.files["/files/NEW2-AerialImageDataset.zip"] = payload
        srv.files["/img/scene.tif"] = b"tiff-bytes"
        zip_url, tif_url = srv.url("/files/NEW2-AerialImageDataset.zip"), srv.url("/img/scene.tif")
        old = tmp_path / "raw" / "inria-000000000001" / "files"
        record = fetch_source(_src("inria", zip_url), old, limits=LOOPBACK_LIMITS)
        (old.parent / "fetch.json").write_text(json.dumps({**record, "kind": "inria"}))
        offered = earlier_downloads(old)
        assert set(offered) == {zip_url}  # the archive, not its extracts (they name its URL too)
        assert offered[zip_url] == (old / "downloads" / "NEW2-AerialImageDataset.zip", _sha(payload))
        n = len(srv.requests)
        new = tmp_path / "raw" / "inria-000000000002" / "files"
        with reusing(offered):
            again = fetch_source(_src("inria", zip_url), new, limits=LOOPBACK_LIMITS)
            other = fetch_source(_src("local", tif_url), tmp_path / "plain", limits=LOOPBACK_LIMITS)
        assert len(srv.requests) == n + 1 and srv.requests[-1]["path"] == "/img/scene.tif"  # only what is not offered
        assert again["files"] == record["files"] and again["archives"] == record["archives"]
        archive = new / "downloads" / "NEW2-AerialImageDataset.zip"
        assert archive.stat().st_ino == (old / "downloads" / "NEW2-AerialImageDataset.zip").stat().st_ino
        assert (new / "AerialImageDataset/train/images/austin1.tif").stat().st_nlink == 1  # extracted again
        assert other["files"][0]["sha256"] == _sha(b"tiff-bytes")
        # the earlier file no longer has the bytes its record gave it: downloaded again, the earlier one untouched
        corrupt = {zip_url: (old / "downloads" / "NEW2-AerialImageDataset.zip", "0" * 64)}
        with reusing(corrupt):
            fetch_source(_src("inria", zip_url), tmp_path / "raw" / "inria-000000000003" / "files",
                         limits=LOOPBACK_LIMITS)
        assert len(srv.requests) == n + 2
        assert (old / "downloads" / "NEW2-AerialImageDataset.zip").read_bytes() == payload
    (old.parent / "fetch.json").write_text(json.dumps({**record, "kind": "stac"}))
    assert earlier_downloads(old) == {}
    (old.parent / "fetch.json").write_text(json.dumps({**record, "kind": "inria"}))
    (old / "downloads" / "NEW2-AerialImageDataset.zip").write_bytes(b"short")  # not the recorded size
    assert earlier_downloads(old) == {}
