"""Write one planned scene: the image GeoTIFF and its 8-class label, window by window.

Files (``<root>/<region>/<name>.tif`` and ``<root>/labels/<region>/<name>.tif``):

* ``jpeg``: 3-band uint8, JPEG in TIFF, PHOTOMETRIC=YCBCR, quality 90, 512² tiles; with ``mask``
  an internal 1-bit dataset mask marks the nodata edge (GDAL_TIFF_INTERNAL_MASK);
* ``deflate``: 3-band uint8 DEFLATE + horizontal predictor, 512² tiles; ``alpha`` adds band 4 as
  unassociated alpha (0 outside the survey outline), ``nodata`` sets nodata = 0 (valid pixels are
  kept >= 1 in every band);
* label: 1-band uint8 DEFLATE, 512² tiles, same CRS / transform / size, ids 1..8 inside the valid area,
  0 outside it; no nodata value.

Windows are 1024x1024 on a 1024-px lattice (whole internal tiles, so JPEG tiles are encoded once), so
memory stays bounded whatever the scene size.  Each file is written to ``<name>.tif.part`` and renamed
into place, so an interrupted run leaves no half-written ``.tif``.  Same spec -> byte-identical files.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from oem_demo.scale.plan import SceneSpec
from oem_demo.scale.render import SceneRenderer
from oem_demo.scale.world import WorldParams

WINDOW = 1024
GDAL_ENV = {"GDAL_CACHEMAX": 64 * 1024 * 1024, "GDAL_TIFF_INTERNAL_MASK": True, "GDAL_NUM_THREADS": 1}


def image_path(root: Path, spec: SceneSpec) -> Path:
    return Path(root) / spec.region / f"{spec.name}.tif"


def label_path(root: Path, spec: SceneSpec) -> Path:
    return Path(root) / "labels" / spec.region / f"{spec.name}.tif"


def _profiles(spec: SceneSpec) -> tuple[dict, dict]:
    """rasterio creation profiles of the image and the label."""
    common = {"driver": "GTiff", "width": spec.width, "height": spec.height, "dtype": "uint8", "crs": spec.crs,
              "transform": rasterio.Affine(*spec.transform), "tiled": True, "blockxsize": 512, "blockysize": 512}
    if spec.fmt == "jpeg":
        image = {**common, "count": 3, "compress": "jpeg", "photometric": "ycbcr", "jpeg_quality": 90}
    else:
        image = {**common, "count": 4 if spec.mask == "alpha" else 3, "compress": "deflate", "predictor": 2,
                 "zlevel": 1, "photometric": "rgb"}
        if spec.mask == "alpha":
            image["alpha"] = "YES"
        if spec.mask == "nodata":
            image["nodata"] = 0
    label = {**common, "count": 1, "compress": "deflate"}
    return image, label


def renderer_for(spec: SceneSpec) -> SceneRenderer:
    """The renderer of a scene (its world in metres of the pixel frame at the nominal ground GSD)."""
    world = WorldParams(spec.width * spec.gsd, spec.height * spec.gsd, (spec.city_xy[0], spec.city_xy[1]),
                        spec.city_radius, spec.bias, spec.biome, spec.seed)
    valid = None if spec.valid is None else np.asarray(spec.valid, float)
    return SceneRenderer(spec.width, spec.height, spec.gsd, world, spec.grade, valid)


def _write_windows(spec: SceneSpec, renderer: SceneRenderer, img, lab) -> float:
    """Render and write every window; returns the seconds spent rendering (CPU of this thread)."""
    render_s = 0.0
    for row0 in range(0, spec.height, WINDOW):
        for col0 in range(0, spec.width, WINDOW):
            w, h = min(WINDOW, spec.width - col0), min(WINDOW, spec.height - row0)
            t0 = time.thread_time()
            label, rgb, valid = renderer.render(col0, row0, w, h)
            if spec.mask == "nodata":
                rgb = np.maximum(rgb, 1)
                rgb[~valid] = 0
            bands = np.ascontiguousarray(rgb.transpose(2, 0, 1))
            render_s += time.thread_time() - t0
            win = Window(col0, row0, w, h)
            img.write(bands, indexes=[1, 2, 3], window=win)
            if spec.mask == "alpha":
                img.write(valid.astype(np.uint8) * 255, 4, window=win)
            elif spec.mask == "mask":
                img.write_mask(valid.astype(np.uint8) * 255, window=win)
            lab.write(label, 1, window=win)
    return render_s


def write_scene(root: Path, spec: SceneSpec) -> dict:
    """Write the scene's image and label; returns ``{"files": {relative path: bytes}, "world_s", "render_s",
    "cpu_s", "wall_s"}`` (world: building the vector world; render: per-pixel work; cpu: everything of
    this process including GDAL's encoding)."""
    cv2.setNumThreads(1)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    paths = (image_path(root, spec), label_path(root, spec))
    parts = [p.with_name(p.name + ".part") for p in paths]
    for p in parts:
        p.parent.mkdir(parents=True, exist_ok=True)
    image_profile, label_profile = _profiles(spec)
    t_world = time.process_time()
    renderer = renderer_for(spec)
    world_s = time.process_time() - t_world
    with rasterio.Env(**GDAL_ENV), rasterio.open(parts[0], "w", **image_profile) as img, \
                rasterio.open(parts[1], "w", **label_profile) as lab:
        if spec.mask == "alpha":
            img.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        render_s = _write_windows(spec, renderer, img, lab)
    for part, final in zip(parts, paths):
        os.replace(part, final)
    rel = {str(p.relative_to(root)): p.stat().st_size for p in paths}
    return {"files": rel, "world_s": round(world_s, 3), "render_s": round(render_s, 3),
            "cpu_s": round(time.process_time() - t_cpu, 3), "wall_s": round(time.perf_counter() - t_wall, 3)}
