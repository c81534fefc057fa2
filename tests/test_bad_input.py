"""Bad input through the real pipeline (``luigi --module pipeline BuildRelease`` in a subprocess).

1. One build of a ``local`` source whose folder mixes good 0.3 m UTM scenes (with ``labels/<name>.tif``,
   ids 1..8) and bad ones.  Every bad file is a named row of ``rejects.csv`` (file + reason) and the good
   ones still release; inputs the band/dtype policies convert (1-band grey, 16-bit RGB, RGBA with alpha)
   release as 3-band uint8, and a rotated affine is accepted and warped onto a north-up UTM grid.  A label
   with value 200 or of another shape is rejected and its tiles wait in ``pending.csv``.  A good scene in
   Antarctica is a reject (stage ``locate``): a release covers the six inhabited continents.
2. Bad ``sources.yaml`` files: the build exits non-zero naming the file, the source and the key, and
   writes nothing.
3. A 404 from an ``xbd`` HTTP source (loopback server): the source fails (its fetch record says so, with the
   URL), the build exits non-zero naming it, and the outputs of the other source (and the earlier release)
   are not touched.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

from tests.helpers_build import ROOT, luigi_cmd, pipeline_env, release_dir, run_luigi
from tests.loopback import LoopbackServer

CRS = "EPSG:32633"  # UTM 33N, around 15.3 E 48.2 N (Lower Austria)
GSD = 0.3
N = 1100  # one 1024 tile per scene
PALETTE = np.array([[0, 0, 0], [128, 0, 0], [0, 255, 36], [148, 148, 148], [255, 255, 255],
                    [34, 97, 38], [0, 69, 255], [75, 181, 73], [222, 31, 7]], dtype=np.uint8)


def _label(n: int = N, seed: int = 0) -> np.ndarray:
    r, c = np.mgrid[0:n, 0:n]
    return (1 + ((r // 131 + c // 173 + seed) % 8)).astype(np.uint8)  # ids 1..8, every class present


def _rgb(label: np.ndarray) -> np.ndarray:
    img = PALETTE[label].transpose(2, 0, 1).astype(np.int16)
    ramp = (np.arange(label.shape[1], dtype=np.int16) % 23)[None, None, :]
    return np.clip(img + ramp - 11, 0, 255).astype(np.uint8)


def _transform(i: int, gsd: float = GSD) -> Affine:
    return Affine(gsd, 0.0, 600000.0 + 1000.0 * i, 0.0, -gsd, 5340000.0)


def _write(path: Path, data: np.ndarray, *, crs=CRS, transform=None, nodata=None, colorinterp=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": str(data.dtype), "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate"}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
            if colorinterp is not None:
                ds.colorinterp = colorinterp


def _scene(root: Path, name: str, i: int, *, image=None, label=True, label_data=None, **kw) -> None:
    lab = _label(seed=i)
    _write(root / f"{name}.tif", _rgb(lab) if image is None else image, transform=kw.pop("transform", _transform(i)),
           **kw)
    if label:
        data = lab if label_data is None else label_data
        _write(root / "labels" / f"{name}.tif", data[np.newaxis], crs=None, transform=None)


#: bad file (relative to the source folder) -> words its rejects.csv reason must contain
EXPECTED_REJECTS = {
    "bad_truncated.tif": "cannot read",
    "bad_no_crs.tif": "no CRS",
    "bad_no_geotransform.tif": "no geotransform",
    "bad_gsd_08.tif": "GSD 0.80 m is coarser than 0.5 m",
    "bad_all_nodata.tif": "all pixels are nodata",
    "bad_8_bands.tif": "got 8",
    "labels/label_value_200.tif": "200",
    "labels/label_wrong_shape.tif": "differs from image",
    "in_antarctica.tif": "located in Antarctica",  # a good scene, but outside the six continents of a release
}
RELEASED = ["good_a", "good_b", "convert_grey", "convert_uint16", "convert_rgba", "rotated"]
PENDING = ["label_value_200", "label_wrong_shape"]


def make_local_source(root: Path) -> None:
    _scene(root, "good_a", 0)
    _scene(root, "good_b", 1)
    # converted, not rejected
    _scene(root, "convert_grey", 2, image=_rgb(_label(seed=2))[:1])
    _scene(root, "convert_uint16", 3, image=_rgb(_label(seed=3)).astype(np.uint16) * 200 + 1000)
    rgba = np.concatenate([_rgb(_label(seed=4)), np.full((1, N, N), 255, np.uint8)])
    rgba[3, :100, :100] = 0  # transparent corner (< 5 % of the tile)
    _scene(root, "convert_rgba", 4, image=rgba,
           colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    # rotated by 5 degrees: accepted, warped onto the north-up UTM grid (1400 px so the tile is all valid)
    rot = _label(1400, seed=5)
    _scene(root, "rotated", 5, image=_rgb(rot), label_data=rot,
           transform=_transform(5) @ Affine.rotation(5.0))
    # labels that cannot be used: tiles pending
    bad = _label(seed=6)
    bad[500:520, 500:520] = 200
    _scene(root, "label_value_200", 6, label_data=bad)
    _scene(root, "label_wrong_shape", 7, label_data=_label(1000, seed=7))
    # rejected scenes (no labels needed)
    _scene(root, "bad_truncated", 8, label=False)
    data = (root / "bad_truncated.tif").read_bytes()
    (root / "bad_truncated.tif").write_bytes(data[: len(data) // 3])
    _scene(root, "bad_no_crs", 9, label=False, crs=None)
    _scene(root, "bad_no_geotransform", 10, label=False, transform=None)
    _scene(root, "bad_gsd_08", 11, label=False, transform=_transform(11, gsd=0.8))
    _scene(root, "bad_all_nodata", 12, label=False, image=np.zeros((3, N, N), np.uint8), nodata=0)
    _scene(root, "bad_8_bands", 13, label=False, image=np.repeat(_rgb(_label(seed=13)), 3, axis=0)[:8])
    # a good labelled scene at McMurdo Station (UTM 58S): located in Antarctica, which no release covers (before:
    # its image reached the manifest and the schema's six continents failed the whole build)
    _scene(root, "in_antarctica", 14, crs="EPSG:32758", transform=Affine(GSD, 0.0, 539000.0, 0.0, -GSD, 1357900.0))


def _sources_yaml(local: Path, extra: str = "") -> str:
    return f"""
sources:
  - name: folder
    kind: local
    location: {local}
    license: CC BY 4.0
    attribution: bad-input suite
{extra}"""


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    local = base / "upstream"
    make_local_source(local)
    sources = base / "sources.yaml"
    sources.write_text(_sources_yaml(local))
    data = base / "data"
    proc = run_luigi(luigi_cmd(data, sources, split_trials=50))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return base, local, data, release_dir(data)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_bad_file_is_a_named_reject_and_the_good_ones_release(local_build):
    _, _, _, rel = local_build
    rejects = _rows(rel / "rejects.csv")
    by_file: dict[str, list[dict]] = {}
    for r in rejects:
        by_file.setdefault(r["file"], []).append(r)
    missing = {f: why for f, why in EXPECTED_REJECTS.items()
               if not any(why in r["reason"] for r in by_file.get(f, []))}
    assert not missing, f"not in rejects.csv as expected: {missing}\nrejects.csv:\n" + (rel / "rejects.csv").read_text()
    for f in EXPECTED_REJECTS:
        assert all(r["source"] == "folder" and r["reason"].strip() for r in by_file[f])
    # nothing good was rejected
    assert not [r for r in rejects if any(r["file"].endswith(f"{s}.tif") or f"{s}.tif#" in r["file"]
                                          for s in RELEASED)], rejects
    manifest = json.loads((rel / "manifest.json").read_text())
    released = sorted({im["source_scene_id"] for im in manifest["images"]})
    assert released == sorted(RELEASED)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(rel)], cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tiles_of_rejected_labels_are_pending_never_released_with_empty_labels(local_build):
    _, _, _, rel = local_build
    pending = _rows(rel / "pending.csv")
    assert sorted({p["source_scene_id"] for p in pending}) == sorted(PENDING), pending
    manifest = json.loads((rel / "manifest.json").read_text())
    assert not [im for im in manifest["images"] if im["source_scene_id"] in PENDING]


def test_converted_inputs_release_as_3_band_uint8(local_build):
    _, _, _, rel = local_build
    manifest = json.loads((rel / "manifest.json").read_text())
    images = {im["source_scene_id"]: im for im in manifest["images"]}
    for scene in ("convert_grey", "convert_uint16", "convert_rgba"):
        with rasterio.open(rel / images[scene]["image"]) as ds:
            assert (ds.count, ds.dtypes, ds.width, ds.height) == (3, ("uint8",) * 3, 1024, 1024), scene
            data = ds.read()
        if scene == "convert_grey":
            assert np.array_equal(data[0], data[1]) and np.array_equal(data[1], data[2])
        if scene == "convert_uint16":  # stretched 2nd..98th percentile to 0..255: uses the range
            assert int(data.min()) == 0 and int(data.max()) == 255
        if scene == "convert_rgba":
            assert int(data.max()) > 0
        with rasterio.open(rel / images[scene]["label"]) as lab:
            assert lab.count == 1 and lab.dtypes[0] == "uint8" and int(lab.read(1).max()) <= 8


def test_rotated_affine_is_accepted_and_warped_north_up(local_build):
    _, _, _, rel = local_build
    manifest = json.loads((rel / "manifest.json").read_text())
    im = next(im for im in manifest["images"] if im["source_scene_id"] == "rotated")
    assert abs(im["native_gsd"] - 0.3) < 0.005 and im["gsd"] == 0.3
    with rasterio.open(rel / im["image"]) as ds, rasterio.open(rel / im["label"]) as lab:
        t = ds.transform
        assert t.b == 0 and t.d == 0 and t.a == pytest.approx(0.3) and t.e == pytest.approx(-0.3)
        assert ds.crs.to_epsg() == 32633
        assert lab.transform == ds.transform
        assert set(np.unique(lab.read(1)).tolist()) <= set(range(9)) and int(lab.read(1).max()) == 8


# -- bad sources.yaml ----------------------------------------------------------------------------

_GOOD_ENTRY = """  - name: {name}
    kind: {kind}
    location: {location}
    license: CC BY 4.0
    attribution: someone
"""

BAD_SOURCES = {
    # case: (yaml text, words the output must contain)
    "bad_yaml": ("sources:\n  - name: a\n    kind: [local\n", ["invalid YAML", "line"]),
    "unknown_kind": (_GOOD_ENTRY.format(name="inria", kind="inira", location="/data/x"),
                     ["source 'inria'", "unknown kind 'inira'"]),
    "missing_field": ("  - name: nolicence\n    kind: local\n    location: /data/x\n    attribution: someone\n",
                      ["source 'nolicence'", "missing key 'license'"]),
    "ftp_scheme": (_GOOD_ENTRY.format(name="remote", kind="inria", location="ftp://example.org/x.zip"),
                   ["source 'remote'", "key 'location'", "unsupported scheme 'ftp'"]),
    "duplicate_names": (_GOOD_ENTRY.format(name="twice", kind="local", location="/data/a")
                        + _GOOD_ENTRY.format(name="twice", kind="local", location="/data/b"),
                        ["source 'twice'", "duplicate source name"]),
}


@pytest.fixture(scope="module")
def bad_sources_runs(tmp_path_factory):
    """Run every bad sources file through the CLI at once (each run is mostly interpreter start-up)."""
    base = tmp_path_factory.mktemp("bad_sources")

    def run(case: str):
        text, _ = BAD_SOURCES[case]
        path = base / f"{case}.yaml"
        path.write_text(text if case == "bad_yaml" else "sources:\n" + text)
        data = base / f"data-{case}"
        return path, data, run_luigi(luigi_cmd(data, path), timeout=120)

    with ThreadPoolExecutor(max_workers=len(BAD_SOURCES)) as pool:
        return dict(zip(BAD_SOURCES, pool.map(run, BAD_SOURCES)))


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_sources_file_fails_the_build_naming_file_source_and_key(bad_sources_runs, case):
    path, data, proc = bad_sources_runs[case]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert f"{path.name}:" in out, out[-2000:]
    for words in BAD_SOURCES[case][1]:
        assert words in out, f"{words!r} not in the output:\n{out[-2000:]}"
    assert not data.exists(), "a build with a bad sources file wrote into its data folder"


# -- network failure ---------------------------------------------------------------------------

def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` except ``skip`` and the folders named ``<skip>-<digest>`` beside it."""
    def skipped(p: Path) -> bool:
        return any(q.parent == skip.parent and (q.name == skip.name or q.name.startswith(skip.name + "-"))
                   for q in (p, *p.parents))

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skipped(Path(dirpath)):
            continue
        for name in dirnames:  # folders: only whether they exist (creating raw/xbd changes raw's mtime)
            if not skipped(Path(dirpath) / name):
                out[str((Path(dirpath) / name).relative_to(root)) + "/"] = (0, 0, 0)
        for name in filenames:
            st = (Path(dirpath) / name).lstat()
            out[str((Path(dirpath) / name).relative_to(root))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def test_http_404_fails_fetch_with_the_url_and_leaves_other_sources_alone(local_build):
    base, local, data, rel = local_build
    before = _snapshot(data, skip=data / "raw" / "xbd")
    with LoopbackServer() as http:
        url = http.url("/xbd/train_images_labels_targets.tar.gz")  # not served: 404
        sources = base / "sources-404.yaml"
        sources.write_text(_sources_yaml(local, extra=f"""  - name: xbd
    kind: xbd
    location: {url}
    license: CC BY-NC-SA 4.0
    attribution: xBD (Gupta et al. 2019)
"""))
        proc = run_luigi(luigi_cmd(data, sources, "--PipelineConfig-allow-private-networks", "true",
                                   release="with-xbd", split_trials=50), timeout=180)
        requests = http.requests_for("/xbd/train_images_labels_targets.tar.gz")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert requests, "the source was never requested"
    assert "source 'xbd' failed" in out and url in out and "404" in out, out[-3000:]
    # the failure is the source's fetch record (valid for that build only: tasks.base), nothing else of it
    (record,) = list((data / "raw").glob("xbd-*/fetch.json"))
    failed = json.loads(record.read_text())["failed"]
    assert failed["file"] == url and "404" in failed["reason"] and failed["stage"] == "fetch"
    assert not release_dir(data, "with-xbd").exists()
    after = _snapshot(data, skip=data / "raw" / "xbd")
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    removed = sorted(before.keys() - after.keys())
    added = sorted(after.keys() - before.keys())
    assert not changed and not removed, f"changed: {changed}\nremoved: {removed}"
    # its catalog and its (empty, partial) share of the pool are the failed source's own outputs
    own = ("raw/xbd", "catalog/xbd", "work/dataset/source-xbd-")
    locks = [k for k in added if k.startswith("work/locks/")]  # the empty lock files of the tasks that ran
    assert all(k.startswith(own) for k in added if k not in locks), f"written outside the xbd source: {added}"
    assert all((data / k).stat().st_size == 0 for k in locks)
    assert (rel / "manifest.json").is_file()
