"""Issue 16.1, whole-source fault isolation, through real ``luigi`` builds (subprocesses).

Two sources: ``folder`` (a local folder of good labelled scenes) and ``remote`` (an HTTP location whose
loopback server answers 404).  At the default settings the remote failure costs the remote source only:
the folder's scenes are fetched, tiled and labelled, then the build exits non-zero naming ``remote`` and
writes no release.  With ``allow_partial_release = true`` the next build (a new process: the failed fetch
is tried again) writes the release without ``remote``; its manifest ``sources`` entry and ``rejects.csv``
say why, and the build exits 0.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from pipeline.release.validate.report import validate_release
from tests.helpers_build import luigi_cmd, release_dir, run_luigi
from tests.loopback import LoopbackServer
from tests.test_bad_input import _scene


def _sources(local: Path, remote_url: str) -> str:
    return f"""
sources:
  - name: folder
    kind: local
    location: {local}
    license: CC BY 4.0
    attribution: isolation suite
  - name: remote
    kind: local
    location: {remote_url}
    license: CC BY 4.0
    attribution: isolation suite
"""


def test_a_failed_source_costs_only_itself(tmp_path):
    local = tmp_path / "upstream"
    for i in range(2):
        _scene(local, f"good_{i}", i)
    data = tmp_path / "data"
    with LoopbackServer() as srv:  # nothing is served: every path is a 404
        sources = tmp_path / "sources.yaml"
        sources.write_text(_sources(local, srv.url("/gone/scenes.zip")))
        extra = ("--PipelineConfig-allow-private-networks", "true")
        proc = run_luigi(luigi_cmd(data, sources, *extra, split_trials=50))
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-4000:]
        assert "source 'remote' failed" in out and "404" in out, out[-4000:]
        assert "allow_partial_release" in out
        assert not release_dir(data).exists()
        # the other source went through the per-scene chain: fetched, tiled and labelled
        labelled = sorted(p.parent.parent.name for p in data.glob("work/scenes/folder/*/labels-*/labels.json"))
        assert len(labelled) == 2, labelled
        assert len(srv.requests_for("/gone/scenes.zip")) >= 1
        tried = len(srv.requests_for("/gone/scenes.zip"))

        proc = run_luigi(luigi_cmd(data, sources, *extra, "--PipelineConfig-allow-partial-release", "true",
                                   split_trials=50))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        assert len(srv.requests_for("/gone/scenes.zip")) > tried  # a new build fetches the failed source again
        rel = release_dir(data)
        _check_partial(rel)

        # the source is back: the next build with the same settings makes the partial release again, whole
        back = tmp_path / "back"
        _scene(back, "back_0", 3)
        srv.files["/gone/scenes.zip"] = _zip(back)
        proc = run_luigi(luigi_cmd(data, sources, *extra, "--PipelineConfig-allow-partial-release", "true",
                                   split_trials=50))
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    whole = json.loads((rel / "manifest.json").read_text())
    assert {im["source"] for im in whole["images"]} == {"folder", "remote"} and validate_release(rel) == []
    assert not any("failed" in s for s in whole["sources"]) and not (rel.parent / f"{rel.name}.partial").exists()


def _check_partial(rel: Path) -> None:
    """The release made without the failed source: valid, its failure in the manifest and rejects.csv."""
    assert validate_release(rel) == [] and (rel.parent / f"{rel.name}.partial").is_file()
    manifest = json.loads((rel / "manifest.json").read_text())
    entries = {s["name"]: s for s in manifest["sources"]}
    assert "failed" not in entries["folder"]
    assert entries["remote"]["failed"]["stage"] == "fetch" and "404" in entries["remote"]["failed"]["reason"]
    assert {im["source"] for im in manifest["images"]} == {"folder"} and len(manifest["images"]) == 2
    with open(rel / "rejects.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == "remote"]
    assert len(rows) == 1 and "whole source failed" in rows[0]["reason"] and "404" in rows[0]["reason"]


def _zip(folder: Path) -> bytes:
    """``folder`` as the bytes of a zip archive (paths relative to it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()
