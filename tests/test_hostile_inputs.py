"""Issue 16, hostile files at the level of the function the pipeline calls for them (the same code path as
the Luigi tasks; tests/test_hostile_build.py drives the same cases through whole builds):

* archives: a 1000x zip entry and a tar.gz bomb refused at their headers, before anything is written; the
  entry count, the total size;
* local files: symlinks into /proc, FIFOs, devices, loops, files that are longer than they say; a location
  that is a device, a FIFO or a file;
* sources.yaml: aliases and anchors, duplicate keys, deep nesting, unknown keys, a file over the size cap;
* scene ids from names without ASCII letters, overlong names, two names mapping to one id;
* annotation class values Infinity / inf / NaN / huge, in GeoJSON and GeoPackage files;
* short reasons.
"""
from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from pipeline.errors import AnnotationRejected, FetchError, LimitExceeded, SceneRejected, SourcesError, short_reason
from pipeline.labels.annotations.grid import TileGrid
from pipeline.labels.annotations.vector import import_vector
from pipeline.limits import Limits
from pipeline.sources.adapters.base import MAX_ID_CHARS, digest8, safe_id
from pipeline.sources.adapters.local import LocalAdapter
from pipeline.sources.archive import extract_archive
from pipeline.sources.config import SourceConfig, load_sources
from pipeline.sources.fetch import fetch_source
from pipeline.sources.localfs import file_problem, sha256_bounded

MiB = 1 << 20


# -- archives ------------------------------------------------------------------------------------

def test_zip_entry_expanding_1000x_is_refused_before_anything_is_written(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", b"fine")
        with zf.open("zeros.bin", "w") as fh:
            for _ in range(24):
                fh.write(bytes(MiB))
    assert bomb.stat().st_size < 100_000  # 24 MiB in ~24 KB: a ratio of ~1000
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        extract_archive(bomb, tmp_path / "out")
    assert time.monotonic() - t0 < 1.0
    assert "entry 'zeros.bin' expands" in info.value.reason and "archive_max_ratio" in info.value.reason
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def _tar_gz_of_zeros(path: Path, mib: int) -> None:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("small.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))

        class Zeros(io.RawIOBase):
            left = mib * MiB

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        info = tarfile.TarInfo("zeros.bin")
        info.size = mib * MiB
        tf.addfile(info, io.BufferedReader(Zeros()))


def test_tar_gz_bomb_is_refused_at_its_header(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    _tar_gz_of_zeros(bomb, 200)
    assert bomb.stat().st_size < 400_000
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match="entry 'zeros.bin' expands .* archive_max_ratio"):
        extract_archive(bomb, tmp_path / "out")
    assert time.monotonic() - t0 < 2.0  # refused from the header: 200 MiB were never decompressed
    assert not (tmp_path / "out").exists()


def test_archive_entry_count_and_total_size_limits(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(101):
            zf.writestr(f"f{i:03d}.txt", b"x")
    with pytest.raises(LimitExceeded, match=r"more than archive_max_entries \(100\)"):
        extract_archive(many, tmp_path / "a", limits=Limits(archive_max_entries=100))
    extract_archive(many, tmp_path / "b")  # the default allows it
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"part{i}.bin")
            info.size = 400_000
            tf.addfile(info, io.BytesIO(os.urandom(400_000)))
    with pytest.raises(LimitExceeded, match="archive_max_bytes .* at entry 'part2.bin'"):
        extract_archive(big, tmp_path / "c", limits=Limits(archive_max_bytes=1_000_000))
    assert not (tmp_path / "c").exists()


# -- local files -----------------------------------------------------------------------------------

@pytest.fixture
def hostile_folder(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    (root / "good.tif").write_bytes(b"II*\x00" + bytes(100))
    os.symlink("/proc/self/pagemap", root / "pagemap.tif")  # reports 0 bytes, never ends
    os.symlink("/dev/zero", root / "zero.tif")
    os.mkfifo(root / "fifo.tif")
    os.symlink("loop2.tif", root / "loop1.tif")
    os.symlink("loop1.tif", root / "loop2.tif")
    os.symlink(str(tmp_path), root / "up")  # a folder link: not followed
    return root


def test_local_folder_never_reads_special_files(hostile_folder, tmp_path):
    src = SourceConfig(name="f", kind="local", location=str(hostile_folder), license="x", attribution="y",
                       options={"sha256": {}})
    t0 = time.monotonic()
    rec = fetch_source(src, tmp_path / "raw")
    assert time.monotonic() - t0 < 2.0
    assert [f["path"] for f in rec["files"]] == ["good.tif"]
    skipped = {s["path"]: s["reason"] for s in rec["skipped"]}
    assert "pseudo-file" in skipped["pagemap.tif"] and "pseudo-file" in skipped["zero.tif"]
    assert "FIFO" in skipped["fifo.tif"] and "looping" in skipped["loop1.tif"]
    assert "symbolic link to a folder" in skipped["up"]


def test_adapter_rejects_special_files_by_name(hostile_folder):
    rejected: list = []
    scenes = LocalAdapter().scenes(hostile_folder, SourceConfig(name="f", kind="local", location="x", license="x",
                                                                attribution="y"), rejected=rejected)
    assert [s.scene_id for s in scenes] == ["good"]
    why = {Path(e.file).name: e.reason for e in rejected}
    assert set(why) == {"pagemap.tif", "zero.tif", "fifo.tif", "loop1.tif", "loop2.tif"}
    assert why["fifo.tif"] == "is a FIFO, not a regular file"


def test_file_longer_than_it_says_is_not_read_on(tmp_path):
    with pytest.raises(FetchError, match="pseudo-file"):
        sha256_bounded("/proc/self/pagemap")  # regular, 0 bytes by stat, endless
    assert file_problem("/proc/self/status") is None or "pseudo" not in (file_problem("/proc/self/status") or "")


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "is a FIFO, not a file or a folder"),
    (lambda p: os.symlink("/dev/zero", p), "pseudo-file"),
    (lambda p: os.symlink("/proc/self", p), "pseudo-file"),
])
def test_location_that_is_a_device_or_fifo_is_a_named_error(tmp_path, make, words):
    loc = tmp_path / "location"
    make(loc)
    src = SourceConfig(name="dev", kind="local", location=str(loc), license="x", attribution="y",
                       options={"sha256": {}})
    with pytest.raises(FetchError) as info:
        fetch_source(src, tmp_path / "raw")
    assert words in info.value.reason and "source 'dev'" in info.value.reason


def test_location_that_is_a_file_says_so(tmp_path):
    image = tmp_path / "scene.tif"
    image.write_bytes(b"II*\x00" + bytes(10))
    with pytest.raises(SceneRejected) as info:
        LocalAdapter().scenes(image, SourceConfig(name="f", kind="local", location=str(image), license="x",
                                                  attribution="y"))
    assert info.value.file == str(image) and info.value.reason.startswith("location is a file, not a folder")


# -- sources.yaml ----------------------------------------------------------------------------------

ENTRY = "  - name: a\n    kind: local\n    location: /data/a\n    license: CC0\n    attribution: me\n"


@pytest.mark.parametrize("text, words", [
    ("x: &x [a, a]\ny: &y [*x, *x]\nsources:\n" + ENTRY, "anchors (&x) are not allowed"),
    ("sources:\n  - &e {name: a}\n  - *e\n", "anchors (&e) are not allowed"),
    ("sources:\n  - name: a\n    kind: local\n    location: /a\n    location: /b\n    license: CC0\n"
     "    attribution: me\n", "duplicate key 'location' in source 'a'"),
    ("sources: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested deeper than 16 levels"),
    ("sources:\n" + ENTRY + "extra: 1\n", "unknown top-level key 'extra'"),
    ("sources:\n" + ENTRY.replace("    license", "    licence: x\n    license"), "unknown key 'licence'"),
])
def test_sources_file_refuses_aliases_duplicates_depth_and_unknown_keys(tmp_path, text, words):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(SourcesError) as info:
        load_sources(path)
    assert words in str(info.value) and "sources.yaml" in str(info.value)
    assert time.monotonic() - t0 < 2.0


def test_sources_file_size_cap(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n" + ENTRY + "# " + "x" * 2_000_000 + "\n")
    with pytest.raises(SourcesError, match="over sources_max_bytes"):
        load_sources(path)
    assert len(load_sources(path, max_bytes=3_000_000)) == 1


# -- scene ids -------------------------------------------------------------------------------------

def test_scene_ids_of_names_without_ascii_and_of_long_names():
    assert safe_id("日本") == f"scene-{digest8('日本')}" == safe_id("日本")
    assert safe_id("日本") != safe_id("中国")
    long = safe_id("a" * 300)
    assert len(long) <= MAX_ID_CHARS and long.endswith(digest8("a" * 300))
    assert safe_id("Good_A") == safe_id("good_a") == "good_a"
    # a name outside ASCII ends in its own digest: ids never depend on which other names a folder holds
    assert safe_id("São Paulo 1") == f"s_o_paulo_1-{digest8('São Paulo 1')}"
    assert safe_id("北京_1") == f"1-{digest8('北京_1')}" != safe_id("上海_1")
    assert len(safe_id("é" * 200 + "a" * 200)) <= MAX_ID_CHARS


# -- annotation class values -------------------------------------------------------------------------

GRID = TileGrid(crs="EPSG:32633", transform=(0.3, 0.0, 500000.0, 0.0, -0.3, 5000000.0), width=64, height=64)


@pytest.mark.parametrize("value, words", [
    ("Infinity", "not a finite number"), ("-Infinity", "not a finite number"), ("NaN", "no class value"),
    ("1e308", "is not in 1..8"), ("123456789012345678901234567890", "is not in 1..8"),
    ('"²"', "unknown class name '²'"), ('"' + "9" * 5000 + '"', "is not in 1..8"),
])
def test_geojson_class_values_that_are_not_classes_reject_the_file(tmp_path, value, words):
    path = tmp_path / "ann.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"class": '
                    + value + '}, "geometry": {"type": "Polygon", "coordinates": [[[500000, 4999990], '
                    '[500010, 4999990], [500010, 5000000], [500000, 5000000], [500000, 4999990]]]}}]}')
    with pytest.raises(AnnotationRejected) as info:
        import_vector(path, GRID)
    assert words in info.value.reason and len(info.value.reason) < 120


def test_gpkg_class_inf_rejects_the_file(tmp_path):
    path = tmp_path / "ann.gpkg"
    gdf = gpd.GeoDataFrame({"class": [np.inf, 3.0]}, geometry=[box(500000, 4999990, 500010, 5000000)] * 2,
                           crs="EPSG:32633")
    gdf.to_file(path, driver="GPKG")
    with pytest.raises(AnnotationRejected, match=r"class id inf is not a finite number \(feature 0\)"):
        import_vector(path, GRID)


# -- words ---------------------------------------------------------------------------------------------

def test_reasons_are_one_short_line():
    assert short_reason("a\n\n  b\tc") == "a b c"
    long = short_reason("PROJJSON " + "{" * 5000)
    assert len(long) == 300 and long.endswith("...")
    assert SceneRejected("f.tif", "x\n" * 1000).reason.count("\n") == 0


def test_unknown_crs_reason_is_short(tmp_path):
    from pipeline.raster.plan import plan_scene
    from pipeline.scene import Scene

    wkt = ('LOCAL_CS["Mine site grid " ' + '"' * 0 + ',LOCAL_DATUM["site",0],UNIT["metre",1],'
           'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    path = tmp_path / "site.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs=rasterio.crs.CRS.from_wkt(wkt), transform=Affine(0.3, 0, 1000, 0, -0.3, 2000)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8))
    scene = Scene(source="s", scene_id="site", kind="local", image=str(path), license="x", attribution="y")
    with pytest.raises(SceneRejected) as info:
        plan_scene(scene)
    assert len(info.value.reason) < 160 and "LOCAL_CS" not in info.value.reason and "{" not in info.value.reason
    assert "does not transform to WGS 84" in info.value.reason, info.value.reason


# -- formats that read other files or URLs ----------------------------------------------------------

def _plan_reason(path: Path) -> str:
    from pipeline.raster.plan import plan_scene
    from pipeline.scene import Scene

    with pytest.raises(SceneRejected) as info:
        plan_scene(Scene(source="s", scene_id=path.stem, kind="local", image=str(path), license="x", attribution="y"))
    return info.value.reason


def test_tif_holding_vrt_or_wms_xml_is_not_opened(tmp_path):
    """GDAL knows a file by its content: a ``.tif`` holding VRT XML would read any local file, one holding a
    ``<GDAL_WMS>`` document would fetch URLs (here a loopback server: it must get no request)."""
    from tests.loopback import LoopbackServer

    vrt = tmp_path / "vrt.tif"
    vrt.write_text('<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1">'
                   '<SimpleSource><SourceFilename relativeToVRT="0">/etc/hostname</SourceFilename>'
                   '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    assert _plan_reason(vrt) == "cannot read: not a GeoTIFF, PNG or JPEG file"
    with LoopbackServer() as srv:
        wms = tmp_path / "wms.tif"
        wms.write_text('<GDAL_WMS><Service name="TMS"><ServerUrl>' + srv.url("/t/${z}/${x}/${y}.png") + '</ServerUrl>'
                       '</Service><DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34'
                       '</UpperLeftY><LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY>'
                       '<TileLevel>18</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>'
                       '</DataWindow><Projection>EPSG:3857</Projection><BandsCount>3</BandsCount></GDAL_WMS>')
        assert _plan_reason(wms) == "cannot read: not a GeoTIFF, PNG or JPEG file"
        assert srv.requests == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_aux_xml_side_car_cannot_georeference_a_scene(tmp_path):
    png = tmp_path / "scene.png"
    with rasterio.open(png, "w", driver="PNG", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8))
    (tmp_path / "scene.png.aux.xml").write_text(
        '<PAMDataset><SRS>EPSG:32633</SRS><GeoTransform>500000, 0.3, 0, 5000000, 0, -0.3</GeoTransform></PAMDataset>')
    assert _plan_reason(png).startswith("no CRS")


@pytest.mark.parametrize("text, words", [
    ('{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "+init=/dev/zero:x"}}, '
     '"features": []}', "mentions 'init='"),
    ('<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>/etc/passwd</SrcDataSource></OGRVRTLayer>'
     '</OGRVRTDataSource>', "is not GeoJSON"),
])
def test_vector_files_that_would_read_other_files_are_refused(tmp_path, text, words):
    path = tmp_path / "ann.geojson"
    path.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(AnnotationRejected) as info:
        import_vector(path, GRID)
    assert words in info.value.reason and time.monotonic() - t0 < 2.0



def test_side_car_json_nested_too_deeply_or_too_large_is_a_reject(tmp_path):
    """xBD label JSON (and every side-car read whole): RecursionError and size are named rejects."""
    from pipeline.sources.footprints import check_crs_text, read_xbd_label

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(AnnotationRejected, match="RecursionError"):
        read_xbd_label(deep)
    big = tmp_path / "big.json"
    big.write_text('{"features": {"xy": [], "lng_lat": []}, "pad": "' + "x" * 2_000_000 + '"}')
    with pytest.raises(AnnotationRejected, match="over sidecar_max_bytes"):
        read_xbd_label(big, max_bytes=1_000_000)
    for text in ("+proj=longlat +init=/dev/zero:x", "+proj=longlat +nadgrids=/dev/zero", "x" * 30_000):
        with pytest.raises(ValueError):
            check_crs_text(text)
    check_crs_text("+proj=merc +a=6378137 +b=6378137 +nadgrids=@null +units=m")  # the built-in null grid
