"""Shared helpers of the tests of the user-facing release outputs (COG tiles, STAC catalog, GeoParquet index).

``synthetic_release`` writes a tiny release-like folder (COG tiles + manifest-style image records) without
a build, so the writers can be tested in milliseconds; ``demo_release`` is the release of the one small
demo build shared per pytest process (:func:`tests.helpers_build.reference_build`).
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine, array_bounds

from pipeline.raster.cog import write_cog
from tests.helpers_build import reference_build, release_dir

#: (id, region, split, crs, origin x, origin y, lon/lat box, acquired)
_TILES = (
    ("vienna_1", "vienna", "train", "EPSG:32633", 600000.0, 5340000.0, (16.33, 48.19, 16.34, 48.20), "2019-06-01"),
    ("vienna_2", "vienna", "test", "EPSG:32633", 600030.0, 5340000.0, (16.34, 48.19, 16.35, 48.20), None),
    ("lima_1", "lima", "val", "EPSG:32718", 280000.0, 8660000.0, (-77.03, -12.05, -77.02, -12.04), "2021-02-03"),
)


def synthetic_records(root: Path, size: int = 96) -> list[dict]:
    """Write 3 image/label COG pairs under ``root`` and return their manifest-style records."""
    rng = np.random.default_rng(3)
    records = []
    for i, (tid, region, split, crs, x0, y0, lonlat, acquired) in enumerate(_TILES):
        transform = Affine(0.3, 0.0, x0, 0.0, -0.3, y0)
        image = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
        label = rng.integers(0, 9, (size, size), dtype=np.uint8)
        rec = {
            "id": tid, "region": region, "split": split, "crs": crs, "transform": list(transform)[:6],
            "width": size, "height": size, "bounds": list(array_bounds(size, size, transform)),
            "bounds_lonlat": list(lonlat), "gsd": 0.3, "native_gsd": 0.3, "native_crs": crs,
            "country": "Austria" if region == "vienna" else "Peru",
            "country_code": "AT" if region == "vienna" else "PE",
            "continent": "Europe" if region == "vienna" else "South America", "source": "demo", "source_kind": "local",
            "source_scene_id": f"scene{i}", "tile": "r000_c000", "license": "CC-BY-4.0", "attribution": "test",
            "acquired": acquired, "image": f"{region}/images/{tid}.tif", "label": f"{region}/labels/{tid}.tif",
            "class_pixels": {str(c): int((label == c).sum()) for c in range(1, 9)},
            "unlabelled_pixels": int((label == 0).sum()),
        }
        write_cog(image, root / rec["image"], crs=crs, transform=transform, kind="image")
        write_cog(label, root / rec["label"], crs=crs, transform=transform, kind="label")
        records.append(rec)
    return records


SOURCES = [{"name": "demo", "kind": "demo", "license": "CC-BY-4.0", "attribution": "test",
            "location": "https://example.org/data", "acquired_range": ["2018-01-01", "2020-12-31"]}]


def demo_release(tmp_path_factory) -> Path:
    """The release folder of the shared small demo build (built once per pytest process)."""
    return release_dir(reference_build(tmp_path_factory))


def manifest_of(release: Path) -> dict:
    return json.loads((release / "manifest.json").read_text())


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (proves validation works offline)."""
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def strip_cog(path: Path) -> None:
    """Replace the COG tile ``path`` by a plain striped GeoTIFF of the same pixels (a new file: not a COG)."""
    import rasterio

    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile.update(driver="GTiff", tiled=False, compress="deflate")
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
