"""The release in torchgeo (pipeline/release/torchgeo.py): per-UTM-zone file lists in the release, checked by
validate; the recipe's logic (one dataset per zone reads every tile's exact pixels, samples in proportion to
tile counts); and, when torchgeo is installed (pip install -e '.[torchgeo]'), the real datasets."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import rasterio
from rasterio.merge import merge
from rasterio.vrt import WarpedVRT

from pipeline.release.torchgeo import label_path, sample_lengths, zone_groups, zone_lines, zone_section
from pipeline.release.validate.report import validate_release
from tests.helpers_outputs import demo_release, manifest_of


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return demo_release(tmp_path_factory)


def test_zone_files_list_every_image_once_and_are_validated(release, tmp_path):
    import shutil

    manifest = manifest_of(release)
    expected = zone_lines(manifest["images"])
    assert len(expected) > 1  # the demo spans several UTM zones
    assert manifest["zones"] == zone_section(manifest["images"])
    listed = {f["path"] for f in manifest["files"]}
    for rel, lines in expected.items():
        assert rel in listed
        assert (release / rel).read_text().splitlines() == lines
        crs = {im["crs"] for im in manifest["images"] if im["image"] in lines}
        assert crs == {f"EPSG:{rel.split('/')[1][:-4]}"}
    assert sorted(p for lines in expected.values() for p in lines) == sorted(im["image"] for im in manifest["images"])
    copy = tmp_path / "rel"
    shutil.copytree(release, copy)
    first = next(iter(expected))
    (copy / first).write_text("\n".join(expected[first][1:]) + "\n")
    problems = validate_release(copy)
    assert any(p.startswith(f"{first}: does not list exactly") for p in problems), problems


def test_sample_lengths_are_proportional_to_tile_counts():
    assert sample_lengths({"a": 39, "b": 61}, 100) == {"a": 39, "b": 61}
    got = sample_lengths({32614: 7, 32633: 2, 32654: 1}, 1000)
    assert got == {32614: 700, 32633: 200, 32654: 100} and sum(sample_lengths({1: 1, 2: 2}, 10).values()) == 10
    assert label_path("austin/images/austin_1.tif") == "austin/labels/austin_1.tif"


def _mosaic_read(paths: list[str], bounds, res: float, *, crs=None) -> np.ndarray:
    """What a RasterDataset over ``paths`` returns for ``bounds``: the files merged (warped into ``crs`` / the
    first file's CRS) at ``res``."""
    sources = [rasterio.open(p) for p in paths]
    try:
        target = crs or sources[0].crs
        warped = [s if s.crs == target else WarpedVRT(s, crs=target) for s in sources]
        data, _ = merge(warped, bounds=bounds, res=res, nodata=0)
        return data
    finally:
        for s in sources:
            s.close()


def test_recipe_logic_one_dataset_per_zone_reads_exact_pixels(release):
    groups = zone_groups(release)
    manifest = manifest_of(release)
    by_image = {str(release / im["image"]): im for im in manifest["images"]}
    checked = 0
    for (_epsg, gsd), images in groups.items():
        for path in images[:3]:
            im = by_image[path]
            got = _mosaic_read(images, im["bounds"], gsd)
            with rasterio.open(path) as ds:
                assert np.array_equal(got, ds.read()), path
            checked += 1
    assert checked >= len(groups)
    # the trap the zone lists avoid: one dataset over all zones warps a tile of another zone into the first
    # file's CRS (a neighbouring zone here: the tile grows and rotates, its corners fill with 0)
    zones = sorted(groups)
    first = groups[zones[0]][0]
    other = next(groups[k][0] for k in zones if k[0] != zones[0][0] and abs(k[0] - zones[0][0]) <= 5)
    with rasterio.open(first) as a, rasterio.open(other) as b, WarpedVRT(b, crs=a.crs) as vrt:
        assert (vrt.width, vrt.height) != (b.width, b.height)
        warped = vrt.read()
        assert (warped == 0).all(axis=0).mean() > 0.01


def _import_torchgeo():
    try:
        import torchgeo.datasets  # noqa: F401
    except ImportError:
        pytest.skip("torchgeo is not installed (pip install -e '.[torchgeo]')")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        # torchvision's PyPI wheel is built against CUDA torch; with the CPU torch pinned here its C ops cannot
        # load and its import fails while registering fake kernels for them.  torchgeo's raster datasets and
        # samplers use none of those ops, so import torchvision with that registration skipped.
        import torch

        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "torchgeo")]:
            del sys.modules[name]
        original = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            import torchvision  # noqa: F401
        finally:
            torch.library.register_fake = original
        import torchgeo.datasets  # noqa: F401


def test_torchgeo_per_zone_datasets_return_the_release_pixels(release):
    _import_torchgeo()
    from pipeline.release.torchgeo import ZoneSamples, tile_counts, zone_datasets

    datasets = zone_datasets(release)
    manifest = manifest_of(release)
    by_image = {str(release / im["image"]): im for im in manifest["images"]}
    report = {}
    for key, ds in datasets.items():
        same = total = 0
        for path in sorted(ds.datasets[0].files):
            im = by_image[path]
            x0, y0, x1, y1 = im["bounds"]
            sample = ds[x0:x1, y0:y1]
            with rasterio.open(path) as img, rasterio.open(release / label_path(im["image"])) as lab:
                image_ok = np.array_equal(sample["image"].numpy().astype(np.uint8), img.read())
                label_ok = np.array_equal(sample["mask"].numpy().reshape(lab.height, lab.width), lab.read(1))
            same += int(image_ok and label_ok)
            total += 1
        report[f"EPSG:{key[0]} {key[1]} m"] = f"{same}/{total} tiles identical"
        assert same == total, (key, same, total)
    print("\nper-zone pixel identity:", json.dumps(report, indent=1))
    samples = ZoneSamples(datasets, size=256, length=60, seed=0)
    assert len(samples) == 60
    assert samples.lengths == sample_lengths(tile_counts(datasets), 60)
    first = samples[0]
    assert first["image"].shape[-2:] == (256, 256) and first["mask"].shape[-2:] == (256, 256)
