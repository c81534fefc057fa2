"""Label tiles of a release carry the OpenEarthMap colour table and class names (GIS shows classes), stay
valid COGs, and still read as the unchanged class ids with rasterio and PIL (the OpenEarthMap loader)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from pipeline.constants import CLASS_COLORS, CLASS_NAMES
from pipeline.raster.cog import follows_policy, label_colormap, label_tags, to_cog
from tests.helpers_outputs import demo_release, manifest_of


def test_released_label_tile_has_the_palette_and_class_names(tmp_path_factory):
    release = demo_release(tmp_path_factory)
    manifest = manifest_of(release)
    rec = manifest["images"][0]
    path = release / rec["label"]
    with rasterio.open(path) as ds:
        cmap = ds.colormap(1)
        assert cmap[0] == (0, 0, 0, 255)
        assert {c: cmap[c][:3] for c in CLASS_COLORS} == CLASS_COLORS
        assert ds.tags(1)["CLASS_0"] == "unlabelled"
        assert {c: ds.tags(1)[f"CLASS_{c}"] for c in CLASS_NAMES} == CLASS_NAMES
        assert ds.colorinterp[0].name == "palette"
        ids = ds.read(1)
    # ids unchanged: the manifest's pixel counts, and PIL (the OpenEarthMap loader's other reader) agrees
    counts = np.bincount(ids.ravel(), minlength=9)
    assert {str(c): int(counts[c]) for c in range(1, 9)} == rec["class_pixels"]
    assert int(counts[0]) == rec["unlabelled_pixels"]
    assert np.array_equal(np.asarray(Image.open(path)), ids)
    exe = shutil.which("rio", path=str(Path(sys.executable).parent)) or shutil.which("rio")
    proc = subprocess.run([exe, "cogeo", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "is a valid cloud optimized GeoTIFF" in proc.stdout, proc.stdout + proc.stderr


def test_every_label_cog_gets_the_metadata_and_a_work_tile_without_it_is_converted(tmp_path):
    src = tmp_path / "work.tif"
    ids = (np.arange(64 * 64) % 9).reshape(64, 64).astype(np.uint8)
    with rasterio.open(src, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=rasterio.Affine(0.3, 0, 500000.0, 0, -0.3, 5000000.0)) as ds:
        ds.write(ids, 1)
    assert not follows_policy(src, kind="label")
    out = to_cog(src, tmp_path / "out.tif", kind="label")
    assert follows_policy(out, kind="label")
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(1), ids)
        assert all(ds.colormap(1)[k] == v for k, v in label_colormap().items())
        assert all(ds.tags(1)[k] == v for k, v in label_tags().items())
