"""pipeline.sources.archive with real zip / tar archives, including hostile ones."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import FetchError
from pipeline.sources.archive import extract_archive, is_archive


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _add_link(tf: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tf.addfile(info)


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w"),
                                         (".tar.bz2", "w:bz2")])
def test_good_tar_is_extracted(tmp_path, suffix, mode):
    archive = tmp_path / f"train{suffix}"
    with tarfile.open(archive, mode) as tf:
        _add_bytes(tf, "train/images/a_pre_disaster.png", b"png-a")
        _add_bytes(tf, "train/labels/a_pre_disaster.json", b"{}")
        d = tarfile.TarInfo("train/empty")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
    target = tmp_path / "raw"
    files = extract_archive(archive, target)
    assert files == [target / "train/images/a_pre_disaster.png", target / "train/labels/a_pre_disaster.json"]
    assert (target / "train/images/a_pre_disaster.png").read_bytes() == b"png-a"
    assert (target / "train/empty").is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_good_zip_is_extracted_and_merges_into_existing_target(tmp_path):
    target = tmp_path / "raw"
    (target / "downloads").mkdir(parents=True)
    (target / "downloads" / "keep.txt").write_text("keep")
    (target / "AerialImageDataset" / "train").mkdir(parents=True)
    (target / "AerialImageDataset" / "train" / "old.txt").write_text("old")
    archive = tmp_path / "NEW2-AerialImageDataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("AerialImageDataset/train/images/austin1.tif", b"tif")
        zf.writestr("AerialImageDataset/train/gt/", b"")
        zf.writestr("AerialImageDataset/train/gt/austin1.tif", b"gt")
    files = extract_archive(archive, target)
    assert [f.relative_to(target).as_posix() for f in files] == [
        "AerialImageDataset/train/gt/austin1.tif", "AerialImageDataset/train/images/austin1.tif"]
    assert (target / "downloads" / "keep.txt").read_text() == "keep"
    assert (target / "AerialImageDataset" / "train" / "old.txt").read_text() == "old"
    assert (target / "AerialImageDataset/train/gt/austin1.tif").read_bytes() == b"gt"


def test_zip_with_dotdot_is_refused_before_anything_is_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good/first.txt", b"written first in the archive")
        zf.writestr("../evil", b"pwned")
    target = work / "raw"
    before = _tree(tmp_path)
    with pytest.raises(FetchError) as info:
        extract_archive(archive, target)
    assert info.value.file == str(archive)
    assert info.value.reason == "entry '../evil' escapes the target folder"
    assert _tree(tmp_path) == before  # no target, no temporary, no ../evil
    assert not (tmp_path / "evil").exists()


def test_nested_dotdot_escape_is_refused_but_inner_dotdot_is_fine(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        _add_bytes(tf, "a/../../escape.txt", b"x")
    with pytest.raises(FetchError, match="escapes the target folder"):
        extract_archive(bad, tmp_path / "t1")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "t1").exists()
    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w") as tf:
        _add_bytes(tf, "a/../b.txt", b"y")
    assert extract_archive(ok, tmp_path / "t2") == [tmp_path / "t2" / "b.txt"]


def test_absolute_path_is_refused(tmp_path):
    archive = tmp_path / "abs.tar.gz"
    outside = tmp_path / "outside.txt"
    with tarfile.open(archive, "w:gz") as tf:
        _add_bytes(tf, str(outside), b"x")
    with pytest.raises(FetchError, match="is an absolute path"):
        extract_archive(archive, tmp_path / "t")
    assert not outside.exists() and not (tmp_path / "t").exists()


def test_absolute_path_in_zip_is_refused(tmp_path):
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/tmp/passwd-x"), b"x")
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == ["/tmp/passwd-x"]
    with pytest.raises(FetchError, match="'/tmp/passwd-x' is an absolute path"):
        extract_archive(archive, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_tar_with_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add_bytes(tf, "data/ok.txt", b"ok")
        _add_link(tf, "data/link", "/etc", tarfile.SYMTYPE)
        _add_bytes(tf, "data/link/passwd", b"x")
    with pytest.raises(FetchError, match="entry 'data/link' is a symbolic link"):
        extract_archive(archive, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_tar_with_hardlink_or_fifo_is_refused(tmp_path):
    hard = tmp_path / "hard.tar"
    with tarfile.open(hard, "w") as tf:
        _add_bytes(tf, "a.txt", b"a")
        _add_link(tf, "b.txt", "a.txt", tarfile.LNKTYPE)
    with pytest.raises(FetchError, match="'b.txt' is a hard link"):
        extract_archive(hard, tmp_path / "t")
    fifo = tmp_path / "fifo.tar"
    with tarfile.open(fifo, "w") as tf:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    with pytest.raises(FetchError, match="'pipe' is a device, fifo"):
        extract_archive(fifo, tmp_path / "t")


def test_zip_with_symlink_entry_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(FetchError, match="'link' is a symbolic link"):
        extract_archive(archive, tmp_path / "t")


def test_corrupt_archive_leaves_no_partial_target(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add_bytes(tf, "a.bin", os.urandom(50_000))
        _add_bytes(tf, "b.bin", os.urandom(50_000))
    archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    with pytest.raises(FetchError) as info:
        extract_archive(archive, tmp_path / "t")
    assert info.value.file == str(archive)
    assert not (tmp_path / "t").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_is_archive():
    assert is_archive("x.tar.gz") and is_archive("X.ZIP") and is_archive("a.tgz") and is_archive("b.tar.bz2")
    assert not is_archive("img.tif") and not is_archive("aerial.7z")
