"""Reading candidate tiles at the model's resolution.

Tiles are Cloud-Optimized GeoTIFFs with internal overviews; reading with ``out_shape=(size, size)`` lets
GDAL pick the overview of that size (256 px for a 1024 px tile with 512/256/128 overviews), so only
about 1/16 of the pixels are decoded.  Images use ``average`` resampling, labels ``mode`` (labels never
interpolate); when no overview of the exact size exists GDAL resamples from the next finer level.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.dataset.selection.config import NUM_CLASSES
from pipeline.errors import PipelineInputError


class TileReadError(PipelineInputError):
    """A candidate tile the selection cannot read: names the file and the cause."""

    stage = "selection"


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Bands 1-3 of a uint8 GeoTIFF as ``(size, size, 3)`` uint8 (GDAL ``average`` resampling)."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            if src.count < 3 or src.dtypes[0] != "uint8":
                raise TileReadError(path, f"needs 3 uint8 bands, has {src.count} x {src.dtypes[0]}")
            arr = src.read([1, 2, 3], out_shape=(3, size, size), resampling=Resampling.average)
    except rasterio.errors.RasterioIOError as exc:
        raise TileReadError(path, f"cannot be read ({exc})") from exc
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def read_label(path: str | Path, size: int) -> np.ndarray:
    """Band 1 of a label GeoTIFF as ``(size, size)`` uint8 ids 0..8 (GDAL ``mode`` resampling)."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            arr = src.read(1, out_shape=(size, size), resampling=Resampling.mode)
    except rasterio.errors.RasterioIOError as exc:
        raise TileReadError(path, f"cannot be read ({exc})") from exc
    if arr.size and (arr.min() < 0 or arr.max() > NUM_CLASSES):
        raise TileReadError(path, f"label ids must be in 0..{NUM_CLASSES}, found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def read_batch(images: Sequence[str], labels: Sequence[str | None] | None, size: int,
               pool: ThreadPoolExecutor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a batch of tiles (and labels, ``None`` entries -> all 0) into stacked arrays.  GDAL releases the
    GIL while decoding, so a thread ``pool`` overlaps the reads with each other and with the model."""
    mapper = pool.map if pool is not None else map
    imgs = np.stack(list(mapper(lambda p: read_image(p, size), images))) if images else \
        np.zeros((0, size, size, 3), np.uint8)
    if labels is None:
        return imgs, None
    labs = [read_label(p, size) if p else np.zeros((size, size), np.uint8) for p in labels]
    return imgs, (np.stack(labs) if labs else np.zeros((0, size, size), np.uint8))


def iter_batches(images: Sequence[str], labels: Sequence[str | None] | None, size: int,
                 batch: int, threads: int = 2) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """``(start, images, labels)`` for consecutive batches; the next batch is read in the background while
    the caller processes the current one."""
    if not images:
        return
    with ThreadPoolExecutor(max(1, threads)) as pool:
        def load(start: int):
            stop = min(len(images), start + batch)
            return read_batch(images[start:stop], None if labels is None else labels[start:stop], size)

        starts = list(range(0, len(images), batch))
        pending = pool.submit(load, starts[0])
        for i, start in enumerate(starts):
            imgs, labs = pending.result()
            if i + 1 < len(starts):
                pending = pool.submit(load, starts[i + 1])
            yield start, imgs, labs
