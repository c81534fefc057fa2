"""Thumbnails of release tiles for the viewer, read from the COG overviews and cached by checksum.

* **Overviews, never full resolution**: a tile is opened at the smallest overview level whose width is at
  least the thumbnail size (``rasterio.open(path, overview_level=k)``), and that level is read straight
  into the thumbnail shape (``out_shape``); a 1024² release tile with its 512² overview decodes one
  512² block per band.  Only a file without such an overview is read from its full-resolution level.
* **Image thumbnails**: RGB, ``average`` resampling, lossy WebP (:data:`IMAGE_QUALITY`).
* **Label overlays**: ``mode`` resampling (labels are never interpolated), coloured in the OpenEarthMap
  palette with class 0 (unlabelled) transparent, lossless WebP with alpha.
* **Cache by checksum**: a thumbnail's file name is ``<sha256 of the tile>-<spec tag>.webp``, so a
  rebuild reuses every thumbnail whose tile is unchanged, from the output folder itself or from an earlier
  viewer's ``thumbs/`` (e.g. the previous release's), and makes only the new or changed ones, on
  :data:`WORKERS` threads (GDAL and OpenCV release the GIL).
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import atomic
from pipeline.errors import ThumbnailError

#: Thumbnail width in pixels (height follows the tile's aspect ratio).
THUMB_SIZE = 192
#: WebP quality (0..100) of the image thumbnails.
IMAGE_QUALITY = 72
#: Threads that make thumbnails.
WORKERS = 2
#: Bumped whenever the way thumbnails are made changes, so cached ones are not reused.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Job:
    """One thumbnail to provide: ``kind`` ``"image"`` or ``"label"``, the tile, its sha256, the output name."""

    kind: str
    src: str | Path
    sha256: str
    name: str


def thumb_name(sha256: str, kind: str) -> str:
    """The cache name of a thumbnail: the tile checksum plus everything that shapes the thumbnail."""
    tag = f"i{THUMB_SIZE}q{IMAGE_QUALITY}" if kind == "image" else f"l{THUMB_SIZE}"
    return f"{sha256[:32]}-{tag}v{FORMAT_VERSION}.webp"


def overview_level(path: Path, size: int) -> tuple[int | None, int]:
    """``(level, width)`` of the smallest overview of ``path`` at least ``size`` pixels wide
    (``level`` None: none is, use full resolution)."""
    import rasterio

    with rasterio.open(path) as ds:
        best: tuple[int | None, int] = (None, ds.width)
        for level, factor in enumerate(ds.overviews(1)):
            width = math.ceil(ds.width / factor)
            if size <= width < best[1]:
                best = (level, width)
    return best


def read_reduced(path: Path, size: int, *, label: bool) -> tuple[np.ndarray, int]:
    """The tile ``path`` reduced to ``size`` pixels wide, read from the smallest adequate overview;
    returns ``(array (bands, h, w), width of the level that was decoded)``."""
    import rasterio
    from rasterio.enums import Resampling

    level, _ = overview_level(path, size)
    kwargs = {} if level is None else {"overview_level": level}
    with rasterio.open(path, **kwargs) as ds:
        height = max(1, round(size * ds.height / ds.width))
        bands = [1] if label else [1, 2, 3]
        resampling = Resampling.mode if label else Resampling.average
        data = ds.read(bands, out_shape=(len(bands), height, size), resampling=resampling)
        return data, ds.width


def _encode_image(rgb: np.ndarray) -> bytes:
    import cv2

    bgr = np.ascontiguousarray(rgb[::-1].transpose(1, 2, 0))
    ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, IMAGE_QUALITY])
    if not ok:
        raise ThumbnailError("<image thumbnail>", "OpenCV could not encode WebP")
    return buf.tobytes()


def label_lut(colors: Mapping[int, Sequence[int]]) -> np.ndarray:
    """256x4 BGRA lookup table: class id -> palette colour, opaque; 0 and unknown ids transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for cid, (r, g, b) in colors.items():
        lut[int(cid)] = (b, g, r, 255)
    return lut


def _encode_label(ids: np.ndarray, lut: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".webp", lut[ids[0]], [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
    if not ok:
        raise ThumbnailError("<label overlay>", "OpenCV could not encode WebP")
    return buf.tobytes()


def make_thumbnail(job: Job, out_dir: Path, lut: np.ndarray) -> int:
    """Write one thumbnail atomically to ``out_dir / job.name``; returns the width of the decoded level."""
    try:
        data, decoded = read_reduced(Path(job.src), THUMB_SIZE, label=job.kind == "label")
    except Exception as exc:  # noqa: BLE001  (rasterio raises many types; the file and cause are the point)
        raise ThumbnailError(str(job.src), f"cannot read for a thumbnail: {exc}") from exc
    blob = _encode_label(data, lut) if job.kind == "label" else _encode_image(data)
    atomic.write_bytes(out_dir / job.name, blob)
    return decoded


def _link(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def file_names(folder: Path) -> set[str]:
    """Names of the files in ``folder`` (symlinks followed, as ``Path.is_file``); empty when it is missing."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if e.is_file()}
    except OSError:
        return set()


def provide(jobs: Iterable[Job], out_dir: Path, *, colors: Mapping[int, Sequence[int]], reuse: Sequence[Path] = (),
            workers: int = WORKERS, skip_errors: bool = False) -> dict[str, int]:
    """Make sure ``out_dir`` holds every job's thumbnail: kept when already there, linked from the first
    folder of ``reuse`` that has it, else made (on ``workers`` threads).  Returns counts ``made``,
    ``reused`` and ``decoded_max`` (the widest level any thumbnail was decoded from).  A thumbnail that cannot
    be made raises :class:`ThumbnailError`, or with ``skip_errors`` is left out (counted as ``failed``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo: dict[str, Job] = {}
    seen: set[str] = set()
    reused = 0
    # one listing per folder, not a stat per thumbnail; paths as strings (10,000 thumbnails a release)
    folders = [(os.fspath(d), file_names(d)) for d in (out_dir, *reuse)]
    out = folders[0][0]
    for job in jobs:
        if job.name in seen:
            continue
        seen.add(job.name)
        cached = next((d for d, names in folders if job.name in names), None)
        if cached is None:
            todo[job.name] = job
            continue
        if cached != out:
            _link(f"{cached}/{job.name}", f"{out}/{job.name}")
        reused += 1
    lut = label_lut(colors)
    failed: list[str] = []

    def make(job: Job) -> int:
        try:
            return make_thumbnail(job, out_dir, lut)
        except ThumbnailError:
            if not skip_errors:
                raise
            failed.append(job.name)
            return 0

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = list(pool.map(make, todo.values()))
    return {"made": len(todo) - len(failed), "reused": reused, "decoded_max": max(decoded, default=0),
            **({"failed": len(failed)} if skip_errors else {})}
