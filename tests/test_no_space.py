"""A full disk is the machine's problem, said in one line: never a reject, never a source's failure, and the same
command goes on once there is room (pipeline.atomic.no_space, pipeline.errors.NoSpace, tasks.base)."""
from __future__ import annotations

import errno
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from rasterio.errors import RasterioIOError

from pipeline import atomic, forked
from pipeline.errors import ConfigError, FetchError, NoSpace, ProcessDied, SceneRejected
from pipeline.sources.outcome import is_source_failure
from tests.helpers_build import DEMO_SOURCES, ROOT, luigi_cmd, pipeline_env, reference_build, release_dir

GIB = 1 << 30


def _disk(monkeypatch, free: int, size: int = 100 * GIB) -> None:
    monkeypatch.setattr(atomic, "_room", lambda path: (free, size))


def test_enospc_and_a_spent_quota_are_no_space(tmp_path):
    for code in (errno.ENOSPC, errno.EDQUOT):
        exc = OSError(code, "No space left on device", str(tmp_path / "a.tif"))
        full = atomic.no_space(exc, tmp_path)
        assert isinstance(full, NoSpace) and full.path == str(tmp_path / "a.tif")
        assert str(full).startswith(f"no space left on the device of {tmp_path / 'a.tif'} (")
        assert "`python -m pipeline prune` with the build's options lists" in str(full)
        assert "run the same command again" in str(full)
    assert atomic.no_space(OSError(errno.ENOENT, "No such file"), tmp_path) is None


def test_a_reject_or_fetch_error_raised_from_a_full_disk_is_no_space(tmp_path):
    """An archive entry that could not be written (the extraction says ``FetchError: cannot extract entry``), a
    scene rejected from an ``ENOSPC``: neither the source's fault, also after crossing a fork."""
    def extract():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise FetchError("a.zip", "cannot extract entry 'x.tif': [Errno 28] No space left on device") from exc

    with pytest.raises(FetchError) as info:
        extract()
    full = atomic.no_space(info.value, tmp_path)
    assert isinstance(full, NoSpace) and "OSError: [Errno 28] No space left on device" in str(full)

    def reject():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/work/t.tif")
        except OSError as exc:
            raise SceneRejected("scene.tif", f"cannot read: {exc}") from exc

    with pytest.raises(NoSpace) as crossed:
        forked.start(reject).result()
    assert crossed.value.path == "/data/work/t.tif"

    def write():
        raise OSError(errno.ENOSPC, "No space left on device")  # a write names no file

    with pytest.raises(NoSpace, match=r"^no space left on the device written to: OSError: \[Errno 28\]"):
        forked.start(write).result()


def test_a_gdal_write_error_is_no_space_only_when_the_disk_is_full(monkeypatch, tmp_path):
    """GDAL's write errors do not carry libtiff's ENOSPC: the room left (the failed part still there) tells."""
    exc = RasterioIOError("Write failed. See previous exception for details.")
    _disk(monkeypatch, free=1 << 20)
    full = atomic.no_space(exc, tmp_path / "t.tif", shown=tmp_path / "final.tif")
    assert isinstance(full, NoSpace) and full.path == str(tmp_path / "final.tif") and full.free == 1 << 20
    assert "(1.0 MiB free): RasterioIOError: Write failed" in str(full)
    _disk(monkeypatch, free=10 * GIB)
    assert atomic.no_space(exc, tmp_path) is None  # room enough: some other failure, raised as it is


def test_failures_the_pipeline_means_stay_what_they_are(monkeypatch, tmp_path):
    _disk(monkeypatch, free=0)
    for exc in (SceneRejected("a.tif", "too coarse"), ConfigError("bad"), ProcessDied(1, -9),
                NoSpace("x", 0, "seen"), OSError(errno.EROFS, "Read-only file system"),
                OSError(errno.EACCES, "Permission denied")):  # an errno says what it is, full disk or not
        assert atomic.no_space(exc, tmp_path) is None, exc


def test_nearly_full_is_under_64_mib_or_five_percent(monkeypatch, tmp_path):
    _disk(monkeypatch, free=50 << 20)
    assert atomic.nearly_full(tmp_path) == 50 << 20
    _disk(monkeypatch, free=50 << 20, size=512 << 20)  # a 512 MiB file system: 5 % is 25.6 MiB
    assert atomic.nearly_full(tmp_path) is None
    _disk(monkeypatch, free=100 << 20)
    assert atomic.nearly_full(tmp_path) is None


def test_atomic_path_says_no_space_and_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "record.json"
    with pytest.raises(NoSpace) as info:
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.path.endswith("record.json")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_no_space_crosses_a_fork_and_is_no_source_failure():
    def fill():
        raise NoSpace("/data/raw/x.tif", 123, "RasterioIOError: Write failed")

    with pytest.raises(NoSpace) as info:
        forked.start(fill).result()
    assert (info.value.path, info.value.free) == ("/data/raw/x.tif", 123)
    assert not is_source_failure(info.value)
    assert is_source_failure(OSError(errno.EACCES, "Permission denied"))  # a location it cannot read: the source's


def _demo_on_tmpfs(tmp_path: Path, script: str, *, timeout: float, **names: Path) -> subprocess.CompletedProcess:
    """Run the shell ``script`` in a user and mount namespace with a 60 MiB tmpfs mounted at ``tmp_path / "mnt"``
    (skipped where ``unshare`` cannot make one).  In ``script``, ``{mnt}`` is that folder, ``{build}`` the small
    demo's build with its data folder there, and each of ``names`` its path (all quoted for the shell)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("user and mount namespaces are not available here (unshare)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_SOURCES)
    build = f"cd {shlex.quote(str(ROOT))} && " + " ".join(shlex.quote(a) for a in luigi_cmd(mnt / "data", sources))
    quoted = {k: shlex.quote(str(v)) for k, v in {"mnt": mnt, **names}.items()}
    body = f"set -u\nmount -t tmpfs -o size=60m tmpfs {quoted['mnt']} || exit 77\n" + script.format(build=build,
                                                                                                    **quoted)
    proc = subprocess.run(["unshare", "-rm", "bash", "-c", body], env=pipeline_env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode == 77:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    return proc


FILL_THEN_GROW = """
{build} > {log1} 2>&1; echo $? > {rc1}
cp -a {mnt}/data/work {mnt}/data/catalog {after}/ 2>/dev/null
mount -o remount,size=400m {mnt}
{build} > {log2} 2>&1; echo $? > {rc2}
cp -a {mnt}/data/releases {after}/
"""


def test_a_build_on_a_full_disk_fails_in_one_line_and_goes_on_once_there_is_room(tmp_path, tmp_path_factory):
    """A real full file system (a 60 MiB tmpfs in a user and mount namespace): the small demo fills it while
    tiling.  Each failed task is one line naming the device and the room left (no traceback); no scene becomes
    a reject, the source is not recorded as failed; given room (the tmpfs grown), the same command builds the
    release the reference build made, file for file."""
    reference = release_dir(reference_build(tmp_path_factory))
    after = tmp_path / "after"
    after.mkdir()
    _demo_on_tmpfs(tmp_path, FILL_THEN_GROW, timeout=600, after=after,
                   **{k: tmp_path / k for k in ("log1", "log2", "rc1", "rc2")})
    first = (tmp_path / "log1").read_text()
    assert int((tmp_path / "rc1").read_text()) != 0, first
    failed = [line for line in first.splitlines() if line.startswith("ERROR: ")]
    assert failed and all(": NoSpace: no space left on the device of " in line for line in failed), first
    assert "Traceback" not in first, first
    records = "\n".join(p.read_text() for p in after.rglob("*.json"))
    assert "NoSpace" not in records and "No space" not in records and "Write failed" not in records
    second = (tmp_path / "log2").read_text()
    assert int((tmp_path / "rc2").read_text()) == 0, second
    built = after / "releases" / reference.name

    def content(folder: Path) -> tuple[dict, list]:
        manifest = json.loads((folder / "manifest.json").read_text())
        return ({f["path"]: f["sha256"] for f in manifest["files"]},
                [(im["id"], im["split"]) for im in manifest["images"]])

    assert content(built) == content(reference)
    assert (built / "rejects.csv").read_text() == (reference / "rejects.csv").read_text()


def test_a_data_folder_that_cannot_be_written_is_refused_in_one_line(tmp_path):
    """A read-only mount as the data folder (on a 60 MiB file system, i.e. "nearly full" by size): not a full disk
    (its errno says what it is) and not a traceback: the root refuses before any task, naming the folder."""
    proc = _demo_on_tmpfs(tmp_path, "mkdir {mnt}/data && mount -o remount,ro {mnt} && {build}", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    data = tmp_path / "mnt" / "data"
    assert f"ERROR: cannot build: the data folder {data} cannot be written (Read-only file system" in out
    assert "no space left" not in out
